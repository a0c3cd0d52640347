"""
Tests for L{chatd.stores.messages} and the group-commit L{BatchWriter}, on
the test database (SQLite, or MariaDB with CHATD_TEST_MYSQL).
"""

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from chatd.batching import BatchWriter, StorageUnavailable
from chatd.stores.messages import (
    GROUP,
    ONE_TO_ONE,
    MessageStore,
    NewMessage,
    client_ids_query,
    conversation_key,
)
from tests.helpers import (
    create_group,
    create_user,
    interleaved,
    migrated_database,
    on_another_connection,
)


class ConversationKeyTests(TestCase):
    def test_keys(self):
        self.assertEqual(conversation_key(ONE_TO_ONE, 9, 3), "d:3:9")
        self.assertEqual(conversation_key(ONE_TO_ONE, 3, 9), "d:3:9")
        self.assertEqual(conversation_key(GROUP, 3, 9), "g:9")


class MessageStoreTests(TestCase):
    async def _setup(self):
        self.database = await migrated_database(self)
        self.store = MessageStore(self.database)
        self.alice = await create_user(self.database, "alice")
        self.bob = await create_user(self.database, "bob", avatar="b.png")
        self.carol = await create_user(self.database, "carol")

    def _text(self, sender, recipient, content, client_id=None,
              message_type=ONE_TO_ONE):
        return NewMessage(sender.id, client_id, message_type, recipient.id, 1,
                          content)

    async def _history(self):
        """
        The stored messages between alice and bob, oldest first.
        """
        page = await self.store.conversation_page(
            conversation_key(ONE_TO_ONE, self.alice.id, self.bob.id), limit=100)
        return list(reversed(page))

    async def test_insert_assigns_ids_in_order(self):
        await self._setup()
        stored = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "one", "c1"),
             self._text(self.bob, self.alice, "two", "c1")], 1000)
        self.assertEqual([s.created_at for s in stored], [1000, 1000])
        self.assertLess(stored[0].id, stored[1].id)
        self.assertEqual([s.duplicate for s in stored], [False, False])

    async def test_duplicate_client_id(self):
        """
        A client message id already stored by the same sender, earlier or
        earlier in the batch, is not stored again; its first id comes back.
        """
        await self._setup()
        [first] = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "one", "c1")], 1000)
        again = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "one", "c1"),
             self._text(self.alice, self.bob, "new", "c2"),
             self._text(self.alice, self.bob, "new", "c2")], 2000)
        self.assertEqual(again[0].id, first.id)
        self.assertEqual(again[0].created_at, 1000)
        self.assertTrue(again[0].duplicate)
        self.assertEqual(again[2].id, again[1].id)
        self.assertEqual([again[1].duplicate, again[2].duplicate],
                         [False, True])
        self.assertEqual(
            await self.store.count_by_client_id(self.alice.id, "c2"), 1)

    async def test_since(self):
        """
        C{since} gives a user's one-to-one messages and those of its groups
        after an id, in order, with sender and recipient names.
        """
        await self._setup()
        group = await create_group(self.database, self.bob, "g",
                                   [self.alice, self.carol])
        other = await create_group(self.database, self.carol, "other")
        stored = await self.store.insert_batch([
            self._text(self.alice, self.bob, "a->b"),
            self._text(self.bob, self.carol, "b->c"),
            NewMessage(self.bob.id, None, GROUP, group.id, 1, "b->g"),
            NewMessage(self.carol.id, None, GROUP, other.id, 1, "c->other"),
            self._text(self.bob, self.alice, "b->a"),
        ], 5)
        found = await self.store.since(self.alice.id, [group.id], 0, 10)
        self.assertEqual([m.content for m in found], ["a->b", "b->g", "b->a"])
        direct, in_group, reply = found
        self.assertEqual((direct.sender_uuid, direct.recipient_uuid,
                          direct.recipient_username),
                         (self.alice.uuid, self.bob.uuid, "bob"))
        self.assertEqual((in_group.sender_uuid, in_group.sender_avatar,
                          in_group.recipient_uuid, in_group.message_type),
                         (self.bob.uuid, "b.png", group.uuid, GROUP))
        later = await self.store.since(self.alice.id, [group.id],
                                       stored[2].id, 10)
        self.assertEqual([m.content for m in later], ["b->a"])
        page = await self.store.since(self.alice.id, [group.id], 0, 2)
        self.assertEqual([m.content for m in page], ["a->b", "b->g"])
        self.assertEqual(
            [m.content for m in await self.store.since(self.alice.id, [], 0, 10)],
            ["a->b", "b->a"])

    async def test_since_across_many_conversations(self):
        """
        Sync reads each conversation on its own, limited, in statements of
        several conversations: the newest of many conversations come out
        in id order, cut at the limit.
        """
        from chatd.stores import messages

        self.patch(messages, "_SOURCES", 2)
        await self._setup()
        dave = await create_user(self.database, "dave")
        group = await create_group(self.database, self.bob, "g", [self.alice])
        batch = []
        for n in range(4):
            batch += [self._text(self.alice, self.bob, f"b{n}"),
                      self._text(self.carol, self.alice, f"c{n}"),
                      self._text(dave, self.alice, f"d{n}"),
                      NewMessage(self.bob.id, None, GROUP, group.id, 1, f"g{n}"),
                      self._text(self.bob, self.carol, f"x{n}")]
        stored = await self.store.insert_batch(batch, 5)
        found = await self.store.since(self.alice.id, [group.id], 0, 100)
        expected = [m.content for m in batch if not m.content.startswith("x")]
        self.assertEqual([m.content for m in found], expected)
        after = stored[6].id
        found = await self.store.since(self.alice.id, [group.id], after, 5)
        self.assertEqual([m.content for m in found], expected[6:11])

    async def test_since_later_statements_look_below_the_limit(self):
        """
        Once the conversations read so far have given C{limit} ids, the
        next statement reads only below the highest of them: rows above it
        could not be among the first C{limit}.
        """
        from chatd.stores import messages

        self.patch(messages, "_SOURCES", 1)
        await self._setup()
        # alice's conversation with bob is read first (its key sorts first).
        await self.store.insert_batch([self._text(self.carol, self.alice, "c0")], 5)
        bobs = await self.store.insert_batch(
            [self._text(self.bob, self.alice, f"b{n}") for n in range(6)], 6)
        await self.store.insert_batch(
            [self._text(self.carol, self.alice, f"late{n}") for n in range(3)], 7)

        def since_recorded_txn(txn):
            statements = []
            execute, fetchall = txn.execute, txn.fetchall

            def recording_execute(sql, args=()):
                statements.append([sql, list(args), None])
                return execute(sql, args)

            def recording_fetchall():
                rows = fetchall()
                statements[-1][2] = len(rows)
                return rows

            txn.execute, txn.fetchall = recording_execute, recording_fetchall
            return messages.since_txn(txn, self.alice.id, [], 0, 3), statements

        found, statements = await self.database.run("since", since_recorded_txn)
        self.assertEqual([m.content for m in found], ["c0", "b0", "b1"])
        _, (bob_sql, _, bob_rows), (carol_sql, carol_args, carol_rows), _ = statements
        self.assertNotIn("id < ?", bob_sql)
        self.assertEqual(bob_rows, 3)
        # Bob's third message bounds carol's: of hers, only the one below
        # it is read (three without the bound).
        self.assertIn("id < ?", carol_sql)
        self.assertEqual(carol_args[2], bobs[2].id)
        self.assertEqual(carol_rows, 1)

    async def test_since_reads_one_snapshot(self):
        """
        A batch that commits on another connection while a sync read is
        under way (after it listed the user's conversations) is wholly in
        or wholly out of its answer, so the cursor never passes over one
        of its messages: here a new conversation's message, whose id is
        below that of a message in a known conversation. (MySQL's READ
        COMMITTED gave each statement a snapshot of its own.)
        """
        from chatd.stores import messages

        await self._setup()
        await self.store.insert_batch([self._text(self.bob, self.alice, "before")], 5)
        batch = [self._text(self.carol, self.alice, "new conversation"),
                 self._text(self.bob, self.alice, "known conversation")]
        found, _ = await interleaved(
            self, self.database.run_consistent,
            lambda txn: messages.since_txn(txn, self.alice.id, [], 0, 10),
            "FROM user_conversations",
            on_another_connection(self.database, messages.insert_batch_txn, batch, 6,
                                  messages.participants(batch)))
        contents = [m.content for m in found]
        cursor = found[-1].id
        contents += [m.content for m in await self.store.since(self.alice.id, [], cursor, 10)]
        self.assertEqual(contents, ["before", "new conversation", "known conversation"])

    async def test_resend_to_another_conversation(self):
        """
        A client id reused towards someone else is a resend (not stored),
        yet that conversation's later messages still reach its recipient's
        sync.
        """
        await self._setup()
        await self.store.insert_batch([self._text(self.alice, self.bob, "hi bob", "x")], 5)
        [again] = await self.store.insert_batch(
            [self._text(self.alice, self.carol, "hi bob", "x")], 6)
        self.assertTrue(again.duplicate)
        await self.store.insert_batch([self._text(self.alice, self.carol, "hello carol", "y")], 7)
        found = await self.store.since(self.carol.id, [], 0, 10)
        self.assertEqual([m.content for m in found], ["hello carol"])

    async def test_known_participants_bounded(self):
        """
        Past its bound the store forgets the pairs it knows and writes
        them again (harmlessly) when they come back.
        """
        await self._setup()
        store = MessageStore(self.database, known_participants_max=2)
        statements = []
        original = self.database.run_writes

        def recorded(description, function, messages, created_at, pairs, *rest):
            statements.append(len(pairs))
            return original(description, function, messages, created_at, pairs, *rest)

        self.patch(self.database, "run_writes", recorded)
        await store.insert_batch([self._text(self.alice, self.bob, "1", "a")], 5)
        await store.insert_batch([self._text(self.alice, self.bob, "2", "b")], 6)
        await store.insert_batch([self._text(self.alice, self.carol, "3", "c")], 7)
        await store.insert_batch([self._text(self.alice, self.bob, "4", "d")], 8)
        await store.insert_batch([self._text(self.alice, self.bob, "5", "e")], 9)
        # alice-bob (2 pairs) known; alice-carol makes 4, over the bound of
        # 2, so the next batch's commit clears them and the one after that
        # writes alice-bob again.
        self.assertEqual(statements, [2, 0, 2, 0, 2])
        self.assertEqual([m.content for m in await self._history()], ["1", "2", "4", "5"])

    async def test_known_participants_not_written_again(self):
        """
        Once a conversation's participants are stored, later batches in it
        leave C{user_conversations} alone; a store that does not know them
        (another process) writes them again, without conflict.
        """
        await self._setup()

        async def rows():
            found = await self.database.run("rows", lambda txn: txn.execute(
                "SELECT user_id, conversation FROM user_conversations").fetchall())
            return sorted((int(u), c) for u, c in found)

        await self.store.insert_batch([self._text(self.alice, self.bob, "1")], 5)
        key = conversation_key(ONE_TO_ONE, self.alice.id, self.bob.id)
        self.assertEqual(await rows(), sorted([(self.alice.id, key), (self.bob.id, key)]))
        await self.database.run("clear", lambda txn: txn.execute(
            "DELETE FROM user_conversations"))
        await self.store.insert_batch([self._text(self.bob, self.alice, "2")], 6)
        self.assertEqual(await rows(), [])
        await MessageStore(self.database).insert_batch(
            [self._text(self.bob, self.alice, "3"), self._text(self.alice, self.bob, "4")], 7)
        self.assertEqual(await rows(), sorted([(self.alice.id, key), (self.bob.id, key)]))
        await MessageStore(self.database).insert_batch(
            [self._text(self.alice, self.bob, "5")], 8)
        self.assertEqual(len(await rows()), 2)

    async def test_conversation_page(self):
        await self._setup()
        await self.store.insert_batch(
            [self._text(self.alice, self.bob, str(n)) for n in range(5)]
            + [self._text(self.alice, self.carol, "other")], 5)
        key = conversation_key(ONE_TO_ONE, self.alice.id, self.bob.id)
        newest = await self.store.conversation_page(key, limit=2)
        self.assertEqual([m.content for m in newest], ["4", "3"])
        older = await self.store.conversation_page(key, newest[-1].id, 10)
        self.assertEqual([m.content for m in older], ["2", "1", "0"])


    async def test_ids_name_their_messages(self):
        """
        Each message's returned id is the id of its own row, resends in and
        before the batch included, over several lookups' worth of client
        ids and insert statements.
        """
        from chatd.stores import messages

        self.patch(messages, "_CHUNK", 2)
        await self._setup()
        [first] = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "old", "c0")], 5)
        batch = [self._text(self.alice, self.bob, f"m{n}", f"c{n % 5}")
                 for n in range(10)]
        stored = await self.store.insert_batch(batch, 6)
        content_by_id = {m.id: m.content for m in await self._history()}
        self.assertEqual(stored[0].id, first.id)
        expected = ["old", "m1", "m2", "m3", "m4", "old", "m1", "m2", "m3", "m4"]
        self.assertEqual([content_by_id[s.id] for s in stored], expected)
        self.assertEqual([s.duplicate for s in stored], [True] + [False] * 4 + [True] * 5)
        # A copy carries the time its message was stored at.
        self.assertEqual([s.created_at for s in stored], [5, 6, 6, 6, 6, 5, 6, 6, 6, 6])

    async def test_resend_amid_new_messages(self):
        """
        A batch whose insert meets a message stored earlier stores the new
        ones once each, before and after it, and nothing twice.
        """
        await self._setup()
        [old] = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "old", "c0")], 5)
        batch = [self._text(self.alice, self.bob, "new1", "c1"),
                 self._text(self.bob, self.alice, "new2", "c0"),
                 self._text(self.alice, self.bob, "old again", "c0"),
                 self._text(self.alice, self.bob, "new3", "c3")]
        stored = await self.store.insert_batch(batch, 6)
        self.assertEqual([s.duplicate for s in stored], [False, False, True, False])
        self.assertEqual(stored[2], old._replace(duplicate=True))
        self.assertEqual([(m.id, m.content) for m in await self._history()],
                         [(old.id, "old"), (stored[0].id, "new1"),
                          (stored[1].id, "new2"), (stored[3].id, "new3")])

    async def test_retry_after_a_lost_reply(self):
        """
        A batch run again (a retry) after an attempt that stored some of
        it but whose reply was lost gets the same ids for those, as new
        messages to deliver; outside a retry, or at another time, a stored
        client id is a resend.
        """
        from chatd.stores.messages import insert_batch_txn

        await self._setup()
        batch = [self._text(self.alice, self.bob, "1", "a"),
                 self._text(self.bob, self.alice, "2", "b"),
                 self._text(self.alice, self.bob, "3")]
        first = await self.store.insert_batch(batch[:2], 5)

        def retried_txn(txn, *args):
            txn.retry = True
            return insert_batch_txn(txn, *args)

        again = await self.database.run_writes("retry", retried_txn, batch, 5, set())
        self.assertEqual(again[:2], first)
        self.assertEqual([s.duplicate for s in again], [False, False, False])
        same_time = await self.store.insert_batch(batch[:1], 5)
        later = await self.store.insert_batch(batch[:1], 6)
        self.assertEqual(same_time, later)
        self.assertEqual(later, [first[0]._replace(duplicate=True)])
        # A resend of a message an earlier batch stored in the same
        # millisecond (its id not above the floor) is a resend, retry or not.
        fresh = self._text(self.bob, self.alice, "4", "d")
        retried = await self.database.run_writes(
            "retry", retried_txn, [batch[0], fresh], 5, set(), first[1].id)
        self.assertEqual([s.duplicate for s in retried], [True, False])
        self.assertEqual(sorted(m.content for m in await self._history()),
                         ["1", "2", "3", "4"])

    async def test_floor_kept_by_the_store(self):
        """
        The store keeps the highest id it stored, so a retry of a later
        batch at the same time takes a resend of an earlier message for a
        resend, not for its own.
        """
        from chatd.storage.database import Database

        await self._setup()
        [first] = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "1", "a")], 5)

        def as_a_retry(cursor, durable, consistent, retry, function, args, kwargs):
            return Database._transaction(self.database, cursor, durable, consistent,
                                         True, function, args, kwargs)

        self.patch(self.database, "_transaction", as_a_retry)
        stored = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "1 again", "a"),
             self._text(self.bob, self.alice, "2", "b")], 5)
        self.assertEqual(stored[0], first._replace(duplicate=True))
        self.assertFalse(stored[1].duplicate)
        self.assertEqual([m.content for m in await self._history()], ["1", "2"])

    def test_statement_slices(self):
        """
        MySQL INSERTs are cut at C{_CHUNK} rows and at C{STATEMENT_BYTES},
        by the same count that decides whether a batch fits one.
        """
        from chatd.stores import messages

        self.patch(messages, "_CHUNK", 3)
        self.patch(messages, "STATEMENT_BYTES", 6000)
        short = [NewMessage(1, None, ONE_TO_ONE, 2, 1, "x")] * 7
        self.assertEqual(messages._statement_slices(short), [(0, 3), (3, 6), (6, 7)])
        long = [NewMessage(1, None, ONE_TO_ONE, 2, 1, "x" * 200)] * 3
        self.assertEqual(messages._statement_slices(long), [(0, 2), (2, 3)])
        self.assertTrue(messages._fits_one_statement(long[:2]))
        self.assertFalse(messages._fits_one_statement(long))
        self.assertFalse(messages._fits_one_statement(short[:4]))
        self.assertEqual(messages._statement_slices([]), [])

    async def test_resend_in_a_batch_of_several_statements(self):
        """
        A batch too large for one statement, with a resend and id-less
        messages, stores each new message once and reports only the
        resend as one.
        """
        from chatd.stores import messages

        await self._setup()
        [old] = await self.store.insert_batch(
            [self._text(self.alice, self.bob, "old", "c0")], 5)
        self.patch(messages, "STATEMENT_BYTES", 1000)
        batch = [self._text(self.alice, self.bob, "x" * 100),
                 self._text(self.alice, self.bob, "y" * 100, "c1"),
                 self._text(self.bob, self.alice, "z" * 100),
                 self._text(self.alice, self.bob, "old", "c0")]
        stored = await self.store.insert_batch(batch, 6)
        self.assertEqual([s.duplicate for s in stored], [False, False, False, True])
        self.assertEqual(stored[3], old._replace(duplicate=True))
        self.assertEqual([(m.id, m.content[:1]) for m in await self._history()],
                         [(old.id, "o"), (stored[0].id, "x"), (stored[1].id, "y"),
                          (stored[2].id, "z")])

    async def test_which_batches_commit_by_themselves(self):
        """
        Only a batch whose messages all have client ids, and that fits one
        statement, goes to the writer connection (where MySQL commits each
        statement by itself); any other is one transaction.
        """
        from chatd.stores import messages

        await self._setup()
        calls = []
        for name in ("run", "run_writes"):
            original = getattr(self.database, name)

            def recorded(description, *args, _name=name, _original=original):
                if description == "insert_messages":
                    calls.append(_name)
                return _original(description, *args)

            self.patch(self.database, name, recorded)
        await self.store.insert_batch([self._text(self.alice, self.bob, "a", "1"),
                                       self._text(self.bob, self.alice, "b", "2")], 5)
        await self.store.insert_batch([self._text(self.alice, self.bob, "c", "3"),
                                       self._text(self.bob, self.alice, "no id")], 6)
        self.patch(messages, "STATEMENT_BYTES", 1000)
        await self.store.insert_batch([self._text(self.alice, self.bob, "x" * 200, "4"),
                                       self._text(self.bob, self.alice, "y" * 200, "5")], 7)
        self.assertEqual(calls, ["run_writes", "run", "run"])
        self.assertEqual(len(await self._history()), 6)

    async def test_batch_statements(self):
        """
        A batch of messages in known conversations, none a resend, is one
        statement on MySQL's autocommit writer connection: no resend lookup
        and no COMMIT round trip. SQLite looks the client ids up first, in
        the same transaction.
        """
        await self._setup()
        await self.store.insert_batch([self._text(self.alice, self.bob, "1", "a")], 5)
        batch = [self._text(self.alice, self.bob, "2", "b"),
                 self._text(self.bob, self.alice, "3", "c")]
        if self.database.engine.name == "sqlite":
            statements = []

            def trace_txn(txn, callback):
                txn._cursor.connection.set_trace_callback(callback)

            await self.database.run("trace", trace_txn, statements.append)
            await self.store.insert_batch(batch, 6)
            await self.database.run("trace", trace_txn, None)
            # From the end of the trace's own transaction to the start of
            # the next; one INSERT per row, traced again for each trigger.
            kinds = [s.split(" (", 1)[0] for s in statements]
            self.assertEqual([k for n, k in enumerate(kinds) if not n or k != kinds[n - 1]],
                             ["COMMIT", "BEGIN IMMEDIATE",
                              "SELECT sender_id, client_msg_id, id, created_at FROM messages WHERE",
                              "INSERT INTO messages", "SELECT last_insert_rowid()",
                              "COMMIT", "BEGIN IMMEDIATE"])
            return

        def status_txn(txn):
            txn.execute("SHOW SESSION STATUS WHERE Variable_name IN"
                        " ('Com_commit', 'Com_select', 'Questions')")
            return {name: int(value) for name, value in txn.fetchall()}

        before = await self.database.run_writes("status", status_txn)
        await self.store.insert_batch(batch, 6)
        after = await self.database.run_writes("status", status_txn)
        changes = {name: after[name] - before[name] for name in before}
        # Questions: the messages' INSERT and the first SHOW STATUS.
        self.assertEqual(changes, {"Com_commit": 0, "Com_select": 0, "Questions": 2})

    async def test_attachment_file_ids(self):
        """
        A message whose url names a stored file points to its record; any
        other url points to none.
        """
        await self._check_attachment_file_ids()

    async def test_attachment_file_ids_in_several_lookups(self):
        """
        The same when the batch's urls take more than one lookup.
        """
        from chatd.stores import messages

        self.patch(messages, "_SOURCES", 1)
        await self._check_attachment_file_ids()

    async def _check_attachment_file_ids(self):
        from chatd.stores.files import FileRecordStore

        await self._setup()
        record = await FileRecordStore(self.database).add(
            "abc.png", self.alice.id, "image/png", 3, "00", 1)
        stored = await self.store.insert_batch([
            NewMessage(self.alice.id, None, ONE_TO_ONE, self.bob.id, 3, "", "abc.png"),
            NewMessage(self.alice.id, None, ONE_TO_ONE, self.bob.id, 3, "", "gone.png"),
            self._text(self.alice, self.bob, "text"),
            NewMessage(self.alice.id, None, ONE_TO_ONE, self.bob.id, 3, "", "ABC.png")], 5)
        rows = await self.database.run("file ids", lambda txn: txn.execute(
            "SELECT id, file_id FROM messages ORDER BY id").fetchall())
        # As the engine's comparison of names has it (MySQL ignores case).
        other_case = None if self.database.engine.name == "sqlite" else record.id
        self.assertEqual([(int(i), None if f is None else int(f)) for i, f in rows],
                         [(stored[0].id, record.id), (stored[1].id, None),
                          (stored[2].id, None), (stored[3].id, other_case)])

    async def test_page_reads_only_its_rows(self):
        """
        A history page reads its own rows from the conversation's index, not
        the whole conversation (MariaDB sorted every row of it when the page
        was cut in the same statement as the joins).
        """
        from chatd.stores.messages import conversation_after_txn, conversation_page_txn

        await self._setup()
        await self.store.insert_batch(
            [self._text(self.alice, self.bob, str(n)) for n in range(300)], 5)
        key = conversation_key(ONE_TO_ONE, self.alice.id, self.bob.id)

        def reads_txn(txn, page, *args):
            if txn.engine.name == "sqlite":
                # SQLite counts no rows read: count its virtual machine's
                # steps, in hundreds.
                steps = []
                connection = txn._cursor.connection
                connection.set_progress_handler(lambda: steps.append(1), 100)
                try:
                    rows = page(txn, key, *args)
                finally:
                    connection.set_progress_handler(None, 0)
                return rows, len(steps)
            # Statistics as a table of that size has (InnoDB updates them
            # in the background, so a fresh test table may have none yet).
            txn.execute("ANALYZE TABLE messages")
            txn.fetchall()
            txn.execute("FLUSH STATUS")
            rows = page(txn, key, *args)
            txn.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
            return rows, sum(int(value) for _, value in txn.fetchall())

        for page, args, expected in [
                (conversation_page_txn, (None, 5), ["299", "298", "297", "296", "295"]),
                (conversation_page_txn, (None, 3), ["299", "298", "297"]),
                (conversation_after_txn, (0, 2), ["0", "1"])]:
            rows, reads = await self.database.run("page", reads_txn, page, *args)
            self.assertEqual([m.content for m in rows], expected)
            self.assertLess(reads, 100, page.__name__)
            if self.database.engine.name == "sqlite":
                # Reading all 300 rows of the conversation took 24.
                self.assertLess(reads, 10, page.__name__)

    async def test_client_id_lookup_uses_the_index(self):
        """
        The resend check of a batch looks each (sender, client id) up in
        the unique index: its cost does not grow with the table.
        """
        await self._setup()
        await self.store.insert_batch(
            [self._text(self.alice, self.bob, str(n), f"c{n}") for n in range(50)],
            5)
        sql, args = client_ids_query([(self.alice.id, "c1"), (self.bob.id, "c2")])

        def plan_txn(txn):
            if txn.engine.name == "sqlite":
                txn.execute("EXPLAIN QUERY PLAN " + sql, args)
                return [row[-1] for row in txn.fetchall()]
            txn.execute("EXPLAIN " + sql, args)
            columns = [d[0] for d in txn._cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in txn.fetchall()]

        plan = await self.database.run("plan", plan_txn)
        if self.database.engine.name == "sqlite":
            self.assertFalse([step for step in plan if step.startswith("SCAN messages")],
                             plan)
            self.assertTrue([step for step in plan if "USING INDEX" in step], plan)
        else:
            [step] = plan
            self.assertNotEqual(step["type"], "ALL", plan)
            self.assertTrue(step["key"], plan)


class FakeStore:
    """
    A message store that records its batches and can be made to fail; the
    database itself is exercised by L{BatchWriterDatabaseTests}.
    """

    def __init__(self):
        self.batches = []
        self.pending = []
        self.next_id = 1

    def insert_batch(self, messages, created_at):
        from twisted.internet.defer import Deferred

        from chatd.stores.messages import Stored

        self.batches.append(list(messages))
        d = Deferred()
        results = []
        for _ in messages:
            results.append(Stored(self.next_id, created_at))
            self.next_id += 1
        self.pending.append((d, results))
        return d

    def commit(self):
        d, results = self.pending.pop(0)
        d.callback(results)

    def fail(self):
        d, _ = self.pending.pop(0)
        d.errback(RuntimeError("database down"))


class BatchWriterTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.store = FakeStore()
        self.writer = BatchWriter(self.store, self.clock, batch_size=3)

    def _message(self, n):
        return NewMessage(1, f"c{n}", ONE_TO_ONE, 2, 1, str(n))

    def test_arriving_together_share_a_commit(self):
        results = [self.writer.submit(self._message(n)) for n in range(2)]
        self.assertEqual(self.store.batches, [])
        self.clock.advance(0)
        self.assertEqual(len(self.store.batches), 1)
        self.assertEqual(len(self.store.batches[0]), 2)
        self.store.commit()
        self.assertEqual([self.successResultOf(d).id for d in results], [1, 2])

    def test_during_a_commit_waits_for_the_next(self):
        """
        Messages submitted while a transaction is in flight go together
        into the next one, at most C{batch_size} each.
        """
        first = self.writer.submit(self._message(0))
        self.clock.advance(0)
        later = [self.writer.submit(self._message(n)) for n in range(1, 6)]
        self.clock.advance(0)
        self.assertEqual(len(self.store.batches), 1)
        self.assertNoResult(later[0])
        self.store.commit()
        self.successResultOf(first)
        self.clock.advance(0)
        self.assertEqual([len(b) for b in self.store.batches], [1, 3])
        self.store.commit()
        self.clock.advance(0)
        self.assertEqual([len(b) for b in self.store.batches], [1, 3, 2])
        self.store.commit()
        self.assertEqual([self.successResultOf(d).id for d in later],
                         [2, 3, 4, 5, 6])
        self.assertEqual(self.writer.commits, 3)

    def test_next_batch_starts_before_results_are_handed_out(self):
        """
        When a transaction commits, the messages queued meanwhile are sent
        to the store before the committed ones' results are handed out, so
        the database works on them while the results are delivered; the
        results still arrive in submission order.
        """
        first = self.writer.submit(self._message(0))
        self.clock.advance(0)
        second = self.writer.submit(self._message(1))
        batches_when_first_fired = []
        first.addCallback(
            lambda stored: batches_when_first_fired.append(len(self.store.batches)))
        self.store.commit()
        self.assertEqual(batches_when_first_fired, [2])
        self.assertNoResult(second)
        self.store.commit()
        self.assertEqual(self.successResultOf(second).id, 2)

    def test_next_batch_after_a_failure(self):
        """
        A failed transaction also starts the next one at once.
        """
        bad = self.writer.submit(self._message(0))
        self.clock.advance(0)
        good = self.writer.submit(self._message(1))
        self.store.fail()
        self.failureResultOf(bad, StorageUnavailable)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(len(self.store.batches), 2)
        self.store.commit()
        self.successResultOf(good)

    def test_store_answering_at_once(self):
        """
        A store whose answers come at once (a database already closed
        fails at once) still gets its batches one after another, results
        handed out in submission order, however many batches are queued:
        the next batches do not pile up on the stack.
        """
        from twisted.internet.defer import fail as failed
        from twisted.internet.defer import succeed as succeeded

        from chatd.stores.messages import Stored

        class AtOnce:
            def __init__(self, failing):
                self.failing = failing
                self.next_id = 1

            def insert_batch(self, messages, created_at):
                if self.failing:
                    return failed(RuntimeError("database closed"))
                stored = [Stored(self.next_id + n, created_at) for n in range(len(messages))]
                self.next_id += len(messages)
                return succeeded(stored)

        writer = BatchWriter(AtOnce(failing=False), self.clock, batch_size=1)
        order = []
        for n in range(3000):
            writer.submit(self._message(n)).addCallback(
                lambda stored: order.append(stored.id))
        self.clock.advance(0)
        self.assertEqual(order, list(range(1, 3001)))
        self.successResultOf(writer.wait_idle())

        writer = BatchWriter(AtOnce(failing=True), self.clock, batch_size=1)
        refused = [writer.submit(self._message(n)) for n in range(3000)]
        self.clock.advance(0)
        for d in refused:
            self.failureResultOf(d, StorageUnavailable)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3000)
        self.successResultOf(writer.wait_idle())

    def test_batch_delay_applies_after_a_commit(self):
        """
        With a batch delay, the next transaction waits for it after a
        commit too.
        """
        writer = BatchWriter(self.store, self.clock, batch_delay=0.5)
        writer.submit(self._message(0))
        self.clock.advance(0.5)
        writer.submit(self._message(1))
        self.store.commit()
        self.assertEqual(len(self.store.batches), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.store.batches), 2)

    def test_failure_fails_the_batch_only(self):
        bad = self.writer.submit(self._message(0))
        self.clock.advance(0)
        self.store.fail()
        self.failureResultOf(bad, StorageUnavailable)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        good = self.writer.submit(self._message(1))
        self.clock.advance(0)
        self.store.commit()
        self.successResultOf(good)

    def test_stop_flushes(self):
        d = self.writer.submit(self._message(0))
        self.writer.startService()
        stopped = self.writer.stopService()
        self.assertNoResult(stopped)
        self.store.commit()
        self.successResultOf(d)
        self.successResultOf(stopped)
        self.failureResultOf(self.writer.submit(self._message(1)),
                             StorageUnavailable)

    def test_wait_idle(self):
        """
        A wait fires once nothing is queued or being stored; a cancelled
        one is forgotten.
        """
        self.successResultOf(self.writer.wait_idle())
        self.writer.submit(self._message(0))
        waiting, cancelled = self.writer.wait_idle(), self.writer.wait_idle()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(self.writer._idle_waiters, [waiting])
        self.clock.advance(0)
        self.assertNoResult(waiting)
        self.store.commit()
        self.successResultOf(waiting)
        self.assertEqual(self.writer._idle_waiters, [])

    def test_batch_delay(self):
        writer = BatchWriter(self.store, self.clock, batch_delay=0.5)
        writer.submit(self._message(0))
        self.clock.advance(0.4)
        writer.submit(self._message(1))
        self.assertEqual(self.store.batches, [])
        self.clock.advance(0.1)
        self.assertEqual([len(b) for b in self.store.batches], [2])


class BatchWriterDatabaseTests(TestCase):
    async def test_group_commit_on_the_database(self):
        """
        Many messages submitted at once are stored in one transaction, and
        a resend in the same batch is stored once.
        """
        database = await migrated_database(self)
        alice = await create_user(database, "alice")
        bob = await create_user(database, "bob")
        writer = BatchWriter(MessageStore(database), reactor)
        results = await gatherResults([
            writer.submit(NewMessage(alice.id, f"c{n % 40}", ONE_TO_ONE,
                                     bob.id, 1, str(n)))
            for n in range(50)])
        self.assertEqual(writer.commits, 1)
        self.assertEqual(len({r.id for r in results}), 40)
        self.assertEqual(sum(r.duplicate for r in results), 10)
        stored = await MessageStore(database).since(alice.id, [], 0, 100)
        self.assertEqual(len(stored), 40)
