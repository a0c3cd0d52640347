"""
Tests for L{chatd.stores.search}: the tokenizer, the index kept through
the queue trigger, edits and recalls, and searching only what a user may
read, on the test database (SQLite, or MariaDB with CHATD_TEST_MYSQL).
"""

import os
import sqlite3

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from chatd.errors import BadRequest
from chatd.storage import database_for
from chatd.storage.engines import SqliteEngine
from chatd.storage.migrations import prepare_database
from chatd.stores.edits import EditStore
from chatd.stores.messages import GROUP, ONE_TO_ONE, MessageStore, NewMessage
from chatd.stores.search import SearchStore, parse_query, terms
from tests.helpers import (
    ENGINE,
    create_group,
    create_user,
    interleaved,
    migrated_database,
    on_another_connection,
)


class TermsTests(SynchronousTestCase):
    def test_latin_words(self):
        self.assertEqual(terms("Hello, WORLD! hello_again 42"),
                         ["hello", "world", "again", "42"])

    def test_ascii_shortcut(self):
        """
        ASCII text takes a shorter path to the same terms.
        """
        import random
        import string

        from chatd.stores.search import _terms

        rng = random.Random(5)
        samples = ["", "  ", "A_b-C", "x" * 70 + " y", "Don't STOP 3.14 e-mail",
                   "".join(chr(n) for n in range(128))]
        samples += ["".join(rng.choice(string.printable) for _ in range(40))
                    for _ in range(200)]
        for text in samples:
            self.assertEqual(terms(text), _terms(text), text)
        self.assertEqual(terms("x" * 70), ["x" * 64])

    def test_cjk_bigrams(self):
        self.assertEqual(terms("你好世界"), ["你好", "好世", "世界", "界"])
        self.assertEqual(terms("東京へ"), ["東京", "京へ", "へ"])

    def test_mixed(self):
        self.assertEqual(terms("Go语言rocks"), ["go", "语言", "言", "rocks"])

    def test_query(self):
        q = parse_query("Hello 世界和平 字")
        self.assertEqual(q.exact, ("hello", "世界", "界和", "和平"))
        self.assertEqual(q.prefixes, ("字",))
        self.assertEqual(q.phrases, ("世界和平",))

    def test_empty_query(self):
        self.assertRaises(BadRequest, parse_query, " ,.! ")
        self.assertRaises(BadRequest, parse_query, "")

    def test_too_many_terms(self):
        self.assertRaises(BadRequest, parse_query,
                          " ".join(f"w{i}" for i in range(17)))


class SearchStoreTests(TestCase):
    async def _setup(self):
        self.database = await migrated_database(self)
        self.messages = MessageStore(self.database)
        self.search = SearchStore(self.database)
        self.alice = await create_user(self.database, "alice")
        self.bob = await create_user(self.database, "bob")
        self.carol = await create_user(self.database, "carol")
        self.group = await create_group(self.database, self.alice, "g",
                                        [self.bob])
        self.ids = {}
        for key, sender, recipient, kind, content in [
            ("ab1", self.alice, self.bob, ONE_TO_ONE, "Hello Bob, lunch today?"),
            ("ab2", self.bob, self.alice, ONE_TO_ONE, "我们明天去东京吧"),
            ("bc1", self.bob, self.carol, ONE_TO_ONE, "hello carol, secret lunch"),
            ("g1", self.alice, self.group, GROUP, "Lunch at noon, 你好大家"),
            ("g2", self.bob, self.group, GROUP, "東京タワーへ行きましょう"),
        ]:
            [stored] = await self.messages.insert_batch(
                [NewMessage(sender.id, None, kind, recipient.id, 1, content)],
                1000)
            self.ids[key] = stored.id

    async def _find(self, user, text, conversation=None, before=None,
                    limit=20, groups=None):
        if groups is None:
            groups = [self.group.id] if user is not self.carol else []
        found = await self.search.search(user.id, groups, parse_query(text),
                                         conversation, before, limit)
        inverse = {v: k for k, v in self.ids.items()}
        return [inverse[m.id] for m in found]

    async def test_latin_words(self):
        """
        Words are found case-insensitively, newest first, only in what the
        user may read.
        """
        await self._setup()
        self.assertEqual(await self._find(self.alice, "LUNCH"), ["g1", "ab1"])
        self.assertEqual(await self._find(self.bob, "lunch"),
                         ["g1", "bc1", "ab1"])
        self.assertEqual(await self._find(self.carol, "lunch"), ["bc1"])
        self.assertEqual(await self._find(self.alice, "hello lunch"), ["ab1"])
        self.assertEqual(await self._find(self.alice, "lun"), [])

    async def test_cjk_substrings(self):
        await self._setup()
        self.assertEqual(await self._find(self.alice, "东京"), ["ab2"])
        self.assertEqual(await self._find(self.alice, "明天去"), ["ab2"])
        self.assertEqual(await self._find(self.alice, "東京"), ["g2"])
        self.assertEqual(await self._find(self.alice, "タワー"), ["g2"])
        self.assertEqual(await self._find(self.alice, "京"), ["g2", "ab2"])
        self.assertEqual(await self._find(self.alice, "大家"), ["g1"])
        self.assertEqual(await self._find(self.alice, "天明"), [])
        # Bigrams of a longer run must also be adjacent in the content.
        self.assertEqual(await self._find(self.alice, "明天东京"), [])

    async def test_one_conversation_and_pages(self):
        await self._setup()
        self.assertEqual(
            await self._find(self.bob, "lunch", conversation=f"g:{self.group.id}"),
            ["g1"])
        first = await self._find(self.bob, "lunch", limit=2)
        self.assertEqual(first, ["g1", "bc1"])
        self.assertEqual(
            await self._find(self.bob, "lunch", before=self.ids["bc1"]), ["ab1"])

    async def test_edit_and_recall(self):
        """
        An edited message is found by its new text only; a recalled one
        not at all.
        """
        await self._setup()
        edits = EditStore(self.database)
        self.assertTrue(await edits.edit(self.ids["ab1"], "dinner tonight", 2000))
        self.assertEqual(await self._find(self.alice, "lunch"), ["g1"])
        self.assertEqual(await self._find(self.alice, "dinner"), ["ab1"])
        recalled, orphan = await edits.recall(self.ids["g1"], 3000)
        self.assertEqual((recalled, orphan), (True, None))
        self.assertEqual(await self._find(self.alice, "noon"), [])
        self.assertEqual(await self._find(self.alice, "你好"), [])

    async def test_catch_up(self):
        """
        New messages are not queued: the indexer finds them above the last
        id it indexed. Searching afterwards still works.
        """
        await self._setup()
        queued = await self.database.run("queued", lambda txn: txn.execute(
            "SELECT COUNT(*) FROM search_pending").fetchone())
        self.assertEqual(int(queued[0]), 0)
        self.assertEqual(await self.search.catch_up(), 5)
        self.assertEqual(await self.search.catch_up(), 0)
        self.assertEqual(await self._find(self.carol, "secret"), ["bc1"])

    async def _terms_of(self, message_id):
        def terms_txn(txn):
            if txn.engine.name == "sqlite":
                txn.execute("SELECT terms FROM message_search WHERE rowid = ?",
                            (message_id,))
                return sorted(w for row in txn.fetchall() for w in row[0].split())
            txn.execute("SELECT term FROM search_terms WHERE message_id = ?",
                        (message_id,))
            return sorted(row[0] for row in txn.fetchall())

        return await self.database.run_search("terms", terms_txn)

    async def test_edit_while_the_queue_is_read(self):
        """
        An edit on another connection while a catch-up has read the queue
        waits for it (MySQL: the rows it read are locked; SQLite: one
        writer at a time), instead of having its re-queue deleted with
        them: the new text is indexed, the old one forgotten.
        """
        from chatd.stores.edits import edit_txn
        from chatd.stores.search import catch_up_txn

        await self._setup()
        await self.search.catch_up()
        message_id = self.ids["ab1"]
        self.assertTrue(await EditStore(self.database).edit(
            message_id, "first draft", 2000))
        await interleaved(
            self, self.database.run_search, catch_up_txn, "FROM search_pending p",
            on_another_connection(self.database, edit_txn, message_id, "second draft", 3000))
        self.assertEqual(await self._find(self.alice, "second"), ["ab1"])
        self.assertEqual(await self._find(self.alice, "first"), [])
        self.assertEqual(await self._terms_of(message_id), ["draft", "second"])

    async def test_recall_while_new_messages_are_read(self):
        """
        A recall that commits while a catch-up is indexing the message by
        id (after reading its text, before committing) leaves none of its
        words in the index once the next catch-up has run.
        """
        from chatd.stores.edits import recall_txn
        from chatd.stores.search import catch_up_txn

        await self._setup()
        message_id = self.ids["bc1"]
        await interleaved(
            self, self.database.run_search, catch_up_txn, "FROM messages WHERE id >",
            on_another_connection(self.database, recall_txn, message_id, 5000))
        await self.search.catch_up()
        self.assertEqual(await self._terms_of(message_id), [])
        self.assertEqual(await self._find(self.carol, "secret"), [])

    async def test_deleted_messages_leave_no_terms(self):
        """
        Deleting messages (a deleted group) queues them, and the next
        catch-up drops their terms (MySQL drops them at once as well, so
        that terms a concurrent catch-up wrote are dropped too).
        """
        await self._setup()
        await self.search.catch_up()
        conversation = f"g:{self.group.id}"

        def delete_txn(txn):
            txn.execute("DELETE FROM messages WHERE conversation = ?", (conversation,))

        await self.database.run("delete", delete_txn)
        if ENGINE == "mysql":
            for key in ("g1", "g2"):
                self.assertEqual(await self._terms_of(self.ids[key]), [])
        self.assertEqual(await self.search.catch_up(), 2)
        self.assertEqual(await self.search.catch_up(), 0)
        for key in ("g1", "g2"):
            self.assertEqual(await self._terms_of(self.ids[key]), [])

    async def test_queue_emptied_once_indexed(self):
        """
        Edits queue their messages; once a catch-up has indexed them,
        trimming leaves the queue empty (SQLite: the catch-up only reads
        it; MySQL: it deletes as it goes), and a later edit is still
        indexed.
        """
        await self._setup()
        await self.search.catch_up()
        edits = EditStore(self.database)
        self.assertTrue(await edits.edit(self.ids["ab1"], "first draft", 2000))
        self.assertTrue(await edits.edit(self.ids["ab1"], "second draft", 2001))
        # SQLite queues each edit; MySQL's queue holds a message once.
        self.assertEqual(await self.search.catch_up(), 2 if ENGINE == "sqlite" else 1)

        async def queued():
            rows = await self.database.run("queued", lambda txn: txn.execute(
                "SELECT COUNT(*) FROM search_pending").fetchone())
            return int(rows[0])

        await self.search.trim_queue()
        self.assertEqual(await queued(), 0)
        self.assertTrue(await edits.edit(self.ids["ab1"], "third draft", 2002))
        self.assertEqual(await queued(), 1)
        # A search indexes it first, and trims what it indexed.
        self.assertEqual(await self._find(self.alice, "third"), ["ab1"])
        self.assertEqual(await self._terms_of(self.ids["ab1"]), ["draft", "third"])
        self.assertEqual(await queued(), 0)

    async def test_search_query_holds_no_indexer_lock(self):
        """
        On MySQL a search's catch-up is a transaction of its own: while
        the search query runs, another catch-up is not kept waiting.
        """
        if ENGINE == "sqlite":
            raise SkipTest("SQLite runs one write transaction at a time")
        from chatd.stores.search import catch_up_txn, search_txn

        await self._setup()
        run_search = self.database.run_search
        finished = []

        async def search_interleaved(description, function, *args):
            if function is not search_txn:
                return await run_search(description, function, *args)
            await self.messages.insert_batch(
                [NewMessage(self.alice.id, None, ONE_TO_ONE, self.bob.id, 1, "later")],
                3000)
            _, finished_meanwhile = await interleaved(
                self, run_search, lambda txn: function(txn, *args), " DESC LIMIT",
                on_another_connection(self.database, catch_up_txn))
            finished.append(finished_meanwhile)

        self.patch(self.database, "run_search", search_interleaved)
        await self.search.search(self.alice.id, [self.group.id], parse_query("lunch"))
        self.assertEqual(finished, [True])


class SqliteSearchFileTests(TestCase):
    """
    SQLite's search index lives in a file of its own, built from the chat
    database beside it.
    """

    def setUp(self):
        if ENGINE != "sqlite":
            raise SkipTest("MySQL keeps its index in the database")
        self.path = os.path.join(os.path.abspath(self.mktemp()), "chatd.sqlite3")

    async def _say(self, database, text):
        [stored] = await MessageStore(database).insert_batch(
            [NewMessage(1, None, ONE_TO_ONE, 2, 1, text)], 1000)
        return stored.id

    async def _find(self, database, text):
        found = await SearchStore(database).search(1, [], parse_query(text))
        return [m.id for m in found]

    def _copy(self, source, target):
        with sqlite3.connect(source) as a, sqlite3.connect(target) as b:
            a.backup(b)

    def _remove(self, path):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)

    async def _restart_with_copy(self, database, path, copy):
        """
        Stop C{database}, put C{copy} in place of the file at C{path},
        and start again.
        """
        await database.close()
        self._remove(path)
        self._copy(copy, path)
        return await self._open_empty()

    async def _two_users(self, database):
        await create_user(database, "alice")
        await create_user(database, "bob")

    async def test_commits_are_durable(self):
        """
        The search connection commits with C{synchronous=FULL}: the queue
        entries it takes are deleted from the chat database afterwards,
        so after a power cut the index must still know it took them.
        """
        database = await self._open_empty()
        modes = [await database.run_background("mode", lambda txn: txn.execute(
                     "PRAGMA main.synchronous").fetchone()[0]),
                 await database.run_search("mode", lambda txn: txn.execute(
                     "PRAGMA main.synchronous").fetchone()[0])]
        self.assertEqual(modes, [2, 2])

    async def _open_empty(self):
        database = database_for(SqliteEngine(self.path), reactor)
        self.addCleanup(database.close)
        await prepare_database(database)
        await database.ping()
        return database

    async def test_index_of_a_recreated_database_rebuilt(self):
        """
        A search file left beside a chat database made anew (deleted, or
        another one put in its place) is emptied and built again from the
        new messages: none of the old words find them.
        """
        database = await self._open_empty()
        await self._two_users(database)
        for text in ("old words", "older words", "oldest words"):
            await self._say(database, text)
        self.assertTrue(await EditStore(database).edit(1, "old edit", 2000))
        self.assertEqual(await self._find(database, "edit"), [1])
        await database.close()
        self._remove(self.path)
        database = await self._open_empty()
        await self._two_users(database)
        fresh = await self._say(database, "fresh start")
        self.assertEqual(fresh, 1)
        self.assertEqual(await self._find(database, "fresh"), [fresh])
        self.assertEqual(await self._find(database, "edit"), [])
        self.assertEqual(await self._find(database, "words"), [])

    async def test_index_ahead_of_a_restored_backup_rebuilt(self):
        """
        A chat database restored from a backup older than the index (the
        index has taken messages and edits the backup does not have) gets
        its index built again: an edit made after the restore is found.
        """
        database = await self._open_empty()
        await self._two_users(database)
        first = await self._say(database, "lunch today")
        self.assertEqual(await self._find(database, "lunch"), [first])
        backup = self.path + ".backup"
        self._copy(self.path, backup)
        later = await self._say(database, "later words")
        self.assertTrue(await EditStore(database).edit(first, "brunch today", 2000))
        self.assertEqual(await self._find(database, "brunch"), [first])
        database = await self._restart_with_copy(database, self.path, backup)
        self.assertEqual(await self._find(database, "lunch"), [first])
        self.assertEqual(await self._find(database, "brunch"), [])
        replaced = await self._say(database, "replacement text")
        self.assertEqual(replaced, later)
        self.assertEqual(await self._find(database, "replacement"), [replaced])
        self.assertEqual(await self._find(database, "later"), [])

    async def test_edit_survives_an_old_search_file(self):
        """
        A search file put back from a copy made before an edit whose queue
        entry has since been trimmed is rebuilt: the edit is indexed, not
        left with the old words.
        """
        database = await self._open_empty()
        await self._two_users(database)
        message = await self._say(database, "lunch today")
        self.assertEqual(await self._find(database, "lunch"), [message])
        engine = database.engine
        before = self.path + ".search-before"
        self._copy(engine.search_path, before)
        self.assertTrue(await EditStore(database).edit(message, "dinner tonight", 2000))
        self.assertEqual(await self._find(database, "dinner"), [message])
        await self._say(database, "a durable commit")
        database = await self._restart_with_copy(database, engine.search_path, before)
        self.assertEqual(await self._find(database, "dinner"), [message])
        self.assertEqual(await self._find(database, "lunch"), [])
