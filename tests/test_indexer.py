"""
Tests for L{chatd.indexer.SearchIndexer}: it indexes queued messages on its
timer (a test clock), a bounded amount per run, and stops only once a run
in progress is done; on the test database.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from chatd.indexer import SearchIndexer
from chatd.stores.messages import ONE_TO_ONE, MessageStore, NewMessage
from chatd.stores.search import SearchStore, parse_query
from tests.helpers import create_user, migrated_database


class Writer:
    """
    A message writer that is busy until told otherwise.
    """

    def __init__(self):
        self.idle = False
        self.waiters = []

    def wait_idle(self):
        if self.idle:
            return succeed(None)
        waiter = Deferred(self.waiters.remove)
        self.waiters.append(waiter)
        return waiter


class IndexerTestCase(TestCase):
    async def _setup(self, count):
        self.database = await migrated_database(self)
        self.store = SearchStore(self.database)
        alice = await create_user(self.database, "alice")
        bob = await create_user(self.database, "bob")
        self.alice = alice
        await MessageStore(self.database).insert_batch(
            [NewMessage(alice.id, None, ONE_TO_ONE, bob.id, 1, f"note {i}")
             for i in range(count)], 1000)

    async def _pending(self):
        """
        How many messages the index lacks: queued, or above the last id
        indexed.
        """
        def pending_txn(txn):
            # On SQLite the queue is read past queue_through, not emptied.
            queued = (" WHERE seq > (SELECT queue_through FROM search_progress)"
                      if txn.engine.name == "sqlite" else "")
            return txn.execute(
                f"SELECT (SELECT COUNT(*) FROM search_pending{queued})"
                " + (SELECT COUNT(*) FROM messages WHERE id >"
                " (SELECT indexed_through FROM search_progress))").fetchone()

        rows = await self.database.run_search("pending", pending_txn)
        return int(rows[0])


class SearchIndexerTests(IndexerTestCase):
    async def test_runs_on_its_timer_in_bounded_batches(self):
        await self._setup(25)
        clock = Clock()
        indexer = SearchIndexer(self.store, clock, 2.0, batch=5, rounds=2)
        indexer.startService()
        self.addCleanup(indexer.stopService)
        self.assertEqual(await self._pending(), 25)
        clock.advance(2.0)
        await indexer._current
        self.assertEqual(indexer.last_count, 10)
        self.assertEqual(await self._pending(), 15)
        clock.advance(2.0)
        await indexer._current
        self.assertEqual(indexer.last_count, 10)
        clock.advance(2.0)
        await indexer._current
        self.assertEqual(indexer.last_count, 5)
        self.assertEqual(await self._pending(), 0)
        found = await self.store.search(self.alice.id, [], parse_query("note"),
                                        limit=100)
        self.assertEqual(len(found), 25)

    async def test_one_transaction_per_batch(self):
        """
        A run's batches are separate transactions, so that message commits
        are not kept waiting behind a whole run.
        """
        await self._setup(12)
        transactions = []
        original = self.database.run_background

        def run_background(description, *args, **kwargs):
            transactions.append(description)
            return original(description, *args, **kwargs)

        self.patch(self.database, "run_background", run_background)
        indexer = SearchIndexer(self.store, Clock(), 0, batch=5, rounds=4)
        self.assertEqual(await indexer.run_once(), 12)
        self.assertEqual(transactions, ["search_background_catch_up"] * 3)

    async def test_stop_ends_a_run_after_its_batch(self):
        await self._setup(12)
        clock = Clock()
        indexer = SearchIndexer(self.store, clock, 1.0, batch=5, rounds=4)
        indexer.startService()
        clock.advance(1.0)
        await indexer.stopService()
        self.assertEqual(indexer.last_count, 5)
        self.assertEqual(await self._pending(), 7)

    async def test_restart(self):
        """
        A stopped indexer started again indexes again.
        """
        await self._setup(3)
        clock = Clock()
        indexer = SearchIndexer(self.store, clock, 1.0)
        indexer.startService()
        await indexer.stopService()
        indexer.startService()
        self.addCleanup(indexer.stopService)
        clock.advance(1.0)
        await indexer._current
        self.assertEqual(indexer.last_count, 3)

    async def test_stop_waits_for_the_run(self):
        await self._setup(3)
        clock = Clock()
        indexer = SearchIndexer(self.store, clock, 1.0)
        indexer.startService()
        clock.advance(1.0)
        await indexer.stopService()
        self.assertEqual(await self._pending(), 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_off(self):
        await self._setup(1)
        clock = Clock()
        indexer = SearchIndexer(self.store, clock, 0)
        indexer.startService()
        self.assertEqual(clock.getDelayedCalls(), [])
        await indexer.stopService()
        self.assertEqual(await self._pending(), 1)


class KeepingOutOfTheWriterWayTests(IndexerTestCase):
    """
    Given the message writer, the indexer waits (a bounded time) for it to
    be idle before each small transaction, until it finds no gaps or has
    waited half its interval.
    """

    async def _indexer(self, count, writer, clock, max_wait=0.02):
        await self._setup(count)
        self.sizes = []
        catch_up = self.store.catch_up_in_background

        def recording_catch_up(batch, rounds):
            self.sizes.append(batch)
            return catch_up(batch, rounds)

        self.patch(self.store, "catch_up_in_background", recording_catch_up)
        return SearchIndexer(self.store, clock, 2.0, batch=10, rounds=10,
                             writer=writer, quiet_batch=5, max_wait=max_wait)

    async def _until(self, condition):
        for _ in range(500):
            if condition():
                return
            await deferLater(reactor, 0.01, lambda: None)
        self.fail("timed out")

    async def test_waits_for_the_writer(self):
        writer, clock = Writer(), Clock()
        indexer = await self._indexer(12, writer, clock)
        run = indexer.run_once()
        self.assertEqual((self.sizes, len(writer.waiters)), ([], 1))
        writer.waiters[0].callback(None)
        await self._until(lambda: len(writer.waiters) == 2)
        self.assertEqual(self.sizes, [5])
        self.assertEqual(await self._pending(), 7)
        writer.idle = True
        writer.waiters[1].callback(None)
        await self._until(lambda: run.called)
        self.assertEqual(self.successResultOf(run), 12)
        self.assertEqual(self.sizes, [5, 5, 5])
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_wait_is_bounded(self):
        """
        A writer that is not idle holds a transaction back C{max_wait} at
        most, and no wait is left behind with it.
        """
        writer, clock = Writer(), Clock()
        indexer = await self._indexer(12, writer, clock)
        run = indexer.run_once()
        for n in range(3):
            await self._until(lambda: clock.getDelayedCalls())
            clock.advance(0.019)
            self.assertEqual(len(self.sizes), n)
            clock.advance(0.001)
        await self._until(lambda: run.called)
        self.assertEqual(self.successResultOf(run), 12)
        self.assertEqual(self.sizes, [5, 5, 5])
        self.assertEqual(writer.waiters, [])

    async def test_falling_behind(self):
        """
        Once a run has waited half of C{interval}, it stops waiting and
        indexes whole batches.
        """
        writer, clock = Writer(), Clock()
        indexer = await self._indexer(35, writer, clock, max_wait=0.6)
        run = indexer.run_once()
        clock.advance(0.6)
        await self._until(lambda: len(self.sizes) == 1 and clock.getDelayedCalls())
        clock.advance(0.6)
        await self._until(lambda: run.called)
        self.assertEqual(self.successResultOf(run), 35)
        self.assertEqual(self.sizes, [5, 5, 10, 10, 10])
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_busy_writer(self):
        """
        After C{BUSY_WAITS} waits in a row that ran out, the run stops
        waiting: the writer has no gaps to wait for.
        """
        writer, clock = Writer(), Clock()
        indexer = await self._indexer(34, writer, clock)
        run = indexer.run_once()
        for _ in range(3):
            await self._until(lambda: clock.getDelayedCalls())
            clock.advance(0.02)
        await self._until(lambda: run.called)
        self.assertEqual(self.successResultOf(run), 34)
        self.assertEqual(self.sizes, [5, 5, 5, 10, 10])

    async def test_stop_during_a_wait(self):
        """
        Stopped while waiting for the writer, a run ends without another
        transaction.
        """
        writer, clock = Writer(), Clock()
        indexer = await self._indexer(12, writer, clock)
        indexer.startService()
        indexer._loop.clock.advance(2.0)
        stopped = indexer.stopService()
        clock.advance(0.02)
        await stopped
        self.assertEqual(self.sizes, [])
        self.assertEqual(await self._pending(), 12)
        self.assertEqual(clock.getDelayedCalls(), [])
