"""
Tests for L{chatd.handlers.conversations}: the conversation list, read
positions and receipts, versioned history, search, recall, edit and
presence, with each refusal, on the test database (SQLite, or MariaDB with
CHATD_TEST_MYSQL).
"""

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from chatd.auth.tokens import Identity
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.handlers import conversations as conv
from chatd.parts import build_parts
from chatd.stores import now_ms
from chatd.stores.messages import GROUP, ONE_TO_ONE, NewMessage
from tests.helpers import (
    create_group,
    create_user,
    make_friends,
    migrated_database,
    test_config,
)

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
       b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f"
       b"\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def identity(user):
    return Identity(user.id, user.uuid, user.username, "t", 0)


class ConversationsTestCase(TestCase):
    async def setUp(self):
        config = test_config(self)
        self.database = await migrated_database(self)
        self.parts = build_parts(config, self.database, reactor)
        self.conversations = self.parts.conversations
        self.events = []
        for name in (conv.READ, conv.RECALLED, conv.EDITED):
            self.parts.events.subscribe(
                name, lambda name=name, **kw: self.events.append((name, kw)))
        self.alice = await create_user(self.database, "alice")
        self.bob = await create_user(self.database, "bob")
        self.carol = await create_user(self.database, "carol")
        self.dave = await create_user(self.database, "dave")
        await make_friends(self.database, self.alice, self.bob)
        await make_friends(self.database, self.alice, self.carol)
        self.group = await create_group(self.database, self.alice, "team",
                                        [self.bob])

    async def send(self, sender, recipient, content="hi", age=0,
                   message_type=ONE_TO_ONE, content_type=1, url=""):
        """
        Store a message sent C{age} seconds ago; return its id.
        """
        [stored] = await self.parts.messages.insert_batch(
            [NewMessage(sender.id, None, message_type, recipient.id,
                        content_type, content, url)],
            now_ms(reactor) - int(age * 1000))
        return stored.id


class ListAndReadTests(ConversationsTestCase):
    async def test_list_newest_first_with_unread(self):
        """
        Friends and groups, newest message first (those without messages
        last), each with its last message and what the caller has not read
        (their own messages never count).
        """
        await self.send(self.bob, self.alice, "one")
        await self.send(self.alice, self.carol, "to carol")
        await self.send(self.bob, self.group, "to the team",
                        message_type=GROUP)
        last = await self.send(self.bob, self.alice, "two")
        page = await self.conversations.list(identity(self.alice))
        self.assertEqual([(c.uuid, c.unread, c.last_content) for c in page], [
            (self.bob.uuid, 2, "two"),
            (self.group.uuid, 1, "to the team"),
            (self.carol.uuid, 0, "to carol"),
        ])
        self.assertEqual(page[0].last_id, last)
        self.assertEqual(page[0].last_sender_uuid, self.bob.uuid)
        self.assertEqual(page[1].name, "team")
        self.assertEqual(page[0].name, "bob")

    async def test_list_pages(self):
        await self.send(self.bob, self.alice, "one")
        await self.send(self.alice, self.carol, "to carol")
        first = await self.conversations.list(identity(self.alice), limit=2)
        self.assertEqual([c.uuid for c in first],
                         [self.carol.uuid, self.bob.uuid])
        rest = await self.conversations.list(
            identity(self.alice), before=first[-1].cursor, limit=2)
        self.assertEqual([c.uuid for c in rest], [self.group.uuid])
        with self.assertRaises(BadRequest):
            await self.conversations.list(identity(self.alice), before="x")
        with self.assertRaises(BadRequest):
            await self.conversations.list(identity(self.alice), limit=0)

    async def test_mark_read(self):
        """
        Marking read moves the caller's position (never back), the unread
        count follows, the other person sees how far they read, and a
        receipt is published.
        """
        first = await self.send(self.bob, self.alice, "one")
        second = await self.send(self.bob, self.alice, "two")
        position = await self.conversations.mark_read(
            identity(self.alice), self.bob.uuid, first)
        self.assertEqual((position.last_read_id, position.unread), (first, 1))
        position = await self.conversations.mark_read(
            identity(self.alice), self.bob.uuid)
        self.assertEqual((position.last_read_id, position.unread), (second, 0))
        position = await self.conversations.mark_read(
            identity(self.alice), self.bob.uuid, first)
        self.assertEqual(position.last_read_id, second)
        for_bob = (await self.conversations.list(identity(self.bob)))[0]
        self.assertEqual((for_bob.uuid, for_bob.peer_read_id),
                         (self.alice.uuid, second))
        name, details = self.events[-1]
        self.assertEqual(name, conv.READ)
        receipt = details["receipt"]
        self.assertEqual((receipt.reader_uuid, receipt.peer_id,
                          receipt.target_uuid, receipt.last_read_id),
                         (self.alice.uuid, self.bob.id, self.bob.uuid, second))

    async def test_nothing_said_tells_the_peer_nothing(self):
        """
        Marking read a conversation with nobody has said anything in (a
        stranger's, say) moves nothing and tells the other person nothing.
        """
        position = await self.conversations.mark_read(
            identity(self.carol), self.alice.uuid)
        self.assertEqual((position.last_read_id, position.unread), (0, 0))
        self.assertIsNone(self.events[-1][1]["receipt"].peer_id)

    async def test_group_read_positions_per_member(self):
        message = await self.send(self.alice, self.group, "hello",
                                  message_type=GROUP)
        position = await self.conversations.mark_read(
            identity(self.bob), self.group.uuid, message)
        self.assertEqual((position.last_read_id, position.unread),
                         (message, 0))
        receipt = self.events[-1][1]["receipt"]
        self.assertIsNone(receipt.peer_id)
        self.assertEqual(receipt.message_type, GROUP)

    async def test_new_member_starts_read(self):
        """
        What a group said before someone joined is not unread for them.
        """
        await self.send(self.alice, self.group, "before", message_type=GROUP)
        await self.parts.groups.join(identity(self.carol), self.carol.uuid,
                                     self.group.uuid)
        await self.database.wait_idle()
        [team] = [c for c in await self.conversations.list(identity(self.carol))
                  if c.uuid == self.group.uuid]
        self.assertEqual(team.unread, 0)
        await self.send(self.alice, self.group, "after", message_type=GROUP)
        [team] = [c for c in await self.conversations.list(identity(self.carol))
                  if c.uuid == self.group.uuid]
        self.assertEqual(team.unread, 1)

    async def test_mark_read_refusals(self):
        """
        Only members mark a group read; the message must belong to the
        conversation; unknown uuids are not found.
        """
        message = await self.send(self.alice, self.group, "hello",
                                  message_type=GROUP)
        other = await self.send(self.alice, self.carol, "hey")
        with self.assertRaises(Forbidden):
            await self.conversations.mark_read(identity(self.carol),
                                               self.group.uuid, message)
        with self.assertRaises(NotFound):
            await self.conversations.mark_read(identity(self.bob),
                                               self.alice.uuid, other)
        with self.assertRaises(NotFound):
            await self.conversations.mark_read(identity(self.bob), "nobody")
        with self.assertRaises(BadRequest):
            await self.conversations.mark_read(identity(self.bob),
                                               self.alice.uuid, -1)


class HistoryAndSearchTests(ConversationsTestCase):
    async def test_history_with_markers(self):
        one = await self.send(self.bob, self.alice, "one")
        two = await self.send(self.bob, self.alice, "two")
        three = await self.send(self.bob, self.alice, "three")
        await self.conversations.edit(identity(self.bob), two, "two!")
        await self.conversations.recall(identity(self.bob), three)
        target, page = await self.conversations.history(
            identity(self.alice), self.bob.uuid, limit=2)
        self.assertEqual(target.kind, ONE_TO_ONE)
        self.assertEqual([(m.id, m.content) for m in page],
                         [(two, "two!"), (three, "")])
        self.assertIsNotNone(page[0].edited_at)
        self.assertIsNone(page[0].recalled_at)
        self.assertIsNotNone(page[1].recalled_at)
        _, older = await self.conversations.history(
            identity(self.alice), self.bob.uuid, before=two)
        self.assertEqual([m.id for m in older], [one])

    async def test_history_only_for_members(self):
        await self.send(self.alice, self.group, "hello", message_type=GROUP)
        with self.assertRaises(Forbidden):
            await self.conversations.history(identity(self.carol),
                                             self.group.uuid)

    async def test_search(self):
        await self.send(self.bob, self.alice, "lunch at noon")
        await self.send(self.alice, self.group, "team lunch 你好",
                        message_type=GROUP)
        await self.send(self.carol, self.dave, "secret lunch")
        found = await self.conversations.search(identity(self.bob), "lunch")
        self.assertEqual([m.content for m in found],
                         ["team lunch 你好", "lunch at noon"])
        found = await self.conversations.search(
            identity(self.bob), "lunch", uuid=self.group.uuid)
        self.assertEqual([m.content for m in found], ["team lunch 你好"])
        found = await self.conversations.search(identity(self.alice), "你好")
        self.assertEqual(len(found), 1)

    async def test_search_refusals(self):
        with self.assertRaises(Forbidden):
            await self.conversations.search(identity(self.carol), "lunch",
                                            uuid=self.group.uuid)
        with self.assertRaises(BadRequest):
            await self.conversations.search(identity(self.carol), "  ")
        with self.assertRaises(BadRequest):
            await self.conversations.search(identity(self.carol), "a",
                                            limit=1000)


class RecallTests(ConversationsTestCase):
    async def test_recall_own(self):
        message = await self.send(self.alice, self.bob, "oops", age=10)
        change = await self.conversations.recall(identity(self.alice), message)
        self.assertEqual((change.from_uuid, change.to_uuid, change.user_ids),
                         (self.alice.uuid, self.bob.uuid,
                          frozenset({self.alice.id, self.bob.id})))
        self.assertEqual(self.events[-1], (conv.RECALLED, {"change": change}))
        _, [stored] = await self.conversations.history(
            identity(self.bob), self.alice.uuid)
        self.assertEqual((stored.content, stored.url), ("", ""))
        self.assertIsNotNone(stored.recalled_at)
        with self.assertRaises(Conflict):
            await self.conversations.recall(identity(self.alice), message)

    async def test_recall_removes_attachment(self):
        """
        The attachment's bytes and record go; the message keeps a marker.
        """
        stored = await self.parts.files.save(self.alice.id, PNG, "png")
        path = self.parts.files.path_of(stored.name)
        self.assertTrue(os.path.exists(path))
        message = await self.send(self.alice, self.bob, "", content_type=3,
                                  url=stored.name)
        await self.conversations.recall(identity(self.alice), message)
        self.assertFalse(os.path.exists(path))
        with self.assertRaises(NotFound):
            await self.parts.files.find(stored.name)

    async def test_recall_window_expired(self):
        message = await self.send(self.alice, self.bob, "old", age=121)
        with self.assertRaises(Forbidden) as raised:
            await self.conversations.recall(identity(self.alice), message)
        self.assertIn("120 seconds", raised.exception.message)

    async def test_recall_someone_elses(self):
        message = await self.send(self.alice, self.bob, "mine")
        with self.assertRaises(Forbidden):
            await self.conversations.recall(identity(self.bob), message)

    async def test_recall_not_participant(self):
        message = await self.send(self.alice, self.bob, "private")
        with self.assertRaises(Forbidden):
            await self.conversations.recall(identity(self.carol), message)
        with self.assertRaises(NotFound):
            await self.conversations.recall(identity(self.carol), message + 99)

    async def test_group_owner_recalls_any(self):
        """
        The owner of a group recalls a member's message, even an old one;
        every member is told.
        """
        message = await self.send(self.bob, self.group, "spam", age=3600,
                                  message_type=GROUP)
        change = await self.conversations.recall(identity(self.alice), message)
        self.assertEqual((change.from_uuid, change.to_uuid),
                         (self.group.uuid, self.bob.uuid))
        self.assertEqual(change.user_ids,
                         frozenset({self.alice.id, self.bob.id}))

    async def test_group_member_cannot_recall_others(self):
        message = await self.send(self.alice, self.group, "owner's",
                                  message_type=GROUP)
        with self.assertRaises(Forbidden):
            await self.conversations.recall(identity(self.bob), message)


class EditTests(ConversationsTestCase):
    async def test_edit_own(self):
        message = await self.send(self.alice, self.bob, "helo")
        change = await self.conversations.edit(identity(self.alice), message,
                                               "hello")
        self.assertEqual(change.content, "hello")
        self.assertEqual(self.events[-1], (conv.EDITED, {"change": change}))
        _, [stored] = await self.conversations.history(
            identity(self.bob), self.alice.uuid)
        self.assertEqual(stored.content, "hello")
        self.assertIsNotNone(stored.edited_at)

    async def test_edit_refusals(self):
        old = await self.send(self.alice, self.bob, "old", age=121)
        theirs = await self.send(self.bob, self.alice, "bob's")
        image = await self.send(self.alice, self.bob, "", content_type=3,
                                url="x.png")
        mine = await self.send(self.alice, self.bob, "mine")
        with self.assertRaises(Forbidden):
            await self.conversations.edit(identity(self.alice), old, "new")
        with self.assertRaises(Forbidden):
            await self.conversations.edit(identity(self.alice), theirs, "new")
        with self.assertRaises(Forbidden):
            await self.conversations.edit(identity(self.carol), mine, "new")
        with self.assertRaises(BadRequest):
            await self.conversations.edit(identity(self.alice), image, "new")
        with self.assertRaises(BadRequest):
            await self.conversations.edit(identity(self.alice), mine, " ")
        await self.conversations.recall(identity(self.alice), mine)
        with self.assertRaises(Conflict):
            await self.conversations.edit(identity(self.alice), mine, "new")


class PresenceTests(ConversationsTestCase):
    async def test_presence_of_contacts(self):
        """
        Friends and fellow group members are shown, online (from the Hub)
        or with the time they were last seen.
        """
        await self.conversations.went_offline(self.bob.id, 5000)
        await self.conversations.went_offline(self.bob.id, 4000)
        self.conversations.set_online_check(lambda uid: uid == self.carol.id)
        result = await self.conversations.presence(
            identity(self.alice), [self.bob.uuid, self.carol.uuid,
                                   self.alice.uuid])
        self.assertEqual([(u.uuid, online, seen) for u, online, seen in result],
                         [(self.bob.uuid, False, 5000),
                          (self.carol.uuid, True, None),
                          (self.alice.uuid, False, None)])
        # dave shares a group with carol but is no friend of hers: shown.
        await create_group(self.database, self.carol, "other", [self.dave])
        [(user, _, _)] = await self.conversations.presence(
            identity(self.dave), [self.carol.uuid])
        self.assertEqual(user.uuid, self.carol.uuid)

    async def test_presence_refused_for_strangers(self):
        with self.assertRaises(Forbidden):
            await self.conversations.presence(identity(self.dave),
                                              [self.alice.uuid])
        with self.assertRaises(NotFound):
            await self.conversations.presence(identity(self.dave), ["nobody"])
        with self.assertRaises(BadRequest):
            await self.conversations.presence(identity(self.dave), [])
