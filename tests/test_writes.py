"""
Tests for L{chatd.ws.writes}: frames written in one turn go out together in
the next, over real loopback TCP connections, without the socket being
registered for writability unless its buffer is full; order, flow control,
closes and errors stay Twisted's.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from chatd.ws.writes import WriteCoalescer


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
    Each test holds one loopback connection: C{self.server} (its transport
    is the one written to) and C{self.client}, and a coalescer flushed by
    C{self.clock}.
    """

    async def setUp(self):
        servers = []
        factory = ServerFactory()

        def build(addr):
            protocol = Server(Deferred())
            servers.append(protocol)
            return protocol

        factory.buildProtocol = build
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = Receiver()
        client_factory = ClientFactory.forProtocol(lambda: self.client)
        reactor.connectTCP("127.0.0.1", port.getHost().port, client_factory)
        await self.client_connected()
        self.server = servers[0]
        await self.server.connected_d
        self.transport = self.server.transport
        self.clock = Clock()
        self.writes = WriteCoalescer(self.clock)
        self.addCleanup(self.close)

    async def client_connected(self):
        while self.client.transport is None:
            await deferLater(reactor, 0.001, lambda: None)

    async def close(self):
        if self.transport.connected:
            self.transport.loseConnection()
            await self.server.lost
        if self.client.transport.connected:
            await self.client.lost

    def registered(self):
        return self.transport in reactor.getWriters()

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
        What the socket does not take is registered for writability, and
        sent as the peer reads; a streaming producer is paused meanwhile
        and resumed once the buffer is empty.
        """
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.client.transport.pauseProducing()
        data = bytes(range(256)) * (64 * 1024)
        self.writes.write(self.transport, data)
        self.assertTrue(producer.paused)
        self.clock.advance(0)
        self.assertTrue(self.registered())
        self.client.transport.resumeProducing()
        self.assertEqual(await self.client.wait_for(len(data)), data)
        await deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(self.registered())
        self.assertFalse(producer.paused)
        self.assertEqual(producer.resumed, 1)
        self.transport.unregisterProducer()

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
        await deferLater(reactor, 0.01, lambda: None)
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
        self.writes.write(self.transport, b"x" * 100000)
        self.clock.advance(0)
        for _ in range(3):
            # The first send after a reset can still succeed.
            if not self.transport.connected:
                break
            self.writes.write(self.transport, b"x" * 100000)
            self.clock.advance(0)
        await self.server.lost


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
