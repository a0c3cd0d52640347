"""
Tests for L{chatd.storage.database} and the engines, on SQLite or MySQL.
"""

import os
import sqlite3
import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from chatd.service import DatabaseService
from chatd.storage.database import Database, Transaction
from chatd.storage.engines import (
    BACKGROUND_NICE,
    MysqlEngine,
    SqliteEngine,
    lower_thread_priority,
)
from tests.helpers import (
    ENGINE,
    _mysql_admin,
    database_url,
    make_database,
    migrated_database,
)


def _insert_user_txn(txn, uuid, username, created_at=1):
    txn.execute(
        "INSERT INTO users (uuid, username, password_hash, created_at, updated_at)"
        " VALUES (?, ?, 'x', ?, ?)", (uuid, username, created_at, created_at))
    return txn.lastrowid


def _count_txn(txn, table):
    txn.execute(f"SELECT COUNT(*) FROM {table}")
    return txn.fetchone()[0]


class EngineTests(TestCase):
    async def test_connection_settings(self):
        """
        SQLite runs with WAL and foreign keys; MySQL with utf8mb4 and InnoDB.
        """
        database = await migrated_database(self)

        def settings_txn(txn):
            if txn.engine.name == "sqlite":
                txn.execute("PRAGMA journal_mode")
                journal = txn.fetchone()[0]
                txn.execute("PRAGMA foreign_keys")
                return journal, txn.fetchone()[0]
            txn.execute("SELECT @@character_set_connection")
            charset = txn.fetchone()[0]
            txn.execute("SELECT ENGINE FROM information_schema.TABLES"
                        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'")
            return charset, txn.fetchone()[0]

        expected = {"sqlite": ("wal", 1), "mysql": ("utf8mb4", "InnoDB")}
        self.assertEqual(await database.run("settings", settings_txn), expected[ENGINE])
        # A synchronous tool's connection (bench.search) is set up the same.
        connection = database.engine.connect()
        self.addCleanup(connection.close)
        cursor = connection.cursor()
        database.engine.begin(cursor)
        self.assertEqual(settings_txn(Transaction(database.engine, cursor)), expected[ENGINE])
        connection.rollback()

    async def test_unicode_round_trip(self):
        database = await migrated_database(self)
        await database.run("insert", _insert_user_txn, "u-1", "emoji")

        def txn(txn):
            txn.execute("UPDATE users SET nickname = ? WHERE uuid = ?", ("猫 😀 100%", "u-1"))
            txn.execute("SELECT nickname FROM users WHERE uuid = ?", ("u-1",))
            return txn.fetchone()[0]

        self.assertEqual(await database.run("nick", txn), "猫 😀 100%")

    async def test_values_round_trip(self):
        """
        Rows written out by C{execute_values} come back exactly as given,
        whatever their strings hold. MySQL, where they are written as
        literals, refuses values of other kinds.
        """
        database = await migrated_database(self)
        awkward = ["it's", 'say "hi"', "back\\slash\\", "nul\x00byte", "100% ?",
                   "line\nbreak\r\x1a", "猫 😀", "\\'; DROP TABLE users; --", ""]
        rows = [(f"u-{n}", text, "x", n, n) for n, text in enumerate(awkward)]

        def insert_txn(txn):
            txn.execute_values(
                "INSERT INTO users (uuid, username, password_hash, created_at,"
                " updated_at) VALUES ", rows)
            txn.execute("SELECT uuid, username, password_hash, created_at,"
                        " updated_at FROM users ORDER BY created_at")
            return [tuple(row) for row in txn.fetchall()]

        self.assertEqual(await database.run("insert", insert_txn), rows)

        def refused_txn(txn):
            txn.execute_values("INSERT INTO users (uuid, username, password_hash,"
                               " created_at, updated_at) VALUES ",
                               [("u-x", "float", "x", 1.5, 1)])

        if database.engine.name == "mysql":
            with self.assertRaises(TypeError):
                await database.run("refused", refused_txn)

    def test_literals_are_pymysqls(self):
        """
        chatd's VALUES writer gives the statement pymysql would have made
        of the same rows, awkward strings included.
        """
        from bench.micro import message_rows, pymysql_values_sql

        rows = message_rows(3) + [("it's \\ \" \n \x00 \x1a % 猫", -7, None, 0, 1, 2,
                                   "", "x", None, 2**62)]
        engine = MysqlEngine("127.0.0.1", 3306, "u", "", "d")
        self.assertEqual(engine.values_sql(rows), pymysql_values_sql(rows)())

    async def test_derived_work_commits_without_syncing(self):
        """
        On SQLite, work that can be redone (L{Database.run_derived})
        commits without waiting for the disk (synchronous=NORMAL, 1); any
        other transaction, before or after, waits for it (FULL, 2). On
        either engine, what it did is committed.
        """
        database = await migrated_database(self)
        sqlite = database.engine.name == "sqlite"

        def synchronous_txn(txn, uuid=None):
            if uuid is not None:
                _insert_user_txn(txn, uuid, uuid)
            if sqlite:
                txn.execute("PRAGMA synchronous")
                return int(txn.fetchone()[0])

        levels = [await database.run("a", synchronous_txn),
                  await database.run_derived("b", synchronous_txn, "u-1"),
                  await database.run_derived("c", synchronous_txn, "u-2"),
                  await database.run("d", synchronous_txn),
                  await database.run_writes("e", synchronous_txn)]
        if sqlite:
            self.assertEqual(levels, [2, 1, 1, 2, 2])
        self.assertEqual(await database.run("count", _count_txn, "users"), 2)

    async def test_username_unique_ignoring_case(self):
        database = await migrated_database(self)
        await database.run("insert", _insert_user_txn, "u-1", "Alice")
        with self.assertRaises(Exception) as raised:
            await database.run("insert", _insert_user_txn, "u-2", "alice")
        self.assertTrue(database.engine.is_duplicate(raised.exception))

    async def test_client_message_id_unique_per_sender(self):
        """
        A sender's client message id is unique; other senders may reuse it,
        and messages without one are not constrained.
        """
        database = await migrated_database(self)
        alice = await database.run("insert", _insert_user_txn, "u-1", "alice")
        bob = await database.run("insert", _insert_user_txn, "u-2", "bob")

        def insert_txn(txn, sender, client_id):
            txn.execute(
                "INSERT INTO messages (conversation, sender_id, client_msg_id,"
                " message_type, recipient_id, content_type, content, created_at)"
                " VALUES ('d:1:2', ?, ?, 1, 1, 1, 'hi', 1)", (sender, client_id))

        await database.run("m", insert_txn, alice, "c1")
        await database.run("m", insert_txn, bob, "c1")
        await database.run("m", insert_txn, alice, None)
        await database.run("m", insert_txn, alice, None)
        with self.assertRaises(Exception) as raised:
            await database.run("m", insert_txn, alice, "c1")
        self.assertTrue(database.engine.is_duplicate(raised.exception))
        self.assertEqual(await database.run("count", _count_txn, "messages"), 4)

    async def test_foreign_keys_enforced(self):
        database = await migrated_database(self)

        def orphan_txn(txn):
            txn.execute("INSERT INTO group_members (group_id, user_id, joined_at)"
                        " VALUES (999, 999, 1)")

        with self.assertRaises(database.engine.module.IntegrityError):
            await database.run("orphan", orphan_txn)

    async def test_failed_transaction_rolled_back(self):
        database = await migrated_database(self)

        def half_txn(txn):
            _insert_user_txn(txn, "u-1", "alice")
            raise ValueError("boom")

        with self.assertRaises(ValueError):
            await database.run("half", half_txn)
        self.assertEqual(await database.run("count", _count_txn, "users"), 0)

    async def test_close_waits_for_work_in_flight(self):
        """
        Closing lets a transaction already running finish and commit, and
        refuses new work.
        """
        database = await migrated_database(self)

        def slow_txn(txn):
            time.sleep(0.2)
            return _insert_user_txn(txn, "u-1", "slow")

        running = Deferred.fromCoroutine(database.run("slow", slow_txn))
        await database.close()
        self.assertIsInstance(await running, int)
        with self.assertRaises(RuntimeError):
            await database.run("late", _count_txn, "users")
        if ENGINE == "sqlite":
            url = "sqlite:///" + database.engine.path
        else:
            url = database_url(self)
        reopened = make_database(self, url)
        self.assertEqual(await reopened.run("count", _count_txn, "users"), 1)


class PingTests(TestCase):
    async def test_ping_connects_every_pool(self):
        """
        A ping answers through the transaction pool and through the
        message writer's own pool, so both are connected after it.
        """
        database = await migrated_database(self)
        writer_pool = database.engine.connection_pool(reactor)
        self.addCleanup(writer_pool.close)
        with_writer = Database(database.engine, database._pool, writer_pool=writer_pool)
        self.assertEqual(writer_pool.connections, {})
        await with_writer.ping()
        self.assertEqual(len(writer_pool.connections), 1)

    async def test_start_connects_the_writer(self):
        """
        The database service connects the message writer when it starts,
        not when the first message arrives.
        """
        database = await migrated_database(self)
        writer_pool = database.engine.connection_pool(reactor)
        self.addCleanup(writer_pool.close)
        with_writer = Database(database.engine, database._pool, writer_pool=writer_pool)
        await DatabaseService(with_writer).startService()
        self.assertEqual(len(writer_pool.connections), 1)


def _thread_priority_txn(txn):
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class SearchConnectionTests(TestCase):
    async def test_search_work_yields_the_core(self):
        """
        The indexer's work runs on the search connection, whose thread has
        a lower CPU priority; searches too on SQLite, where only that
        connection sees the index, and on the transaction pool on MySQL.
        """
        database = await migrated_database(self)
        self.assertEqual(await database.run_background("nice", _thread_priority_txn),
                         BACKGROUND_NICE)
        self.assertEqual(await database.run_search("nice", _thread_priority_txn),
                         BACKGROUND_NICE if ENGINE == "sqlite" else 0)
        self.assertEqual(await database.run("nice", _thread_priority_txn), 0)

    async def test_search_pool_used_and_closed(self):
        """
        Given a search pool, background work runs there, and closing the
        database closes it.
        """
        database = await migrated_database(self)
        search_pool = database.engine.connection_pool(reactor)
        with_search = Database(database.engine, database.engine.connection_pool(reactor),
                               search_pool=search_pool)
        await with_search.run_background("count", _count_txn, "users")
        self.assertEqual(len(search_pool.connections), 1)
        await with_search.close()
        self.assertFalse(search_pool.running)

    async def test_sqlite_messages_stored_while_indexing(self):
        """
        On SQLite the search connection writes only the index's own file:
        while one of its transactions is open and has written, a
        connection to the chat database takes its write lock at once (one
        that would have to wait fails here, as it waits for nothing) and
        commits.
        """
        if ENGINE != "sqlite":
            raise SkipTest("MySQL's indexer writes rows of its own, beside the messages")
        database = await migrated_database(self)
        engine = database.engine
        search = engine.connect_search()
        self.addCleanup(search.close)
        cursor = search.cursor()
        engine.begin(cursor)
        cursor.execute("SELECT COUNT(*) FROM messages")
        cursor.execute("UPDATE search_progress SET indexed_through = 0")
        chat = sqlite3.connect(engine.path, timeout=0, isolation_level=None)
        self.addCleanup(chat.close)
        chat.execute("BEGIN IMMEDIATE")
        _insert_user_txn(chat.cursor(), "u-1", "one")
        chat.execute("COMMIT")
        cursor.execute("COMMIT")
        self.assertEqual(await database.run("count", _count_txn, "users"), 1)

    def test_lower_thread_priority(self):
        """
        Only the calling thread's priority is lowered.
        """
        seen = []

        def lowered():
            lower_thread_priority()
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

        thread = threading.Thread(target=lowered)
        thread.start()
        thread.join()
        self.assertEqual(seen, [BACKGROUND_NICE])
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), 0)


class CheckpointTests(TestCase):
    """
    SQLite's log is copied into the database file on the search
    connection (L{Database.checkpoint}), every so often
    (L{DatabaseService}).
    """

    async def checkpointed_database(self):
        if ENGINE != "sqlite":
            raise SkipTest("MySQL has no log of SQLite's kind to checkpoint")
        from chatd.storage import database_for
        from chatd.storage.migrations import prepare_database

        path = os.path.join(self.mktemp(), "chat.sqlite3")
        os.makedirs(os.path.dirname(path))
        database = database_for(SqliteEngine(path, checkpoint_interval=0.05), reactor)
        self.addCleanup(database.close)
        await prepare_database(database)
        return database

    async def test_checkpoint_copies_the_log(self):
        """
        A checkpoint copies every page the log holds; with nothing run on
        the main connection since, the next does nothing.
        """
        database = await self.checkpointed_database()
        await database.run("insert", _insert_user_txn, "u-1", "one")
        logged, copied = await database.checkpoint()
        self.assertGreater(logged, 0)
        self.assertEqual(copied, logged)
        self.assertIsNone(await database.checkpoint())
        await database.run("count", _count_txn, "users")
        self.assertIsNotNone(await database.checkpoint())

    async def test_checkpoint_does_not_wait_for_the_writer(self):
        """
        A checkpoint neither waits for nor blocks a write transaction in
        progress on another connection: it copies what was committed.
        """
        database = await self.checkpointed_database()
        await database.run("insert", _insert_user_txn, "u-1", "one")
        writer = sqlite3.connect(database.engine.path, timeout=0, isolation_level=None)
        self.addCleanup(writer.close)
        writer.execute("BEGIN IMMEDIATE")
        _insert_user_txn(writer.cursor(), "u-2", "two")
        logged, copied = await Deferred.fromCoroutine(database.checkpoint()).addTimeout(
            5, reactor)
        self.assertEqual(copied, logged)
        writer.execute("COMMIT")
        self.assertEqual(await database.run("count", _count_txn, "users"), 2)

    async def test_checkpoint_waits_for_runs_to_finish(self):
        """
        A run counts once it has finished, so a checkpoint made while it
        is in flight leaves the next one to do; a failed checkpoint is
        made again at the next call.
        """
        database = await self.checkpointed_database()
        await database.run("insert", _insert_user_txn, "u-1", "one")
        await database.checkpoint()
        release = threading.Event()

        def slow_insert_txn(txn):
            release.wait(30)
            return _insert_user_txn(txn, "u-2", "two")

        running = database.run("slow insert", slow_insert_txn)
        self.assertIsNone(await database.checkpoint())
        release.set()
        await running
        checkpoint_txn = database.engine.checkpoint_txn

        def failing_txn(txn):
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(database.engine, "checkpoint_txn", failing_txn)
        with self.assertRaises(sqlite3.OperationalError):
            await database.checkpoint()
        self.patch(database.engine, "checkpoint_txn", checkpoint_txn)
        logged, copied = await database.checkpoint()
        self.assertEqual(copied, logged)
        self.assertGreater(logged, 0)

    async def test_service_stopped_while_starting(self):
        """
        A service stopped before its database is ready starts no
        checkpoints once it is.
        """
        database = await self.checkpointed_database()
        clock = Clock()
        pinged = Deferred()
        self.patch(database, "ping", lambda: pinged)
        self.patch(database, "checkpoint", lambda: self.fail("checkpointed"))
        service = DatabaseService(database, clock)
        started = service.startService()
        await service.stopService()
        pinged.callback(None)
        await started
        clock.advance(1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_writer_checkpoints_seldom_with_background_checkpoints(self):
        """
        The connection that stores messages checkpoints the log itself
        every 1,000 pages, or every 4,000 when checkpoints are made in
        the background.
        """
        path = os.path.join(self.mktemp(), "chat.sqlite3")
        os.makedirs(os.path.dirname(path))
        for interval, pages in ((0, 1000), (0.05, 4000)):
            connection = SqliteEngine(path, interval).connect()
            self.addCleanup(connection.close)
            self.assertEqual(connection.execute("PRAGMA wal_autocheckpoint").fetchone(),
                             (pages,))

    def test_configured_interval(self):
        """
        The engine of a configured database carries
        C{database.checkpoint_interval}, which the service reads.
        """
        if ENGINE != "sqlite":
            raise SkipTest("SQLite only")
        from chatd.storage import open_database
        from tests.helpers import test_config

        config = test_config(self, database_checkpoint_interval=0.2)
        database = open_database(config, reactor)
        self.addCleanup(database.close)
        self.assertEqual(database.engine.checkpoint_interval, 0.2)

    async def test_not_on_mysql(self):
        """
        MySQL checkpoints its own redo log: there is nothing to do.
        """
        if ENGINE != "mysql":
            raise SkipTest("MySQL only")
        database = await migrated_database(self)
        await database.run("count", _count_txn, "users")
        self.assertIsNone(await database.checkpoint())

    async def test_service_checkpoints_every_interval(self):
        """
        Once the database is prepared, the service checkpoints it every
        interval until it stops; a failed checkpoint is logged and the
        next one still comes.
        """
        database = await self.checkpointed_database()
        clock = Clock()
        calls = []

        def checkpoint():
            calls.append(clock.seconds())
            if len(calls) == 2:
                return fail(RuntimeError("disk on fire"))
            return succeed(None)

        self.patch(database, "checkpoint", checkpoint)
        service = DatabaseService(database, clock)
        await service.startService()
        clock.advance(0.05)
        clock.advance(0.05)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        clock.advance(0.05)
        self.assertEqual(calls, [0.05, 0.1, 0.15000000000000002])
        await service.stopService()
        clock.advance(1)
        self.assertEqual(len(calls), 3)

    async def test_service_without_interval(self):
        """
        An interval of 0 leaves checkpoints to SQLite's automatic ones.
        """
        database = await self.checkpointed_database()
        self.patch(database.engine, "checkpoint_interval", 0)
        clock = Clock()
        self.patch(database, "checkpoint", lambda: self.fail("checkpointed"))
        service = DatabaseService(database, clock)
        await service.startService()
        clock.advance(1)
        self.assertEqual(clock.getDelayedCalls(), [])
        await service.stopService()


class _FakePool:
    """
    Stands in for an adbapi pool: fails with the given errors, then
    succeeds.
    """

    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0
        self.closed = False

    def runInteraction(self, interaction, *args):
        self.calls += 1
        if self.errors:
            return fail(self.errors.pop(0))
        return succeed("done")

    def close(self):
        self.closed = True


class RetryTests(SynchronousTestCase):
    def run_with(self, engine, errors, retries=3):
        pool = _FakePool(errors)
        database = Database(engine, pool, retries=retries)
        d = Deferred.fromCoroutine(database.run("test", lambda txn: None))
        return pool, d

    def mysql_error(self, code):
        import pymysql

        return pymysql.err.OperationalError(code, "simulated")

    def test_deadlock_retried(self):
        engine = MysqlEngine("h", 1, "u", "", "d")
        pool, d = self.run_with(engine, [self.mysql_error(1213), self.mysql_error(2013)])
        self.assertEqual(self.successResultOf(d), "done")
        self.assertEqual(pool.calls, 3)

    def test_retries_bounded(self):
        engine = MysqlEngine("h", 1, "u", "", "d")
        pool, d = self.run_with(engine, [self.mysql_error(1213)] * 5, retries=2)
        self.failureResultOf(d, Exception)
        self.assertEqual(pool.calls, 3)

    def test_other_errors_not_retried(self):
        engine = MysqlEngine("h", 1, "u", "", "d")
        pool, d = self.run_with(engine, [self.mysql_error(1064)])
        self.failureResultOf(d, Exception)
        self.assertEqual(pool.calls, 1)

    def test_sqlite_not_retried(self):
        pool, d = self.run_with(SqliteEngine(":memory:"), [ValueError("x")])
        self.failureResultOf(d, ValueError)
        self.assertEqual(pool.calls, 1)

    def test_mysql_parameter_style(self):
        self.assertEqual(MysqlEngine.convert("SELECT '%' WHERE a = ? AND b = ?"),
                         "SELECT '%%' WHERE a = %s AND b = %s")


class MysqlReconnectTests(TestCase):
    """
    A MySQL connection lost under chatd is replaced and the transaction
    retried. (Defined only when the suite runs on MySQL.)
    """

    async def test_lost_connection_is_retried(self):
        database = await migrated_database(self)

        def connection_id_txn(txn):
            txn.execute("SELECT CONNECTION_ID()")
            return txn.fetchone()[0]

        first = await database.run("id", connection_id_txn)
        _mysql_admin([f"KILL CONNECTION {first}"])
        second = await database.run("id", connection_id_txn)
        self.assertNotEqual(first, second)
        self.assertEqual(await database.run("count", _count_txn, "users"), 0)
        # adbapi logs the failed rollback on the dead connection.
        from twisted.enterprise.adbapi import ConnectionLost

        self.assertTrue(self.flushLoggedErrors(ConnectionLost))
        self.flushLoggedErrors(database.engine.module.MySQLError)

    async def _store_losing_the_first_reply(self, run, first_client_id):
        """
        Store two messages with C{run} (a L{Database} method), killing the
        connection right after the first attempt's INSERT, as if its reply
        were lost; the attempts' (retry, results), the result, and the
        number of messages stored.
        """
        from twisted.enterprise.adbapi import ConnectionLost

        from chatd.stores.messages import ONE_TO_ONE, NewMessage, insert_batch_txn

        database = await migrated_database(self)
        alice = await database.run("alice", _insert_user_txn, "u-a", "alice")
        bob = await database.run("bob", _insert_user_txn, "u-b", "bob")
        batch = [NewMessage(alice, first_client_id, ONE_TO_ONE, bob, 1, "hi"),
                 NewMessage(bob, "c2", ONE_TO_ONE, alice, 1, "hello")]
        attempts = []

        def lose_the_first_reply_txn(txn):
            stored = insert_batch_txn(txn, batch, 5, set())
            attempts.append((txn.retry, stored))
            if len(attempts) == 1:
                txn.execute("SELECT CONNECTION_ID()")
                _mysql_admin([f"KILL CONNECTION {txn.fetchone()[0]}"])
                txn.execute("SELECT 1")
            return stored

        stored = await getattr(database, run)("insert", lose_the_first_reply_txn)
        count = await database.run("count", _count_txn, "messages")
        self.assertTrue(self.flushLoggedErrors(ConnectionLost))
        self.flushLoggedErrors(database.engine.module.MySQLError)
        return attempts, stored, count

    async def test_batch_committed_before_a_lost_connection(self):
        """
        A batch of messages whose INSERT committed on the writer's
        autocommit connection just before the connection was lost is
        retried, and the retry reports its messages as stored by it (to be
        delivered), with their ids, not as resends.
        """
        attempts, stored, count = await self._store_losing_the_first_reply(
            "run_writes", "c1")
        [(first_retry, first), (second_retry, _)] = attempts
        self.assertEqual((first_retry, second_retry), (False, True))
        self.assertEqual(stored, first)
        self.assertEqual([s.duplicate for s in stored], [False, False])
        self.assertEqual(count, 2)

    async def test_transaction_lost_before_its_commit(self):
        """
        A batch with a message without a client id is a transaction: a
        connection lost after its INSERT, before the COMMIT, stores
        nothing, and the retry stores each message once.
        """
        attempts, stored, count = await self._store_losing_the_first_reply("run", None)
        self.assertEqual(len(attempts), 2)
        self.assertEqual([s.duplicate for s in stored], [False, False])
        self.assertEqual(count, 2)

if ENGINE != "mysql":
    del MysqlReconnectTests
