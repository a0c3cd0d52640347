"""
Tests for L{chatd.ws.keepalive}: pings after silence, drops after an
unanswered ping, one sweep for every connection.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.ws import keepalive
from chatd.ws.keepalive import KeepAlive, KeepAliveConnection


class _Autobahn:
    """
    What L{KeepAliveConnection} uses of an Autobahn protocol.
    """

    STATE_OPEN = 3

    def __init__(self):
        self.state = self.STATE_OPEN
        self.events = []

    def dataReceived(self, data):
        self.events.append(("data", data))

    def sendPing(self):
        self.events.append("ping")

    def onAutoPingTimeout(self):
        self.events.append("dropped")
        self.state = 4


class _Connection(KeepAliveConnection, _Autobahn):
    pass


class KeepAliveTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.patch(keepalive, "monotonic", self.clock.seconds)
        self.connections = []
        self.service = KeepAlive(lambda: self.connections, self.clock,
                                 interval=30, timeout=20)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def connect(self):
        connection = _Connection()
        connection.dataReceived(b"handshake")
        self.connections.append(connection)
        return connection

    def advance(self, seconds, step=1):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def test_silent_peer_pinged_then_dropped(self):
        """
        A peer silent for the interval gets one ping (at a sweep: every
        quarter of the shorter period, 5 seconds here); still silent for
        the timeout after it, it is dropped.
        """
        connection = self.connect()
        self.advance(29)
        self.assertEqual(connection.events, [("data", b"handshake")])
        self.advance(1)
        self.assertEqual(connection.events[1:], ["ping"])
        self.advance(19)
        self.assertEqual(connection.events[1:], ["ping"])
        self.advance(1)
        self.assertEqual(connection.events[1:], ["ping", "dropped"])
        self.advance(100)
        self.assertEqual(connection.events[1:], ["ping", "dropped"])

    def test_answered_ping(self):
        """
        Anything heard after the ping (a pong is some bytes) keeps the
        connection; the next ping comes after another interval of silence.
        """
        connection = self.connect()
        self.advance(34)
        self.assertEqual(connection.events[1:], ["ping"])
        self.advance(2)
        connection.dataReceived(b"pong")
        self.advance(25)
        self.assertEqual(connection.events[1:], ["ping", ("data", b"pong")])
        self.advance(10)
        self.assertEqual(connection.events[1:], ["ping", ("data", b"pong"), "ping"])

    def test_traffic_means_no_pings(self):
        """
        A connection heard from more often than the interval is never
        pinged; each connection is judged on its own.
        """
        busy, quiet = self.connect(), self.connect()
        for _ in range(10):
            self.advance(20)
            busy.dataReceived(b"frame")
        self.assertNotIn("ping", busy.events)
        self.assertIn("dropped", quiet.events)

    def test_one_failure_does_not_stop_the_sweep(self):
        """
        A connection whose keep-alive raises is logged; the others in the
        same sweep, and later sweeps, go on.
        """
        broken = self.connect()
        broken.keep_alive = lambda now, interval, timeout: 1 / 0
        healthy = self.connect()
        self.advance(30)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 6)
        self.assertEqual(healthy.events[1:], ["ping"])
        self.advance(20)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 4)
        self.assertEqual(healthy.events[1:], ["ping", "dropped"])

    def test_off(self):
        """
        An interval of 0 turns the sweep off.
        """
        self.service.stopService()
        service = KeepAlive(lambda: self.connections, self.clock, interval=0, timeout=20)
        service.startService()
        connection = self.connect()
        self.advance(1000, step=10)
        self.assertEqual(connection.events, [("data", b"handshake")])
        self.assertFalse(self.clock.getDelayedCalls())


class ClockTests(SynchronousTestCase):
    def test_a_monotonic_clock(self):
        """
        The sweep and the connections read time.monotonic, which a wall
        clock stepped back does not move.
        """
        import time

        self.assertIs(keepalive.monotonic, time.monotonic)
