"""
Outgoing frames, sent once per turn of the event loop without registering
for writability.

Twisted's C{transport.write} queues the bytes and registers the socket for
writability (an C{epoll_ctl}); the reactor's next poll reports it
writable, the bytes go out, and the socket is unregistered (another
C{epoll_ctl}). L{WriteCoalescer} puts the bytes in the same transport
buffer, then sends every connection's buffer once, in the next turn's
timed calls, before the poll: as many C{send}s as before, and no
registration unless the socket's buffer is full.

Only plain TCP (and Unix socket) transports take this path; anything else
(TLS, test transports) gets C{transport.write}, and so does a connection
whose earlier bytes are still waiting for a slow reader (the reactor is
already writing them). It relies on Twisted's
L{twisted.internet.abstract.FileDescriptor} buffer (C{_tempDataBuffer},
C{_tempDataLen}, C{dataBuffer}, C{offset}) and C{doWrite}, which
tests/test_writes.py exercise on real sockets. Bytes always go into that
one buffer, so frames written any other way (Autobahn's control frames)
stay in order, and whatever cannot be sent at once, or fails, is left to
the reactor's own writing, flow control and error handling.

The flush is a C{callLater(0)}, like the batch writer's commits: if the
wall clock steps back while one is pending, frames wait as long.
"""

from twisted.internet.tcp import Connection
from twisted.logger import Logger

log = Logger()


def _buffered(transport):
    return transport._tempDataLen or transport.offset < len(transport.dataBuffer)


def _open_for_writing(transport):
    return (transport.connected and not transport.disconnecting
            and not transport._writeDisconnecting and not transport._aborting)


class WriteCoalescer:
    """
    Sends frames written in one turn of the event loop together, early in
    the next.

    @param clock: the L{IReactorTime} whose C{callLater(0, ...)} runs the
        sends.
    """

    def __init__(self, clock):
        self._clock = clock
        self._pending = {}

    def write(self, transport, data):
        """
        Write C{data} to C{transport}, as C{transport.write} would.
        """
        pending = self._pending
        if transport not in pending:
            if (not isinstance(transport, Connection) or transport.TLS
                    or not _open_for_writing(transport) or _buffered(transport)):
                transport.write(data)
                return
            if not pending:
                self._clock.callLater(0, self.flush)
            pending[transport] = None
        transport._tempDataBuffer.append(data)
        transport._tempDataLen += len(data)
        transport._maybePauseProducer()

    def flush(self):
        """
        Send what was written since the last flush; leave what the socket
        does not take, and errors, to the reactor.
        """
        pending, self._pending = self._pending, {}
        for transport in pending:
            try:
                _send(transport)
            except Exception:
                # As the reactor would: the next doWrite is its own, and
                # its failure ends this connection only.
                log.failure("Sending to {transport} failed", transport=transport)
                if transport.connected:
                    transport.startWriting()


def _send(transport):
    if not transport.connected or transport._aborting or not _buffered(transport):
        return
    if (not transport.disconnecting and not transport._writeDisconnecting
            and transport.doWrite() is None and not _buffered(transport)):
        return
    transport.startWriting()
