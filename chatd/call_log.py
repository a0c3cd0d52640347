"""
Calls on the real-time side: the call log in the conversation history, and
the L{chatd.calls.CallManager} wired to the Hub.

Every ended call is stored as a one-to-one message from the caller to the
callee with contentType 20 (L{chatd.calls.CALL_LOG}) and the JSON of
L{chatd.calls.CallLogEntry.content} as its content, through the
group-commit writer like any message; once stored it is delivered to every
device of both parties, and it appears in history and sync like any
message. Its client message id is C{call:<call id>}, so it is stored once;
clients may not use ids starting with C{call:}.
"""

from chatd.calls import CALL_LOG, CallManager
from chatd.handlers.messaging import RESERVED_CLIENT_ID_PREFIX, delivery_frame
from chatd.protocol import frames
from chatd.stores.messages import NewMessage


class CallLog:
    """
    @param writer: the L{chatd.batching.BatchWriter}.
    @param hub: the L{chatd.hub.Hub}.
    """

    def __init__(self, writer, hub):
        self._writer = writer
        self._hub = hub

    async def record(self, entry):
        """
        Store a L{chatd.calls.CallLogEntry}, then deliver it to both
        parties.
        """
        client_msg_id = RESERVED_CLIENT_ID_PREFIX + entry.call_id
        content = entry.content()
        stored = await self._writer.submit(NewMessage(
            sender_id=entry.caller.id, client_msg_id=client_msg_id,
            message_type=frames.ONE_TO_ONE, recipient_id=entry.callee.id,
            content_type=CALL_LOG, content=content))
        if stored.duplicate:
            return
        frame = delivery_frame(
            entry.caller, frames.ONE_TO_ONE, entry.callee.uuid, "", CALL_LOG,
            content, "", stored.id, stored.created_at, client_msg_id,
            entry.callee.username)
        self._hub.deliver({entry.caller.id, entry.callee.id},
                          frames.encode(frame))


def build_calls(config, hub, writer, messaging, factory, clock):
    """
    The L{CallManager} for C{config.calls} over the Hub's connections and
    routing facts, recording calls with a L{CallLog}, and handed every call
    frame: frames of type "webrtc" (through the WebSocket factory), the
    relayed ones of type "" (contentType 6 and up, through the messaging
    handler), and the news of every closed connection (through the Hub).

    It is a service: put it in the service tree after the Hub, so that it
    stops (and forgets the calls) before the Hub closes the connections.
    """
    manager = CallManager(
        clock, config.calls,
        devices_of=hub.connections_of,
        send=lambda device, frame: device.send_frame(frame),
        lookup_user=hub.user_by_uuid,
        are_friends=hub.are_friends,
        record=CallLog(writer, hub).record)
    factory.register_frame_handler(frames.WEBRTC, manager.handle)
    messaging.set_relay_handler(manager.handle)
    hub.add_observer(on_attach=manager.connected,
                     on_detach=manager.disconnected)
    return manager
