"""
Tests for L{chatd.indexer.SearchIndexer}: it indexes queued messages on its
timer (a test clock), a bounded amount per run, and stops only once a run
in progress is done; on the test database.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from chatd.indexer import SearchIndexer
from chatd.stores.messages import ONE_TO_ONE, MessageStore, NewMessage
from chatd.stores.search import SearchStore, parse_query
from tests.helpers import create_user, migrated_database


class SearchIndexerTests(TestCase):
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
        rows = await self.database.run("pending", lambda txn: txn.execute(
            "SELECT COUNT(*) FROM search_pending").fetchone())
        return int(rows[0])

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
        original = self.database.run_derived

        def run_derived(description, *args, **kwargs):
            transactions.append(description)
            return original(description, *args, **kwargs)

        self.patch(self.database, "run_derived", run_derived)
        indexer = SearchIndexer(self.store, Clock(), 0, batch=5, rounds=4)
        self.assertEqual(await indexer.run_once(), 12)
        self.assertEqual(transactions, ["search_catch_up"] * 3)

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
