"""
The conversation frames on /socket.io (read, recall, edit, typing,
presence): real Autobahn clients over loopback against the whole daemon,
on the test database (SQLite, or MariaDB with CHATD_TEST_MYSQL).
"""

from tests.helpers import create_group
from tests.test_websocket import WebSocketTestCase


class ConversationFrameTests(WebSocketTestCase):
    async def send_text(self, client, to, content, client_id, message_type=1):
        client.send(to=to, content=content, contentType=1,
                    messageType=message_type, clientMsgId=client_id)
        ack = await client.next_of("ack")
        self.assertEqual(ack.clientMsgId, client_id)
        return ack.id

    async def test_read_receipts(self):
        """
        A read frame moves the reader's position: the sender's devices get
        a receipt, the reader's other devices the new unread count.
        """
        await self.start()
        phone = await self.connect(self.alice)
        laptop = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        first = await self.send_text(bob, self.alice.uuid, "one", "b1")
        second = await self.send_text(bob, self.alice.uuid, "two", "b2")
        phone.send(type="read", to=self.bob.uuid, id=first)
        receipt = await bob.next_of("read")
        self.assertEqual((getattr(receipt, "from"), receipt.to, receipt.id),
                         (self.alice.uuid, self.bob.uuid, first))
        badge = await laptop.next_of("read")
        self.assertEqual((getattr(badge, "from"), badge.to, badge.id,
                          badge.unread),
                         (self.alice.uuid, self.bob.uuid, first, 1))
        phone.send(type="read", to=self.bob.uuid)
        badge = await laptop.next_of("read")
        self.assertEqual((badge.id, badge.unread), (second, 0))
        position = await self.service.parts.conversations._reads.position(
            self.alice.id, f"d:{self.alice.id}:{self.bob.id}")
        self.assertEqual(position.last_read_id, second)

    async def test_read_refused_outside_the_group(self):
        await self.start()
        group = await create_group(self.database, self.alice, "team",
                                   [self.bob])
        carol = await self.connect(self.carol)
        carol.send(type="read", to=group.uuid, clientMsgId="r1")
        error = await carol.next_of("error")
        self.assertEqual((error.errorCode, error.clientMsgId),
                         ("forbidden", "r1"))

    async def test_recall_and_edit(self):
        """
        Recall and edit frames reach every device of the conversation;
        someone else's message is refused.
        """
        await self.start()
        alice = await self.connect(self.alice)
        other = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        message = await self.send_text(alice, self.bob.uuid, "helo", "a1")
        alice.send(type="edit", id=message, content="hello")
        for client in (bob, other):
            edit = await client.next_of("edit")
            self.assertEqual((edit.id, edit.content, getattr(edit, "from"),
                              edit.to),
                             (message, "hello", self.alice.uuid, self.bob.uuid))
            self.assertGreater(edit.editedAt, 0)
        bob.send(type="recall", id=message, clientMsgId="x")
        error = await bob.next_of("error")
        self.assertEqual((error.errorCode, error.clientMsgId), ("forbidden", "x"))
        bob.send(type="edit", id=message, content="hacked", clientMsgId="y")
        error = await bob.next_of("error")
        self.assertEqual(error.errorCode, "forbidden")
        alice.send(type="recall", id=message)
        for client in (bob, other, alice):
            recall = await client.next_of("recall")
            self.assertEqual((recall.id, recall.recalled), (message, True))
        [stored] = await self.history(self.bob)
        self.assertEqual(stored.content, "")

    async def test_group_recall_by_owner(self):
        await self.start()
        group = await create_group(self.database, self.alice, "team",
                                   [self.bob, self.carol])
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        carol = await self.connect(self.carol)
        message = await self.send_text(bob, group.uuid, "spam", "b1", 2)
        alice.send(type="recall", id=message)
        for client in (alice, bob, carol):
            recall = await client.next_of("recall")
            self.assertEqual((recall.id, getattr(recall, "from"), recall.to,
                              recall.messageType),
                             (message, group.uuid, self.bob.uuid, 2))

    async def test_typing(self):
        """
        Typing is relayed to the friend, never stored, and beyond the
        burst dropped.
        """
        await self.start(messages_typing_burst=2,
                         messages_typing_per_second=0.001)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        for _ in range(2):
            alice.send(type="typing", to=self.bob.uuid)
            typing = await bob.next_of("typing")
            self.assertEqual((getattr(typing, "from"), typing.to),
                             (self.alice.uuid, self.bob.uuid))
        # Over the burst: dropped. (The caches it needs are warm now, so it
        # would be relayed before the message below is even stored.)
        alice.send(type="typing", to=self.bob.uuid)
        await self.send_text(alice, self.bob.uuid, "done typing", "a1")
        frame = await bob.next()
        while frame.type == "presence":
            frame = await bob.next()
        self.assertEqual((frame.type, frame.content), ("", "done typing"))
        self.assertEqual(await self.stored_count(), 1)

    async def test_typing_in_groups_and_refusals(self):
        await self.start()
        group = await create_group(self.database, self.alice, "team",
                                   [self.bob])
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        carol = await self.connect(self.carol)
        alice.send(type="typing", to=group.uuid, messageType=2)
        typing = await bob.next_of("typing")
        self.assertEqual((getattr(typing, "from"), typing.to),
                         (group.uuid, self.alice.uuid))
        carol.send(type="typing", to=self.alice.uuid, clientMsgId="t1")
        error = await carol.next_of("error")
        self.assertEqual(error.errorCode, "not_friend")
        carol.send(type="typing", to=group.uuid, messageType=2,
                   clientMsgId="t2")
        error = await carol.next_of("error")
        self.assertEqual(error.errorCode, "not_member")

    async def test_presence(self):
        """
        Friends are told when a user comes online and, once the debounce
        has passed, offline; the last-seen time is kept.
        """
        await self.start(messages_presence_debounce=0.1)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        online = await alice.next_of("presence")
        self.assertEqual((getattr(online, "from"), online.online,
                          online.content), (self.bob.uuid, True, "online"))
        await bob.close()
        offline = await alice.next_of("presence")
        self.assertEqual((getattr(offline, "from"), offline.online),
                         (self.bob.uuid, False))
        self.assertGreater(offline.lastSeen, 0)
        [(_, is_online, seen)] = await self.service.parts.conversations.presence(
            _Who(self.alice), [self.bob.uuid])
        self.assertEqual((is_online, seen), (False, offline.lastSeen))

    async def test_presence_flapping_is_quiet(self):
        """
        A reconnect within the debounce sends neither offline nor online.
        """
        await self.start(messages_presence_debounce=600.0)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        online = await alice.next_of("presence")
        self.assertTrue(online.online)
        await bob.close()
        bob = await self.connect(self.bob)
        await self.send_text(bob, self.alice.uuid, "back", "b1")
        frame = await alice.next()
        self.assertEqual((frame.type, frame.content), ("", "back"))


class _Who:
    def __init__(self, user):
        self.user_id, self.uuid = user.id, user.uuid



class SyncMarkerTests(WebSocketTestCase):
    async def test_sync_shows_recalls_and_edits(self):
        """
        A device that syncs later gets recalled messages empty and marked,
        edited ones with their latest text and edit time.
        """
        await self.start()
        alice = await self.connect(self.alice)
        alice.send(to=self.bob.uuid, content="first", contentType=1,
                   clientMsgId="a1")
        first = (await alice.next_of("ack")).id
        alice.send(to=self.bob.uuid, content="secnd", contentType=1,
                   clientMsgId="a2")
        second = (await alice.next_of("ack")).id
        await self.service.parts.conversations.recall(_Who(self.alice), first)
        await self.service.parts.conversations.edit(_Who(self.alice), second,
                                                    "second")
        bob = await self.connect(self.bob)
        bob.send(type="sync", sinceId=0)
        replayed = [await bob.next_of(""), await bob.next_of("")]
        self.assertEqual([(m.id, m.content, m.recalled, m.editedAt > 0)
                          for m in replayed],
                         [(first, "", True, False), (second, "second", False,
                                                     True)])
