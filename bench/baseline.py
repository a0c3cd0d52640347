"""
The baseline: a minimal in-memory message router written with plain
Autobahn, with no authentication and no storage.

It speaks just enough of chatd's frames for the load generator: a client
connects to C{/socket.io?user=U}; a frame with C{to} naming a connected user
is forwarded to that user's connections and acknowledged to the sender; a
frame of C{type "join"} puts the sender in the group named by C{to}, and a
frame to a group is forwarded to every other member. Every chatd figure is
also given as a ratio to this router's on the same machine: the ceiling of
what Twisted, Autobahn and protobuf allow in one Python process.

Run: python -m bench.baseline PORT
"""

import sys

import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor  # noqa: E402

from chatd.protocol.message_pb2 import Message  # noqa: E402


class BaselineProtocol(WebSocketServerProtocol):
    user = None

    def onConnect(self, request):
        self.user = request.params.get("user", [""])[0]

    def onOpen(self):
        self.factory.connections.setdefault(self.user, set()).add(self)

    def onClose(self, wasClean, code, reason):
        connections = self.factory.connections.get(self.user)
        if connections:
            connections.discard(self)

    def onMessage(self, payload, isBinary):
        frame = Message()
        frame.ParseFromString(payload)
        factory = self.factory
        if frame.type == "join":
            factory.groups.setdefault(frame.to, []).append(self.user)
            return
        members = factory.groups.get(frame.to)
        if members is not None:
            prepared = factory.prepareMessage(payload, isBinary=True)
            for member in members:
                if member != self.user:
                    for connection in factory.connections.get(member, ()):
                        connection.sendPreparedMessage(prepared)
        else:
            for connection in factory.connections.get(frame.to, ()):
                connection.sendMessage(payload, isBinary=True)
        ack = Message(type="ack", clientMsgId=frame.clientMsgId)
        self.sendMessage(ack.SerializeToString(), isBinary=True)


def main(port):
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = BaselineProtocol
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    factory.connections = {}
    factory.groups = {}
    reactor.listenTCP(port, factory, interface="127.0.0.1", backlog=4096)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
