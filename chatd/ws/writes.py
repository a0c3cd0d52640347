"""
Outgoing frames, sent once per turn of the event loop without registering
for writability.

Twisted's C{transport.write} queues the bytes and registers the socket for
writability (an C{epoll_ctl}); the reactor's next poll reports it
writable, the bytes go out, and the socket is unregistered (another
C{epoll_ctl}). At a few frames per connection per turn, the two system
calls and the poll event's dispatch cost about a tenth of the event loop
(docs/benchmarks.md, fourth round). L{WriteCoalescer} puts the bytes in the
same transport buffer, then sends every connection's buffer once, in the
next turn's timed calls, before the poll: as many C{send}s as before, no
registration unless the socket's buffer is full.

Only plain TCP transports take this path; anything else (TLS, test
transports) gets C{transport.write}. It relies on Twisted's
L{twisted.internet.abstract.FileDescriptor} buffer (C{_tempDataBuffer},
C{_tempDataLen}, C{dataBuffer}, C{offset}) and C{doWrite}, which
tests/test_writes.py exercise on real sockets. Bytes always go into that
one buffer, so frames written any other way (Autobahn's control frames)
stay in order, and whatever cannot be sent at once, or fails, is left to
the reactor's own writing, flow control and error handling.
"""

from twisted.internet.tcp import Connection


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
        if not isinstance(transport, Connection) or not _open_for_writing(transport):
            transport.write(data)
            return
        transport._tempDataBuffer.append(data)
        transport._tempDataLen += len(data)
        transport._maybePauseProducer()
        pending = self._pending
        if not pending:
            self._clock.callLater(0, self.flush)
        pending[transport] = None

    def flush(self):
        """
        Send what was written since the last flush; leave what the socket
        does not take, and errors, to the reactor.
        """
        pending, self._pending = self._pending, {}
        for transport in pending:
            if (not transport.connected or transport._aborting
                    or not _buffered(transport)):
                continue
            if (not transport.disconnecting and not transport._writeDisconnecting
                    and transport.doWrite() is None and not _buffered(transport)):
                continue
            transport.startWriting()
