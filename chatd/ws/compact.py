"""
Keeping an idle WebSocket connection small.

An Autobahn protocol instance carries about a hundred attributes: the
factory's options copied onto every connection, what the opening handshake
left behind, and flags still at their first value. With that many an
instance dict cannot share its keys and takes 3-4 KB a connection, most of
a chat server's memory at ten thousand idle connections.

  - L{protocol_for_options} puts the factory's options on a subclass, once:
    Autobahn copies an option onto a connection only when the connection
    does not already have it.
  - L{CompactConnection.compact}, called once the connection is open, drops
    the handshake's leftovers and every attribute still at its idle value
    (the class holds that value), then gives the instance a dict of the
    size it now needs (a dict never shrinks by deletion).
  - The send queue, which only synchronous or chopped sends use, is an
    empty tuple until one of them needs it.
"""

import types
from collections import deque

_EMPTY = types.MappingProxyType({})

# Set during the opening handshake (the headers and query hold the token),
# read by nothing once it is done; what the class holds instead.
HANDSHAKE_LEFTOVERS = {
    "http_request_data": None, "http_status_line": None,
    "http_headers": _EMPTY, "http_request_params": _EMPTY,
    "http_request_uri": None, "http_request_path": None,
    "http_request_host": None, "http_response_data": None,
    "websocket_version": None, "websocket_protocols": None,
    "websocket_origin": None, "websocket_extensions": None,
    "_wskey": None, "_transport_details": None,
}

# Values an idle connection holds; Autobahn assigns a new value before it
# relies on a different one.
IDLE_STATE = {
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPendingCall": None,
    "autoPingPending": None,
    "autoPingPendingSent": None,
    "autoPingPendingSeq": 0,
    "_perMessageCompress": None,
    "trackedTimings": None,
    "triggered": False,
    "websocket_protocol_in_use": None,
    "inside_message": False,
    "current_frame": None,
}


def protocol_for_options(protocol, factory):
    """
    A subclass of C{protocol} holding C{factory}'s current protocol options
    (C{CONFIG_ATTRS}), so that connections do not each hold a copy.
    """
    options = {}
    for name in protocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        if isinstance(value, types.FunctionType):
            # A plain function on a class would become a method.
            value = staticmethod(value)
        options[name] = value
    return type(protocol.__name__, (protocol,), options)


class CompactConnection:
    """
    A mixin for an Autobahn C{WebSocketServerProtocol}; put it before the
    Autobahn class in the bases and call L{compact} in C{onOpen}.
    """

    send_queue = ()

    def compact(self):
        """
        Forget the handshake and drop attributes at their idle values.
        """
        state = self.__dict__
        for name in HANDSHAKE_LEFTOVERS:
            state.pop(name, None)
        for name, idle in IDLE_STATE.items():
            if name in state and _is_idle(state[name], idle):
                del state[name]
        if "send_queue" in state and not state["send_queue"]:
            del state["send_queue"]
        self.__dict__ = dict(state.items())

    def sendData(self, data, sync=False, chopsize=None):
        if (sync or chopsize) and not isinstance(self.send_queue, deque):
            self.send_queue = deque()
        super().sendData(data, sync, chopsize)


for _name, _value in {**HANDSHAKE_LEFTOVERS, **IDLE_STATE}.items():
    setattr(CompactConnection, _name, _value)


def _is_idle(value, idle):
    return value is idle or (type(value) is type(idle) and value == idle)
