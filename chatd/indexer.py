"""
The search indexer: a service that keeps the search index current in the
background (see L{chatd.stores.search}).

Every C{interval} seconds it indexes what the message triggers queued, a
bounded number of messages per run, so that a search never has a large
backlog to index first, however long nobody searched. A search still
indexes what arrived since the last run, so its results are current.

Each batch of a run is its own short transaction: on SQLite's one
connection the message writer's commits take turns with them instead of
waiting behind a whole run. Given the message writer, a run also keeps
out of its way: before each transaction it waits (at most C{max_wait})
until the writer has nothing queued or being stored, and indexes only
C{quiet_batch} messages, so a message batch arriving meanwhile waits
behind a small transaction, not a large one. When the writer is never
idle (C{BUSY_WAITS} waits in a row ran out), or a run has waited half of
C{interval} in all, there are no gaps to wait for and the indexer is
falling behind: the rest of the run indexes C{batch} at a time without
waiting, as fast as without the waits. (Runs every two seconds of
back-to-back transactions made most of SQLite's slowest message
deliveries: docs/benchmarks.md.)

The runs use the database's search connection, whose thread runs at a
lower CPU priority: their work takes the time the message path leaves,
instead of a share of it (on MySQL, p99 at 5,000 msgs/s in the seventh
round: 4.5 ms against 6.2 ms at the same priority). On SQLite that
connection writes only the search index's own file, so the connection
that stores messages no longer waits behind the runs either. After a run
the queue entries it took are deleted (SQLite; see
L{chatd.stores.search}).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

# Waits for the writer that run out in a row before a run stops waiting.
BUSY_WAITS = 3


class SearchIndexer(Service):
    """
    @param store: a L{chatd.stores.search.SearchStore}.
    @param clock: an L{IReactorTime}.
    @param interval: seconds between runs; 0 turns the timer off.
    @param batch: messages per transaction; a run indexes at most
        C{batch * rounds} messages.
    @param writer: the message writer (L{chatd.batching.BatchWriter}) to
        keep out of the way of, or None.
    @param quiet_batch: messages per transaction while doing so.
    @param max_wait: seconds to wait at most for the writer to be idle.
    """

    def __init__(self, store, clock, interval, batch=100, rounds=200,
                 writer=None, quiet_batch=25, max_wait=0.02):
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._rounds = rounds
        self._writer = writer
        self._quiet_batch = quiet_batch
        self._max_wait = max_wait
        self._loop = None
        self._current = succeed(None)
        self._stopping = False
        self.last_count = 0

    def startService(self):
        super().startService()
        self._stopping = False
        if self._interval > 0:
            self._loop = LoopingCall(self.run_once)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False).addErrback(
                lambda failure: log.failure("The search indexer stopped",
                                            failure))

    def run_once(self):
        """
        Index up to C{batch * rounds} queued messages; the Deferred fires
        with how many (0 after logging a failure: the next run retries),
        also kept as C{last_count}.
        """
        d = Deferred.fromCoroutine(self._index())

        def failed(failure):
            log.failure("Indexing messages for search failed", failure)
            return 0

        d.addErrback(failed)
        d.addCallback(self._done)
        self._current = d
        return d

    async def _index(self):
        done = 0
        limit = self._batch * self._rounds
        budget = self._interval / 2 if self._writer is not None else 0
        busy = 0
        while done < limit and not self._stopping:
            size = self._batch
            if budget > 0 and busy < BUSY_WAITS:
                started = self._clock.seconds()
                idle = await self._writer_idle()
                budget -= self._clock.seconds() - started
                busy = 0 if idle else busy + 1
                size = self._quiet_batch
                if self._stopping:
                    break
            size = min(size, limit - done)
            count = await self._store.catch_up_in_background(size, rounds=1)
            done += count
            if count < size:
                break
        await self._store.trim_queue()
        return done

    async def _writer_idle(self):
        """
        True once the writer is idle, False if it was not within
        C{max_wait} (the wait is cancelled: nothing is left behind).
        """
        try:
            await self._writer.wait_idle().addTimeout(self._max_wait, self._clock)
        except TimeoutError:
            return False
        return True

    def _done(self, count):
        self.last_count = count
        return count

    def stopService(self):
        """
        Stop the timer; the Deferred fires once a run in progress has
        finished its current batch (before the database closes).
        """
        super().stopService()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        current, self._current = self._current, succeed(None)
        return current
