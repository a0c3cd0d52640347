"""
Group commit: messages that arrive together are stored in one transaction.

L{BatchWriter.submit} queues a message and returns a Deferred that fires
with its L{chatd.stores.messages.Stored} once the transaction holding it has
committed (or fails if it did not). One transaction is in flight at a time;
messages that arrive while it runs wait and go together into the next one,
so under load the number of messages per commit grows instead of the queue
of round trips. Results are handed out in submission order, so callers that
deliver on commit deliver in the order messages were stored.

When a transaction's results come back, the next transaction starts before
they are handed out: handing out a few hundred results (delivering and
acknowledging each message) is event-loop work that the database's time on
the next batch can overlap, instead of leaving the writer idle meanwhile.
"""

from collections import deque

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.errors import ChatError
from chatd.stores import now_ms

log = Logger()


class StorageUnavailable(ChatError):
    """
    A message could not be stored; the client may resend it.
    """

    status = 503
    frame_code = "unavailable"


class BatchWriter(Service):
    """
    Stores L{chatd.stores.messages.NewMessage}s in batches.

    @param store: a L{chatd.stores.messages.MessageStore}.
    @param clock: an L{IReactorTime}.
    @param batch_size: the most messages in one transaction.
    @param batch_delay: seconds to wait for more messages before a commit.

    @ivar commits: transactions committed so far.
    @ivar stored: messages handed to those transactions so far.
    """

    def __init__(self, store, clock, batch_size=256, batch_delay=0.0):
        self._store = store
        self._clock = clock
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._queue = []
        self._timer = None
        self._flushing = False
        self._in_flight = 0
        self._closed = False
        self._idle_waiters = []
        self._finished = deque()
        self._starting = False
        self._handing_out = False
        self.commits = 0
        self.stored = 0

    def submit(self, message):
        """
        Queue C{message} for the next transaction.

        @return: a Deferred firing with its L{Stored}, or failing with
            L{StorageUnavailable}.
        """
        if self._closed:
            return fail(StorageUnavailable("the server is shutting down; resend later"))
        d = Deferred()
        self._queue.append((message, d))
        self._schedule()
        return d

    @property
    def pending(self):
        """
        Messages queued or in the transaction in flight.
        """
        return len(self._queue) + (self._in_flight if self._flushing else 0)

    def _schedule(self):
        if self._flushing or self._timer is not None or not self._queue:
            return
        self._timer = self._clock.callLater(self._batch_delay, self._flush)

    def _flush(self):
        self._timer = None
        batch = self._queue[:self._batch_size]
        del self._queue[:self._batch_size]
        self._flushing = True
        self._in_flight = len(batch)
        d = Deferred.fromCoroutine(self._write(batch))
        d.addErrback(lambda f: log.failure("Group commit failed", f))
        d.addBoth(self._notify_idle)

    async def _write(self, batch):
        created_at = now_ms(self._clock)
        try:
            results = await self._store.insert_batch(
                [message for message, _ in batch], created_at)
        except Exception:
            log.failure("Storing {count} messages failed", count=len(batch))
            results = [Failure(StorageUnavailable(
                "the message could not be stored; resend it"))] * len(batch)
        else:
            self.commits += 1
            self.stored += len(batch)
        self._finished.append((batch, results))
        self._next()
        self._hand_out()

    def _next(self):
        """
        The transaction in flight is over: start the next one now if
        messages are queued and no batch delay applies. A store that
        answers at once re-enters this from the batch just started; the
        outermost call then starts the batches one after another, so the
        stack does not grow with them.
        """
        self._flushing = False
        self._in_flight = 0
        if self._starting:
            return
        self._starting = True
        try:
            while self._queue and not self._flushing and not self._batch_delay:
                self._flush()
        finally:
            self._starting = False
        self._schedule()

    def _hand_out(self):
        """
        Fire the results of the finished transactions in the order they
        were submitted, unless a call further up the stack is doing so.
        """
        if self._handing_out:
            return
        self._handing_out = True
        try:
            while self._finished:
                batch, results = self._finished.popleft()
                for (_, d), result in zip(batch, results, strict=True):
                    if isinstance(result, Failure):
                        d.errback(result)
                    else:
                        d.callback(result)
        finally:
            self._handing_out = False

    def _notify_idle(self, _):
        if not self._queue and not self._flushing:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def wait_idle(self):
        """
        A Deferred that fires once nothing is queued or being stored;
        cancelling it stops the wait.
        """
        if not self._queue and not self._flushing and self._timer is None:
            return succeed(None)
        waiter = Deferred(self._idle_waiters.remove)
        self._idle_waiters.append(waiter)
        return waiter

    def stopService(self):
        """
        Refuse new messages and store the queued ones.
        """
        super().stopService()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._flush()
        return self.wait_idle()
