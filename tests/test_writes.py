"""
Tests for L{chatd.ws.writes}: frames written in one turn go out together in
the next, over real loopback TCP connections, without the socket being
registered for writability unless its buffer is full; order, flow control,
closes and errors stay Twisted's.
"""

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from chatd.ws.writes import WriteCoalescer
from tests.helpers import make_tls_files


class Receiver(Protocol):
    """
    A client that keeps what it receives and fires C{lost} when the
    connection ends.
    """

    def __init__(self):
        self.received = b""
        self.lost = Deferred()
        self._waiting = []

    def dataReceived(self, data):
        self.received += data
        waiting, self._waiting = self._waiting, []
        for size, d in waiting:
            if len(self.received) >= size:
                d.callback(self.received)
            else:
                self._waiting.append((size, d))

    def wait_for(self, size):
        d = Deferred()
        if len(self.received) >= size:
            d.callback(self.received)
        else:
            self._waiting.append((size, d))
        return d

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


class Server(Protocol):
    def __init__(self, connected):
        self.connected_d = connected
        self.lost = Deferred()

    def connectionMade(self):
        self.connected_d.callback(self)

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


@implementer(IPushProducer)
class Producer:
    def __init__(self):
        self.paused = False
        self.resumed = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.resumed += 1

    def stopProducing(self):
        pass


class WriteCoalescerTests(TestCase):
    """
    Each test holds loopback connections (L{connect}); the first one's
    server side is C{self.server}, its transport C{self.transport} (the one
    written to), its peer C{self.client}; a coalescer flushed by
    C{self.clock}.
    """

    async def setUp(self):
        self._servers = []
        factory = ServerFactory()

        def build(addr):
            protocol = Server(Deferred())
            self._servers.append(protocol)
            return protocol

        factory.buildProtocol = build
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.server, self.client = await self.connect()
        self.transport = self.server.transport
        self.clock = Clock()
        self.writes = WriteCoalescer(self.clock)

    async def connect(self):
        """
        A new loopback connection: C{(server, client)}, closed after the
        test.
        """
        client = Receiver()
        servers = len(self._servers)
        reactor.connectTCP("127.0.0.1", self.port.getHost().port,
                           ClientFactory.forProtocol(lambda: client))
        self.assertTrue(await self.turns(
            lambda: client.transport is not None and len(self._servers) > servers))
        server = self._servers[-1]
        await server.connected_d
        self.addCleanup(self.close, server, client)
        return server, client

    async def close(self, server, client):
        if server.transport.connected:
            server.transport.loseConnection()
            await server.lost
        if client.transport.connected:
            await client.lost

    def registered(self, transport=None):
        return (transport or self.transport) in reactor.getWriters()

    async def turns(self, until, limit=500):
        """
        Let the reactor run (10 ms a turn, at most C{limit} turns) until
        C{until()} is true; return it.
        """
        for _ in range(limit):
            if until():
                break
            await deferLater(reactor, 0.01, lambda: None)
        return until()

    async def test_sent_together_next_turn(self):
        """
        Writes wait for the flush, are not registered for writability, and
        arrive in order.
        """
        for chunk in (b"one ", b"two ", b"three"):
            self.writes.write(self.transport, chunk)
        self.assertFalse(self.registered())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertFalse(self.registered())
        self.assertEqual(await self.client.wait_for(13), b"one two three")

    async def test_several_connections_one_flush(self):
        """
        One flush sends every connection written to in the turn.
        """
        other_server, other_client = await self.connect()
        self.writes.write(self.transport, b"first")
        self.writes.write(other_server.transport, b"second")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(await self.client.wait_for(5), b"first")
        self.assertEqual(await other_client.wait_for(6), b"second")
        self.assertFalse(self.registered(other_server.transport))

    async def test_order_with_direct_writes(self):
        """
        Bytes written to the transport directly in between (Autobahn's
        control frames) keep their place.
        """
        self.writes.write(self.transport, b"a")
        self.transport.write(b"b")
        self.writes.write(self.transport, b"c")
        self.clock.advance(0)
        self.assertEqual(await self.client.wait_for(3), b"abc")

    async def test_full_socket_left_to_reactor(self):
        """
        Once the socket takes no more, the rest is registered for
        writability; later writes join it behind the reactor (not another
        send each turn) and everything arrives in order as the peer reads.
        """
        # Small buffers, so that the socket fills within a few writes
        # whatever the host's limits.
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.client.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.client.transport.pauseProducing()
        chunk = bytes(range(256)) * 256
        sent = []
        for _ in range(2000):
            sent.append(chunk)
            self.writes.write(self.transport, chunk)
            self.clock.advance(0)
            if self.registered():
                break
            # Let the kernel move the bytes to the peer's receive buffer.
            await deferLater(reactor, 0, lambda: None)
        self.assertTrue(self.registered(), "the socket never filled")
        self.writes.write(self.transport, b"tail")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        expected = b"".join(sent) + b"tail"
        self.client.transport.resumeProducing()
        self.assertEqual(await self.client.wait_for(len(expected)), expected)
        self.assertTrue(await self.turns(lambda: not self.registered()))

    async def test_producer_paused_and_resumed_in_flush(self):
        """
        A streaming producer is paused when a write fills Twisted's buffer
        and resumed by the flush that empties it; what it writes then goes
        out with the next flush.
        """
        class Refill(Producer):
            def resumeProducing(inner):
                super().resumeProducing()
                self.writes.write(self.transport, b"refill")

        producer = Refill()
        self.transport.registerProducer(producer, True)
        self.addCleanup(self.transport.unregisterProducer)
        # A limit far below any socket's send buffer: the write that
        # pauses the producer is taken by one send.
        self.transport.bufferSize = 1024
        data = b"x" * (self.transport.bufferSize + 1)
        self.writes.write(self.transport, data)
        self.assertTrue(producer.paused)
        self.clock.advance(0)
        self.assertFalse(producer.paused)
        self.assertEqual(producer.resumed, 1)
        self.clock.advance(0)
        self.assertEqual(await self.client.wait_for(len(data) + 6), data + b"refill")

    async def test_failure_isolated(self):
        """
        An exception while sending to one connection (its producer's) is
        logged and does not hold back the others in the same flush.
        """
        class Broken(Producer):
            def resumeProducing(inner):
                raise ZeroDivisionError()

        other_server, other_client = await self.connect()
        self.transport.registerProducer(Broken(), True)
        self.addCleanup(self.transport.unregisterProducer)
        # A limit far below any socket's send buffer: the write that
        # pauses the producer is taken by one send.
        self.transport.bufferSize = 1024
        data = b"x" * (self.transport.bufferSize + 1)
        self.writes.write(self.transport, data)
        self.writes.write(other_server.transport, b"still sent")
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(await other_client.wait_for(10), b"still sent")
        self.assertEqual(await self.client.wait_for(len(data)), data)

    async def test_tls_started_on_the_connection(self):
        """
        After C{startTLS}, bytes go through the transport's own C{write},
        which encrypts them.
        """
        ca, cert, key = make_tls_files(self.mktemp())
        with open(cert, "rb") as c, open(key, "rb") as k:
            server_cert = PrivateCertificate.loadPEM(c.read() + k.read())
        with open(ca, "rb") as f:
            trust = Certificate.loadPEM(f.read())
        self.transport.startTLS(server_cert.options())
        self.client.transport.startTLS(optionsForClientTLS("localhost", trust))
        self.writes.write(self.transport, b"secret")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(await self.client.wait_for(6), b"secret")

    async def test_lose_connection_sends_first(self):
        """
        A close asked for after a write sends the write, then closes.
        """
        self.writes.write(self.transport, b"last words")
        self.transport.loseConnection()
        self.clock.advance(0)
        await self.client.lost
        self.assertEqual(self.client.received, b"last words")

    async def test_abort_sends_nothing(self):
        """
        An abort after a write drops it, as Twisted's abort drops its buffer.
        """
        self.writes.write(self.transport, b"never")
        self.transport.abortConnection()
        self.clock.advance(0)
        self.assertFalse(self.registered())
        await self.client.lost
        self.assertEqual(self.client.received, b"")

    async def test_write_after_close_ignored(self):
        """
        Writing to a closed connection does nothing, as Twisted's write.
        """
        self.transport.loseConnection()
        await self.server.lost
        self.writes.write(self.transport, b"late")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        await self.client.lost
        self.assertEqual(self.client.received, b"")

    async def test_lost_before_flush(self):
        """
        A connection gone between the write and the flush is skipped.
        """
        self.writes.write(self.transport, b"gone")
        self.client.transport.abortConnection()
        await self.client.lost
        self.transport.loseConnection()
        await self.server.lost
        self.clock.advance(0)
        self.assertFalse(self.registered())

    async def test_send_error_left_to_reactor(self):
        """
        A send that fails (the peer reset the connection) ends the
        connection through the reactor, as a failed write always does
        (the server does not read, so only the write can find out).
        """
        self.transport.stopReading()
        self.client.transport.abortConnection()
        await self.client.lost

        def written():
            # The first sends after a reset can still succeed.
            if not self.server.lost.called:
                self.writes.write(self.transport, b"x" * 1000)
                self.clock.advance(0)
            return self.server.lost.called

        self.assertTrue(await self.turns(written))


class OtherTransportTests(SynchronousTestCase):
    def test_written_at_once(self):
        """
        A transport that is not plain TCP (TLS, a test transport) gets a
        plain C{write}, with no flush scheduled.
        """
        clock = Clock()
        transport = StringTransport()
        WriteCoalescer(clock).write(transport, b"frame")
        self.assertEqual(transport.value(), b"frame")
        self.assertEqual(clock.getDelayedCalls(), [])
