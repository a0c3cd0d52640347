"""
Tests for L{chatd.ws.compact}: an open connection keeps only what it needs
and still behaves as Autobahn's.
"""

import struct

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd.ws.compact import (
    HANDSHAKE_LEFTOVERS,
    IDLE_STATE,
    CompactConnection,
    protocol_for_options,
)
from tests.test_framing import (
    client_frame,
    open_connection,
    parse_server_frames,
    server_factory,
)


class Compacted(CompactConnection, WebSocketServerProtocol):
    def __init__(self):
        super().__init__()
        self.messages = []

    def onOpen(self):
        self.compact()

    def onMessage(self, payload, isBinary):
        self.messages.append(payload)


class CompactTests(TestCase):
    def setUp(self):
        self.factory = server_factory(maxFramePayloadSize=1000)
        self.factory.protocol = protocol_for_options(Compacted, self.factory)
        self.protocol, self.transport = open_connection(
            self, self.factory, "/socket.io?token=secret-token")

    def test_options_on_the_class(self):
        """
        The factory's options are read through the protocol class; the
        connection holds none of them.
        """
        state = vars(self.protocol)
        for name in Compacted.CONFIG_ATTRS:
            self.assertNotIn(name, state)
        self.assertEqual(self.protocol.maxFramePayloadSize, 1000)
        self.assertIn("maxFramePayloadSize", vars(type(self.protocol)))
        self.assertNotIn("maxFramePayloadSize", vars(Compacted))

    def test_handshake_and_idle_state_dropped(self):
        state = vars(self.protocol)
        for name in (*HANDSHAKE_LEFTOVERS, *IDLE_STATE, "send_queue"):
            self.assertNotIn(name, state)
        self.assertNotIn("secret-token", repr(state))
        self.assertLess(len(state), 30, sorted(state))
        self.assertEqual(dict(self.protocol.http_headers), {})

    def test_still_works(self):
        """
        Messages, pings and the closing handshake after compaction.
        """
        self.protocol.dataReceived(client_frame(b"hello") + client_frame(b"hi", opcode=0x9))
        self.assertEqual(self.protocol.messages, [b"hello"])
        self.protocol.sendMessage(b"back", isBinary=True)
        self.protocol.dataReceived(client_frame(b"x" * 1001))
        frames = parse_server_frames(self.transport.value())
        self.assertEqual(frames[:2], [(0xA, b"hi"), (0x2, b"back")])
        self.assertEqual((frames[2][0], struct.unpack("!H", frames[2][1][:2])[0]),
                         (0x8, 1009))

    async def test_synchronous_sends_get_a_queue(self):
        self.protocol.sendData(b"one", sync=True)
        self.protocol.sendData(b"two", chopsize=2)
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.transport.value(), b"onetwo")
