"""
Tests for L{chatd.indexer_process}: the daemon runs the search indexer as a
child process, which indexes on its own, at a lower priority, is started
again if it exits, and ends when the daemon stops; on the test database.
"""

import os
import signal

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd.indexer_process import IndexerProcess, indexer_settings
from chatd.storage.engines import BACKGROUND_NICE
from chatd.stores.messages import ONE_TO_ONE, MessageStore, NewMessage
from tests.helpers import create_user, server_database, start_server, test_config


def _indexer(service):
    return next(child for child in service if isinstance(child, IndexerProcess))


def _indexed_through_txn(txn):
    txn.execute("SELECT indexed_through FROM search_progress")
    return int(txn.fetchone()[0])


async def _wait_for(condition, seconds=30):
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return True
        await deferLater(reactor, 0.05, lambda: None)
    return False


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class IndexerProcessTests(TestCase):
    async def start(self, **changes):
        config = test_config(self, messages_search_index_process=True,
                             messages_search_index_interval=0.1, **changes)
        self.service = await start_server(self, config)
        self.database = server_database(self.service)
        self.indexer = _indexer(self.service)

    async def store_messages(self, count):
        alice = await create_user(self.database, "alice")
        bob = await create_user(self.database, "bob")
        stored = await MessageStore(self.database).insert_batch(
            [NewMessage(alice.id, f"c{i}", ONE_TO_ONE, bob.id, 1, f"note {i}")
             for i in range(count)], 1000)
        return stored[-1].id

    async def indexed_through(self):
        return await self.database.run_search("progress", _indexed_through_txn)

    async def test_indexes_in_a_process_of_its_own(self):
        """
        Messages are indexed with nobody searching, by a child process at
        the background priority.
        """
        await self.start()
        last = await self.store_messages(30)

        async def indexed():
            return await self.indexed_through() == last

        self.assertTrue(await _wait_for(indexed))
        pid = self.indexer.transport.pid
        self.assertIn(str(pid), open(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
                      .read().split())
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, pid), BACKGROUND_NICE)

    async def test_stops_with_the_daemon(self):
        """
        Stopping the daemon ends the indexer process.
        """
        await self.start()
        pid = self.indexer.transport.pid
        await self.service.stopService()
        self.assertFalse(_running(pid))
        self.assertIsNone(self.indexer.transport)

    async def test_started_again_after_exiting(self):
        """
        An indexer process that dies is started again after the restart
        delay, and indexes what arrived meanwhile.
        """
        await self.start()
        self.indexer._restart_delay = 0.1
        first = self.indexer.transport.pid
        os.kill(first, signal.SIGKILL)

        async def restarted():
            transport = self.indexer.transport
            return transport is not None and transport.pid != first

        self.assertTrue(await _wait_for(restarted))
        last = await self.store_messages(5)

        async def indexed():
            return await self.indexed_through() == last

        self.assertTrue(await _wait_for(indexed))

    async def test_killed_if_it_does_not_stop(self):
        """
        A child that does not exit once told to stop is killed after the
        stop timeout.
        """
        await self.start()
        self.indexer._stop_timeout = 0.2
        pid = self.indexer.transport.pid
        os.kill(pid, signal.SIGSTOP)
        await self.service.stopService()
        self.assertFalse(_running(pid))

    def test_password_not_on_the_command_line(self):
        """
        The child gets the database password on its standard input, with
        the rest of its settings, not in its arguments.
        """
        config = test_config(self, database_password="sekrit",
                             messages_search_index_interval=3.0)
        settings = indexer_settings(config)
        self.assertEqual(settings["password"], "sekrit")
        self.assertEqual(settings["interval"], 3.0)
        spawned = []

        class Reactor:
            def spawnProcess(self, protocol, executable, args, env, childFDs):
                spawned.append(args)

                class Transport:
                    pid = 1

                return Transport()

        IndexerProcess(settings, Reactor()).startService()
        self.assertNotIn("sekrit", " ".join(spawned[0]))
