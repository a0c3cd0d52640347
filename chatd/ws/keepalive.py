"""
Finding dead WebSocket peers with one periodic sweep over the Hub's
connections, instead of Autobahn's auto-ping timers on every connection
(a DelayedCall or two each: about 0.6 KB a connection).

A connection nothing was heard from (any bytes: frames, pongs) for
C{interval} seconds gets a ping; one still silent C{timeout} seconds after
its ping is dropped, as Autobahn's auto-ping drops it. The sweep runs
every C{min(interval, timeout) / 4} seconds, so a ping or a drop comes at
most that much late.
"""

import time

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

# The clock of the sweep and of the connections: a wall clock stepped back
# would make an answered ping look unanswered.
monotonic = time.monotonic


class KeepAliveConnection:
    """
    A mixin for an Autobahn C{WebSocketServerProtocol} (put it before the
    Autobahn class in the bases): it notes when it last heard from its
    peer, and L{keep_alive} pings or drops it.

    @ivar last_heard: when bytes last came in, on L{monotonic}'s clock.
    @ivar ping_sent: when the last ping went out, or None.
    """

    last_heard = 0.0
    ping_sent = None

    def dataReceived(self, data):
        self.last_heard = monotonic()
        super().dataReceived(data)

    def keep_alive(self, now, interval, timeout):
        """
        Ping the peer if it was silent for C{interval} seconds; drop it if
        it was silent for C{timeout} seconds since its ping.
        """
        if self.state != self.STATE_OPEN:
            return
        pinged = self.ping_sent
        if pinged is not None and pinged > self.last_heard:
            if now - pinged >= timeout:
                self.onAutoPingTimeout()
        elif now - self.last_heard >= interval:
            self.sendPing()
            self.ping_sent = now


class KeepAlive(Service):
    """
    @param connections: a callable returning the open
        L{KeepAliveConnection}s (the Hub's C{all_connections}).
    @param clock: an L{IReactorTime} that runs the sweep.
    @param interval: seconds of silence before a ping; 0 turns pings off.
    @param timeout: seconds a peer has to answer a ping.
    """

    def __init__(self, connections, clock, interval, timeout):
        self._connections = connections
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._loop = None

    def startService(self):
        super().startService()
        if self._interval > 0:
            self._loop = LoopingCall(self.sweep)
            self._loop.clock = self._clock
            self._loop.start(min(self._interval, self._timeout) / 4, now=False).addErrback(
                lambda failure: log.failure("The keep-alive sweep stopped", failure))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def sweep(self):
        """
        Ping the connections silent for too long; drop those that did not
        answer in time.
        """
        now = monotonic()
        for connection in self._connections():
            try:
                connection.keep_alive(now, self._interval, self._timeout)
            except Exception:
                log.failure("Keep-alive of {connection!r} failed", connection=connection)
