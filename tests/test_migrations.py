"""
Tests for L{chatd.storage.migrations}, on SQLite or on MySQL (see
L{tests.helpers}).
"""

import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from chatd.storage.migrations import (
    SCHEMA_DIR,
    SchemaTooNew,
    latest_version,
    migrations,
    prepare_database,
    schema_version,
    split_statements,
)
from tests.helpers import ENGINE, empty_database


def _tables_txn(txn):
    if txn.engine.name == "sqlite":
        txn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'")
    else:
        txn.execute("SHOW TABLES")
    return sorted(row[0] for row in txn.fetchall())


def _columns_txn(txn, table):
    txn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    return [column[0] for column in txn._cursor.description]


async def _schema(database):
    tables = await database.run("tables", _tables_txn)
    return {table: await database.run("columns", _columns_txn, table)
            for table in tables}


class MigrationFilesTests(SynchronousTestCase):
    def test_engines_have_the_same_migrations(self):
        """
        Both engines have migrations numbered 1..N with the same names.
        """
        names = {
            engine: [os.path.basename(path) for _, path in migrations(engine)]
            for engine in os.listdir(SCHEMA_DIR)
        }
        self.assertEqual(sorted(names), ["mysql", "sqlite"])
        self.assertEqual(names["sqlite"], names["mysql"])
        self.assertGreaterEqual(len(names["sqlite"]), 1)

    def test_split_statements(self):
        sql = ("-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n"
               "CREATE TABLE b (\n  y TEXT DEFAULT ';'\n);\n\n")
        self.assertEqual(split_statements(sql), [
            "CREATE TABLE a (x INT)",
            "CREATE TABLE b (\n  y TEXT DEFAULT ';'\n)",
        ])


class MigrationTests(TestCase):
    async def test_fresh_database(self):
        """
        A fresh database gets every migration, and its schema holds
        go-chat's tables.
        """
        database = empty_database(self)
        version = await prepare_database(database)
        self.assertEqual(version, latest_version(ENGINE))
        self.assertEqual(await schema_version(database), version)
        tables = await database.run("tables", _tables_txn)
        for table in ["users", "friendships", "chat_groups", "group_members",
                      "messages", "files", "schema_version"]:
            self.assertIn(table, tables)

    async def test_idempotent(self):
        database = empty_database(self)
        first = await prepare_database(database)
        second = await prepare_database(database)
        self.assertEqual(first, second)

    async def test_from_each_earlier_version(self):
        """
        Upgrading from every earlier version gives the same schema as a
        fresh database.
        """
        database = empty_database(self)
        await prepare_database(database)
        expected = await _schema(database)
        for start in range(latest_version(ENGINE)):
            database = empty_database(self)
            self.assertEqual(await prepare_database(database, target=start), start)
            self.assertEqual(await schema_version(database), start)
            self.assertEqual(await prepare_database(database), latest_version(ENGINE))
            self.assertEqual(await _schema(database), expected, f"from {start}")

    async def test_participants_backfilled(self):
        """
        Schema 6 fills C{user_conversations} from the one-to-one messages
        stored before it, so sync still finds them.
        """
        from chatd.stores.messages import MessageStore
        from tests.helpers import create_user

        database = empty_database(self)
        await prepare_database(database, target=5)
        alice = await create_user(database, "alice")
        bob = await create_user(database, "bob")

        def old_insert_txn(txn):
            for sender, recipient, text in [(alice, bob, "hi"), (bob, alice, "yo"),
                                            (alice, alice, "note")]:
                low, high = sorted((sender.id, recipient.id))
                txn.execute(
                    "INSERT INTO messages (conversation, sender_id, message_type,"
                    " recipient_id, content_type, content, created_at)"
                    " VALUES (?, ?, 1, ?, 1, ?, 1)",
                    (f"d:{low}:{high}", sender.id, recipient.id, text))

        await database.run("old messages", old_insert_txn)
        await prepare_database(database)
        found = await MessageStore(database).since(alice.id, [], 0, 10)
        self.assertEqual([m.content for m in found], ["hi", "yo", "note"])
        found = await MessageStore(database).since(bob.id, [], 0, 10)
        self.assertEqual([m.content for m in found], ["hi", "yo"])

    async def test_search_queue_kept_through_schema_7(self):
        """
        Schema 7 drops the trigger that queued new messages for the search
        index: what it queued before is still indexed, what was indexed is
        not read again, and messages stored afterwards are found by id.
        """
        from chatd.stores.messages import ONE_TO_ONE, MessageStore, NewMessage
        from chatd.stores.search import SearchStore, _add_txn, parse_query
        from tests.helpers import create_user

        database = empty_database(self)
        await prepare_database(database, target=6)
        alice = await create_user(database, "alice")
        bob = await create_user(database, "bob")
        messages, search = MessageStore(database), SearchStore(database)

        async def send(text):
            [stored] = await messages.insert_batch(
                [NewMessage(alice.id, None, ONE_TO_ONE, bob.id, 1, text)], 1)
            return stored.id

        indexed = await send("indexed before")

        def index_as_schema_6_did_txn(txn):
            _add_txn(txn, [(indexed, "indexed before")], replace=False)
            txn.execute("DELETE FROM search_pending WHERE message_id = ?", (indexed,))

        await database.run("index", index_as_schema_6_did_txn)
        queued = await send("queued before")
        await prepare_database(database, target=7)
        progress = await database.run("progress", lambda txn: txn.execute(
            "SELECT indexed_through FROM search_progress").fetchall())
        self.assertEqual([int(row[0]) for row in progress], [queued])
        await prepare_database(database)
        later = await send("stored after")

        async def found(text):
            return [m.id for m in await search.search(
                alice.id, [], parse_query(text))]

        self.assertEqual(await found("before"), [queued, indexed])
        self.assertEqual(await found("after"), [later])
        self.assertEqual(await search.catch_up(), 0)

    async def test_sqlite_search_moves_to_its_own_file(self):
        """
        Schema 8 (SQLite) drops the index from the chat database; the
        search file starts empty and the index is built again from the
        messages, as they are now.
        """
        if ENGINE != "sqlite":
            raise SkipTest("MySQL keeps its index in the database")
        from chatd.stores.edits import EditStore
        from chatd.stores.messages import ONE_TO_ONE, MessageStore, NewMessage
        from chatd.stores.search import SearchStore, parse_query
        from tests.helpers import create_user

        database = empty_database(self)
        await prepare_database(database, target=7)
        alice = await create_user(database, "alice")
        bob = await create_user(database, "bob")
        stored = await MessageStore(database).insert_batch(
            [NewMessage(alice.id, None, ONE_TO_ONE, bob.id, 1, text)
             for text in ("lunch at noon", "dinner later")], 1)
        await prepare_database(database)
        tables = await database.run("tables", lambda txn: txn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'message_search%'"
            " OR name = 'search_progress'").fetchall())
        self.assertEqual(tables, [])
        self.assertTrue(await EditStore(database).edit(stored[1].id, "supper later", 2))
        search = SearchStore(database)

        async def found(text):
            return [m.id for m in await search.search(alice.id, [], parse_query(text))]

        self.assertEqual(await found("lunch"), [stored[0].id])
        self.assertEqual(await found("supper"), [stored[1].id])
        self.assertEqual(await found("dinner"), [])

    async def test_newer_database_refused(self):
        """
        A database whose schema is newer than the code is refused with a
        message that says so, and is left as it was.
        """
        database = empty_database(self)
        await prepare_database(database)
        newer = latest_version(ENGINE) + 1
        await database.run("bump", lambda txn: txn.execute(
            "UPDATE schema_version SET version = ?", (newer,)))
        with self.assertRaises(SchemaTooNew) as raised:
            await prepare_database(database)
        self.assertIn(f"schema version {newer}", str(raised.exception))
        self.assertIn("upgrade chatd", str(raised.exception))
        self.assertEqual(await schema_version(database), newer)

