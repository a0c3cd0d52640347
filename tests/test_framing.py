"""
Tests for L{chatd.ws.framing}: the lean path agrees with Autobahn's on every
frame it takes, and leaves the rest to Autobahn.
"""

import os
import struct

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.xormasker import create_xor_masker
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd.ws.framing import LeanFraming, server_frame, unmask
from chatd.ws.writes import WriteCoalescer


def client_frame(payload, opcode=0x2, final=True, key=None):
    """
    A masked client-to-server frame.
    """
    key = key or os.urandom(4)
    first = (0x80 if final else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    return header + key + unmask(payload, key)


def parse_server_frames(data):
    """
    The (opcode, payload) of each unmasked frame in C{data}.
    """
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[start:start + length]))
        data = data[start + length:]
    return frames


def server_factory(**options):
    """
    A server factory with no timers (they would outlive a test) that fails
    connections with a close frame rather than a drop, and sends frames as
    chatd's factory does.
    """
    factory = WebSocketServerFactory("ws://localhost:9000")
    factory.setProtocolOptions(failByDrop=False, openHandshakeTimeout=0,
                               closeHandshakeTimeout=0, **options)
    factory.writes = WriteCoalescer(Clock())
    return factory


def open_connection(testcase, factory, path="/"):
    """
    A protocol of C{factory} on a C{StringTransport}, past its opening
    handshake: C{(protocol, transport)}, the transport emptied.
    """
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        f"GET {path} HTTP/1.1\r\nHost: localhost:9000\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    testcase.assertIn(b" 101 ", transport.value())
    transport.clear()
    return protocol, transport


class Recorder(LeanFraming, WebSocketServerProtocol):
    def __init__(self):
        super().__init__()
        self.messages = []
        self.closed = None

    def onMessage(self, payload, isBinary):
        self.messages.append((payload, isBinary))

    def onClose(self, wasClean, code, reason):
        self.closed = code


class UnmaskTests(SynchronousTestCase):
    def test_agrees_with_autobahn(self):
        for n in (1, 3, 4, 5, 125, 126, 1000, 65535):
            payload, key = os.urandom(n), os.urandom(4)
            self.assertEqual(unmask(payload, key),
                             create_xor_masker(key, n).process(payload))

    def test_round_trip(self):
        key = b"\x01\x02\x03\x04"
        self.assertEqual(unmask(unmask(b"hello chat", key), key), b"hello chat")


class ServerFrameTests(SynchronousTestCase):
    def test_lengths(self):
        """
        Each of the three length forms, as Autobahn frames them.
        """
        factory = server_factory()
        for n in (0, 125, 126, 65535, 65536):
            payload = os.urandom(n)
            self.assertEqual(
                server_frame(payload),
                factory.prepareMessage(payload, isBinary=True).payloadHybi, n)


class LeanFramingTests(SynchronousTestCase):
    def setUp(self):
        self.factory = server_factory(maxFramePayloadSize=70000,
                                    maxMessagePayloadSize=70000)
        self.factory.protocol = Recorder
        self.protocol, self.transport = open_connection(self, self.factory)

    def test_several_frames_in_one_read(self):
        """
        Whole binary frames are taken by the lean path alone.
        """
        autobahn_calls = []
        original = WebSocketServerProtocol.processData
        self.patch(WebSocketServerProtocol, "processData",
                   lambda protocol: autobahn_calls.append(1) or original(protocol))
        payloads = [b"one", os.urandom(200), os.urandom(65535)]
        self.protocol.dataReceived(b"".join(client_frame(p) for p in payloads))
        self.assertEqual(self.protocol.messages, [(p, True) for p in payloads])
        self.assertEqual(autobahn_calls, [])

    def test_split_reads(self):
        """
        A frame that arrives a byte at a time is put together by Autobahn.
        """
        payloads = [b"first", os.urandom(300)]
        for byte in b"".join(client_frame(p) for p in payloads):
            self.protocol.dataReceived(bytes((byte,)))
        self.assertEqual(self.protocol.messages, [(p, True) for p in payloads])

    def test_fragments_text_and_pings_left_to_autobahn(self):
        data = (client_frame(b"frag", final=False)
                + client_frame(b"ping!", opcode=0x9)
                + client_frame(b"mented", opcode=0x0)
                + client_frame(b"text", opcode=0x1)
                + client_frame(b"after"))
        self.protocol.dataReceived(data)
        self.assertEqual(self.protocol.messages,
                         [(b"fragmented", True), (b"text", False), (b"after", True)])
        self.assertEqual(parse_server_frames(self.transport.value()),
                         [(0xA, b"ping!")])

    def test_over_the_limit(self):
        """
        A frame over the configured limit is refused (1009) by Autobahn.
        """
        self.factory.setProtocolOptions(maxFramePayloadSize=100,
                                        maxMessagePayloadSize=100)
        self.protocol.maxFramePayloadSize = 100
        self.protocol.maxMessagePayloadSize = 100
        self.protocol.dataReceived(client_frame(os.urandom(101)))
        self.assertEqual(self.protocol.messages, [])
        [(opcode, payload)] = parse_server_frames(self.transport.value())
        self.assertEqual((opcode, struct.unpack("!H", payload[:2])[0]), (0x8, 1009))

    def test_unmasked_refused(self):
        """
        An unmasked client frame is a protocol violation, as Autobahn has it.
        """
        self.protocol.dataReceived(b"\x82\x03abc")
        self.assertEqual(self.protocol.messages, [])
        [(opcode, payload)] = parse_server_frames(self.transport.value())
        self.assertEqual((opcode, struct.unpack("!H", payload[:2])[0]), (0x8, 1002))

    def test_write_frame(self):
        self.protocol.write_frame(server_frame(b"out"))
        self.assertEqual(parse_server_frames(self.transport.value()), [(0x2, b"out")])
