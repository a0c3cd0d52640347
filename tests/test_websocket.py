"""
Real-time messaging on /socket.io: real Autobahn clients over loopback
against the whole daemon, on the test database (SQLite, or MariaDB with
CHATD_TEST_MYSQL).
"""

import base64
import os
import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd import events
from chatd.stores.groups import GroupStore
from tests.helpers import (
    HandshakeFailed,
    connect_user,
    create_group,
    create_user,
    http_client,
    listening_ports,
    make_friends,
    server_database,
    start_chat,
    start_server,
    ws_connect,
    ws_url,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
OGG = b"OggS" + b"\x00" * 64


def sleep(seconds):
    d = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class WebSocketTestCase(TestCase):
    timeout = 120

    def start(self, **changes):
        return start_chat(self, **changes)

    def connect(self, user, **kwargs):
        return connect_user(self, self.service, user, **kwargs)

    def history(self, user, after=0):
        return self.service.parts.messages.since(user.id, [], after, 1000)

    async def stored_count(self):
        rows = await self.database.run(
            "count", lambda txn: txn.execute(
                "SELECT COUNT(*) FROM messages").fetchone())
        return int(rows[0])

    async def assert_alive(self, client):
        """
        The connection still answers heartbeats.
        """
        client.send(type="heatbeat", content="ping")
        pong = await client.next_of("heatbeat")
        self.assertEqual(pong.content, "pong")


class ChatTests(WebSocketTestCase):
    async def test_two_users_chat(self):
        """
        A message is stored, delivered with its server id and time, and
        acknowledged to the sender with its client id.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, content="hello bob", contentType=1,
                   messageType=1, clientMsgId="a-1")
        ack = await alice.next_of("ack")
        got = await bob.next_of("")
        self.assertEqual((got.type, getattr(got, "from"), got.to, got.content,
                          got.fromUsername, got.avatar, got.messageType),
                         ("", self.alice.uuid, self.bob.uuid, "hello bob",
                          "alice", "a.png", 1))
        self.assertEqual((ack.clientMsgId, ack.id, ack.createAt),
                         ("a-1", got.id, got.createAt))
        self.assertGreater(ack.id, 0)
        bob.send(to=self.alice.uuid, content="hi alice", contentType=1,
                 messageType=1, clientMsgId="b-1")
        reply = await alice.next_of("")
        self.assertEqual((getattr(reply, "from"), reply.content),
                         (self.bob.uuid, "hi alice"))
        stored = await self.history(self.alice)
        self.assertEqual([m.content for m in stored], ["hello bob", "hi alice"])

    async def test_messages_arriving_together_share_a_commit(self):
        """
        A burst of messages is stored in a few transactions, not one each,
        and delivered in the order it was sent.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, content="warm-up", contentType=1,
                   messageType=1)
        await alice.next_of("ack")
        await bob.next_of("")
        writer = self.service.realtime.writer
        commits = writer.commits
        for n in range(50):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"c{n}")
        acks = [await alice.next_of("ack") for _ in range(50)]
        received = [await bob.next_of("") for _ in range(50)]
        self.assertEqual([f.content for f in received],
                         [f"m{n}" for n in range(50)])
        self.assertEqual([a.id for a in acks], [f.id for f in received])
        self.assertEqual(sorted(a.id for a in acks), [a.id for a in acks])
        self.commits_for_burst = writer.commits - commits
        self.assertLessEqual(self.commits_for_burst, 10)

    async def test_go_chat_frame_without_client_id(self):
        """
        A go-chat-web frame (fields 1-11 only, C{from} set to the sender) is
        stored and delivered; the ack has no client id.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(from_=self.alice.uuid, to=self.bob.uuid, content="old",
                   contentType=1, messageType=1, avatar="x", fromUsername="x")
        got = await bob.next_of("")
        self.assertEqual((got.content, got.avatar, got.fromUsername),
                         ("old", "a.png", "alice"))
        ack = await alice.next_of("ack")
        self.assertEqual((ack.clientMsgId, ack.id), ("", got.id))

    async def test_group_of_three(self):
        """
        A group message reaches every other member, go-chat style: C{from}
        the group, C{to} the sender, the sender's avatar.
        """
        await self.start()
        group = await create_group(self.database, self.alice, "trio",
                                   [self.bob, self.carol])
        clients = [await self.connect(u)
                   for u in (self.alice, self.bob, self.carol)]
        alice, bob, carol = clients
        alice.send(to=group.uuid, content="hi all", contentType=1,
                   messageType=2, clientMsgId="g-1")
        ack = await alice.next_of("ack")
        for client in (bob, carol):
            got = await client.next_of("")
            self.assertEqual(
                (getattr(got, "from"), got.to, got.avatar, got.fromUsername,
                 got.content, got.messageType, got.id),
                (group.uuid, self.alice.uuid, "a.png", "alice", "hi all", 2,
                 ack.id))
        carol.send(to=group.uuid, content="hi", contentType=1, messageType=2)
        self.assertEqual(getattr(await alice.next_of(""), "from"), group.uuid)
        self.assertEqual((await bob.next_of("")).content, "hi")

    async def test_membership_changes_are_followed(self):
        """
        The Hub's cached membership follows join and leave events: no
        database query per message, and no stale routing.
        """
        await self.start()
        group = await create_group(self.database, self.alice, "g", [self.bob])
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        alice.send(to=group.uuid, content="before", contentType=1,
                   messageType=2)
        await alice.next_of("ack")
        carol.send(to=group.uuid, content="let me in", contentType=1,
                   messageType=2, clientMsgId="c-1")
        refused = await carol.next_of("error")
        self.assertEqual(refused.errorCode, "not_member")
        await GroupStore(self.database).join(group.id, self.carol.id, 5)
        self.service.parts.events.publish(
            events.MEMBER_JOINED, group_id=group.id, user_id=self.carol.id)
        alice.send(to=group.uuid, content="welcome carol", contentType=1,
                   messageType=2)
        self.assertEqual((await carol.next_of("")).content, "welcome carol")
        await GroupStore(self.database).leave(group.id, self.carol.id)
        self.service.parts.events.publish(
            events.MEMBER_LEFT, group_id=group.id, user_id=self.carol.id)
        carol.send(to=group.uuid, content="still here?", contentType=1,
                   messageType=2)
        self.assertEqual((await carol.next_of("error")).errorCode,
                         "not_member")

    async def test_friendship_through_rest(self):
        """
        Befriending through the REST API (which publishes the change) lets
        a connected user message the new friend at once, and unfriending
        stops it: the Hub's cached friendships follow.
        """
        import json

        from tests.helpers import base_url

        await self.start()
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        await self._refused_to_carol(alice)
        token, _ = await self.service.parts.tokens.issue(self.alice)
        headers = {b"Authorization": [f"Bearer {token}".encode()],
                   b"Content-Type": [b"application/json"]}
        body = json.dumps({"uuid": self.alice.uuid,
                           "friendUsername": "carol"}).encode()
        response = await http_client().post(
            base_url(self.service) + "/friend", data=body, headers=headers)
        self.assertEqual((await response.json())["code"], 0)
        alice.send(to=self.carol.uuid, content="friends now", contentType=1,
                   messageType=1)
        self.assertEqual((await carol.next_of("")).content, "friends now")
        response = await http_client().delete(
            base_url(self.service) + "/friend", data=body, headers=headers)
        self.assertEqual((await response.json())["code"], 0)
        await self._refused_to_carol(alice)

    async def _refused_to_carol(self, alice):
        alice.send(to=self.carol.uuid, content="hi", contentType=1,
                   messageType=1)
        self.assertEqual((await alice.next_of("error")).errorCode, "not_friend")

    async def test_two_devices(self):
        """
        Both of a user's devices get messages to it; a message it sends is
        copied to its other device, not echoed to the sending one.
        """
        await self.start()
        bob1 = await self.connect(self.bob)
        bob2 = await self.connect(self.bob)
        alice1 = await self.connect(self.alice)
        alice2 = await self.connect(self.alice)
        self.assertEqual(self.service.realtime.hub.connection_count, 4)
        alice1.send(to=self.bob.uuid, content="to both", contentType=1,
                    messageType=1, clientMsgId="m1")
        for client in (bob1, bob2, alice2):
            got = await client.next_of("")
            self.assertEqual(got.content, "to both")
        ack = await alice1.next_of("ack")
        self.assertEqual(ack.type, "ack")
        await self.assert_alive(alice1)

    async def test_connection_limit(self):
        await self.start(websocket_max_connections_per_user=1)
        await self.connect(self.bob)
        with self.assertRaises(HandshakeFailed) as caught:
            await self.connect(self.bob)
        self.assertIn("429", str(caught.exception))

    async def test_handshake_dropped_while_authenticating(self):
        """
        A client gone before its token is checked is never attached: it
        takes none of the user's connections and shows nobody online.
        """
        from twisted.internet.protocol import ClientFactory, Protocol

        await self.start(websocket_max_connections_per_user=1)
        factory = self.service.realtime.factory
        held, get_by_id = Deferred(), factory.users.get_by_id
        self.patch(factory.users, "get_by_id", lambda user_id: held)
        token, _ = await self.service.parts.tokens.issue(self.bob)
        opened, lost = Deferred(), Deferred()

        class Upgrade(Protocol):
            def connectionMade(self):
                self.transport.write(
                    f"GET /socket.io?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode())
                opened.callback(self)

            def connectionLost(self, reason):
                lost.callback(None)

        client_factory = ClientFactory.forProtocol(Upgrade)
        reactor.connectTCP("127.0.0.1", listening_ports(self.service)[0], client_factory)
        client = await opened
        while True:  # until the server has read the request
            await sleep(0.01)
            if held.callbacks:
                break
        client.transport.abortConnection()
        await lost
        await sleep(0.1)
        held.callback(await get_by_id(self.bob.id))
        await sleep(0.1)
        self.assertEqual(self.service.realtime.hub.connection_count, 0)
        self.patch(factory.users, "get_by_id", get_by_id)
        bob = await self.connect(self.bob)
        await self.assert_alive(bob)

    async def test_long_burst_before_the_routing_facts_are_cached(self):
        """
        200 frames at once on a new connection, whose addressee is not
        cached yet, so that each waits for the one before it: every one is
        stored and acked (on MariaDB the chain used to resume itself inside
        one call stack, pass the recursion limit and stop).
        """
        await self.start()
        alice = await self.connect(self.alice)
        for n in range(200):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"b{n}")
        acked = [(await alice.next_of("ack")).clientMsgId for _ in range(200)]
        self.assertEqual(acked, [f"b{n}" for n in range(200)])
        self.assertEqual(await self.stored_count(), 200)

    async def test_resend_is_acknowledged_not_stored_twice(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        for _ in range(2):
            alice.send(to=self.bob.uuid, content="once", contentType=1,
                       messageType=1, clientMsgId="same")
        first, second = await alice.next_of("ack"), await alice.next_of("ack")
        self.assertEqual(first.id, second.id)
        self.assertEqual((await bob.next_of("")).content, "once")
        await self.assert_alive(bob)
        self.assertEqual(await self.stored_count(), 1)

    async def stored_files(self):
        """
        The file records and the files on disk.
        """
        rows = await self.database.run(
            "files", lambda txn: txn.execute("SELECT name FROM files").fetchall())
        directory = self.service.parts.files.directory
        return (sorted(row[0] for row in rows),
                sorted(os.listdir(directory)) if os.path.isdir(directory) else [])

    async def test_resent_attachment_is_kept_once(self):
        """
        An attachment resent under the same client id is acked with the
        first message and its new copy deleted; one that could not be
        stored is deleted too.
        """
        await self.start()
        alice = await self.connect(self.alice)
        for _ in range(3):
            alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                       clientMsgId="img-1")
            await alice.next_of("ack")
        await sleep(0.2)
        [name], on_disk = await self.stored_files()
        self.assertEqual(on_disk, [name])

        async def down(messages, created_at):
            raise ConnectionError("the database is down")

        self.patch(self.service.parts.messages, "insert_batch", down)
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=OGG,
                   clientMsgId="ogg-1")
        self.assertEqual((await alice.next_of("error")).errorCode, "unavailable")
        await sleep(0.2)
        self.assertEqual(await self.stored_files(), ([name], [name]))
        self.flushLoggedErrors(ConnectionError)

    async def test_messages_rate_limited_per_user(self):
        """
        A user's stored messages are limited across all devices: past the
        burst each is refused (rate_limited), not stored and not acked;
        the bucket refills. Attachments have a budget of bytes too.
        """
        await self.start(websocket_messages_per_second=1.0, websocket_messages_burst=3,
                         files_upload_bytes_per_hour=4 * len(PNG) * 3)
        first, second = await self.connect(self.alice), await self.connect(self.alice)
        for n, client in enumerate((first, second, first)):
            client.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                        messageType=1, clientMsgId=f"m{n}")
            await client.next_of("ack")
        second.send(to=self.bob.uuid, content="m3", contentType=1, messageType=1,
                    clientMsgId="m3")
        error = await second.next_of("error")
        self.assertEqual((error.errorCode, error.clientMsgId), ("rate_limited", "m3"))
        self.assertEqual(await self.stored_count(), 3)
        await sleep(1.1)
        first.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                   clientMsgId="f1")
        await first.next_of("ack")
        self.assertEqual(error.content, "too many messages; try again in 1 seconds")
        await sleep(3.2)
        # The attachment budget: three PNGs at once; the fourth waits.
        for n in range(2):
            first.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                       clientMsgId=f"f{n + 2}")
            await first.next_of("ack")
        first.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                   clientMsgId="f4")
        error = await first.next_of("error")
        self.assertEqual(error.errorCode, "rate_limited")
        self.assertTrue(error.content.startswith("too many bytes of files"), error)
        self.assertEqual(await self.stored_count(), 6)

    async def test_only_messages_stored_count_against_the_limit(self):
        """
        A message refused for another reason, or a resend of one already
        stored, takes nothing from the sender's allowance; nor does a file
        refused as too large from the byte budget.
        """
        await self.start(websocket_messages_per_second=0.001, websocket_messages_burst=2,
                         files_upload_bytes_per_hour=4 * len(PNG) * 2,
                         files_max_upload_bytes=len(PNG))
        alice = await self.connect(self.alice)
        for n in range(3):
            alice.send(to=self.carol.uuid, content="hi", contentType=1, messageType=1,
                       clientMsgId=f"x{n}")
            self.assertEqual((await alice.next_of("error")).errorCode, "not_friend")
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG + b"!",
                   clientMsgId="big")
        self.assertEqual((await alice.next_of("error")).errorCode, "too_large")
        for _ in range(3):
            alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                       clientMsgId="same")
            await alice.next_of("ack")
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                   clientMsgId="second")
        await alice.next_of("ack")
        alice.send(to=self.bob.uuid, content="third", contentType=1, messageType=1,
                   clientMsgId="third")
        self.assertEqual((await alice.next_of("error")).errorCode, "rate_limited")
        self.assertEqual(await self.stored_count(), 2)

    async def test_admin_broadcast(self):
        await self.start()
        admin = await create_user(self.database, "root", is_admin=True)
        root = await self.connect(admin)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(content="everyone!", contentType=1)
        self.assertEqual((await alice.next_of("error")).errorCode, "not_admin")
        root.send(content="maintenance at noon", contentType=1)
        for client in (alice, bob):
            got = await client.next_of("")
            self.assertEqual((got.content, getattr(got, "from")),
                             ("maintenance at noon", admin.uuid))

    async def test_webrtc_relayed_not_stored(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(type="webrtc", to=self.carol.uuid, contentType=11,
                   messageType=1)
        self.assertEqual((await alice.next_of("error")).errorCode, "not_friend")
        alice.send(type="webrtc", to=self.bob.uuid, contentType=11,
                   messageType=1, content="")
        got = await bob.next_of("webrtc")
        self.assertEqual((got.contentType, getattr(got, "from")),
                         (11, self.alice.uuid))
        self.assertEqual(await self.stored_count(), 0)


class AttachmentTests(WebSocketTestCase):
    async def test_data_url(self):
        """
        contentType 2 with a data URL: stored in the file store, delivered
        with its url and no content.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        encoded = base64.b64encode(b"hello file").decode()
        alice.send(to=self.bob.uuid, contentType=2, messageType=1,
                   content=f"data:text/plain;base64,{encoded}",
                   fileSuffix="txt", clientMsgId="f-1")
        got = await bob.next_of("")
        self.assertEqual((got.contentType, got.content), (2, ""))
        self.assertTrue(got.url.endswith(".txt"), got.url)
        _, path = await self.service.parts.files.find(got.url)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"hello file")
        [stored] = await self.history(self.alice)
        self.assertEqual(stored.url, got.url)

    async def test_data_url_limit_is_the_upload_limit(self):
        """
        A data URL is bounded by C{files.max_upload_bytes}, not by the
        length of a text message: a file of the largest size is stored,
        one past it is refused.
        """
        await self.start(websocket_max_content_chars=100,
                         files_max_upload_bytes=3000)
        alice = await self.connect(self.alice)
        for n, (size, answer) in enumerate(((3000, "ack"), (3001, "error"))):
            encoded = base64.b64encode(b"x" * size).decode()
            alice.send(to=self.bob.uuid, contentType=2, messageType=1,
                       content=f"data:text/plain;base64,{encoded}",
                       fileSuffix="txt", clientMsgId=f"big-{n}")
            reply = await alice.next_of("ack", "error")
            self.assertEqual(reply.type, answer)
        self.assertEqual(reply.errorCode, "too_large")
        self.assertEqual(await self.stored_count(), 1)

    async def test_frames_stored_in_arrival_order(self):
        """
        Text messages sent right after an attachment (which waits for the
        file store) are stored and delivered after it, although their
        routing facts are cached and they need no waiting of their own.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, contentType=1, messageType=1,
                   content="warm the caches", clientMsgId="o-0")
        await bob.next_of("")
        encoded = base64.b64encode(b"first").decode()
        alice.send(to=self.bob.uuid, contentType=2, messageType=1,
                   content=f"data:text/plain;base64,{encoded}",
                   fileSuffix="txt", clientMsgId="o-1")
        for n in range(2, 5):
            alice.send(to=self.bob.uuid, contentType=1, messageType=1,
                       content=f"text {n}", clientMsgId=f"o-{n}")
        got = [await bob.next_of("") for _ in range(4)]
        self.assertEqual([m.clientMsgId for m in got], [f"o-{n}" for n in range(1, 5)])
        self.assertEqual([m.id for m in got], sorted(m.id for m in got))
        stored = await self.history(self.alice)
        self.assertEqual([m.client_msg_id for m in stored],
                         [f"o-{n}" for n in range(5)])

    async def test_large_and_fragmented_frames(self):
        """
        Frames the lean path leaves to Autobahn (one over 64 KiB, a message
        in fragments, a ping between) are handled as before, in order with
        the small ones around them.
        """
        from chatd.protocol.frames import Message

        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        big = PNG + b"\x00" * 100000
        alice.send(to=self.bob.uuid, contentType=1, messageType=1,
                   content="before", clientMsgId="l-0")
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=big,
                   clientMsgId="l-1")
        alice.sendMessage(Message(to=self.bob.uuid, contentType=1, messageType=1,
                                  content="in pieces", clientMsgId="l-2")
                          .SerializeToString(), isBinary=True, fragmentSize=7)
        alice.sendPing(b"between")
        alice.send(to=self.bob.uuid, contentType=1, messageType=1,
                   content="after", clientMsgId="l-3")
        got = [await bob.next_of("") for _ in range(4)]
        self.assertEqual([m.clientMsgId for m in got], ["l-0", "l-1", "l-2", "l-3"])
        self.assertEqual([m.content for m in got], ["before", "", "in pieces", "after"])
        _, path = await self.service.parts.files.find(got[1].url)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), big)

    async def test_file_bytes_sniffed(self):
        """
        contentType 3 with bytes: the type comes from the bytes, not the
        sender's claim.
        """
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=PNG,
                   fileSuffix="exe")
        image = await bob.next_of("")
        self.assertEqual((image.contentType, image.file), (3, b""))
        self.assertTrue(image.url.endswith(".png"), image.url)
        alice.send(to=self.bob.uuid, contentType=3, messageType=1, file=OGG)
        audio = await bob.next_of("")
        self.assertEqual(audio.contentType, 4)
        self.assertTrue(audio.url.endswith(".ogg"))


class RefusalTests(WebSocketTestCase):
    async def _refused(self, client, code, **fields):
        client.send(**fields)
        error = await client.next_of("error")
        self.assertEqual(error.errorCode, code, error.content)
        self.assertTrue(error.content)
        return error

    async def test_handler_bug_is_an_error_frame(self):
        """
        A bug that raises at once in the message path (not a refusal) is
        logged and answered with an "internal" error frame; the connection
        stays open.
        """
        await self.start()
        alice = await self.connect(self.alice)
        messaging = self.service.realtime.messaging

        def broken(connection, frame):
            raise RuntimeError("a bug")

        self.patch(messaging, "_prepare_cached", broken)
        await self._refused(alice, "internal", to=self.bob.uuid, contentType=1,
                            messageType=1, content="hi", clientMsgId="bug-1")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        await self.assert_alive(alice)

    async def test_spoofed_from(self):
        await self.start()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        error = await self._refused(
            alice, "spoofed_from", from_=self.bob.uuid, to=self.bob.uuid,
            content="I am bob", contentType=1, messageType=1, clientMsgId="x")
        self.assertEqual(error.clientMsgId, "x")
        await self.assert_alive(alice)
        await self.assert_alive(bob)
        self.assertEqual(await self.stored_count(), 0)

    async def test_not_a_friend(self):
        await self.start()
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        await self._refused(alice, "not_friend", to=self.carol.uuid,
                            content="hi", contentType=1, messageType=1)
        await self._refused(alice, "unknown_recipient", to="no-such-uuid",
                            content="hi", contentType=1, messageType=1)
        await self._refused(alice, "unknown_group", to="no-such-uuid",
                            content="hi", contentType=1, messageType=2)
        await self.assert_alive(carol)
        self.assertEqual(await self.stored_count(), 0)

    async def test_bad_frames(self):
        """
        Undecodable, oversized and bad-base64 frames get error frames; the
        connection survives and nothing is stored.
        """
        await self.start(websocket_max_content_chars=100,
                         files_max_upload_bytes=1000)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.sendMessage(b"\xff\xff\xff\xff", isBinary=True)
        self.assertEqual((await alice.next_of("error")).errorCode,
                         "bad_request")
        alice.sendMessage(b"not protobuf", isBinary=False)
        self.assertEqual((await alice.next_of("error")).errorCode,
                         "not_binary")
        await self._refused(alice, "too_large", to=self.bob.uuid,
                            content="x" * 101, contentType=1, messageType=1)
        await self._refused(alice, "too_large", to=self.bob.uuid,
                            contentType=3, messageType=1, file=PNG * 20)
        await self._refused(alice, "bad_base64", to=self.bob.uuid,
                            contentType=2, messageType=1,
                            content="data:image/png;base64,&&&not base64")
        await self._refused(alice, "unknown_type", type="no-such-kind")
        for client_msg_id in ("x" * 65, "é", "ends in a space ", "call:1234"):
            await self._refused(alice, "bad_client_msg_id", to=self.bob.uuid,
                                content="hi", contentType=1, messageType=1,
                                clientMsgId=client_msg_id)
        await self.assert_alive(alice)
        await self.assert_alive(bob)
        self.assertEqual(await self.stored_count(), 0)

    async def test_message_over_the_size_limit_closes(self):
        """
        A WebSocket message over C{max_message_bytes} closes the connection
        with 1009; others are unaffected and nothing is stored.
        """
        await self.start(websocket_max_message_bytes=4096,
                         websocket_max_frame_bytes=4096)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        alice.send(to=self.bob.uuid, contentType=3, messageType=1,
                   file=PNG * 100)
        code, _ = await alice.closed
        self.assertEqual(code, 1009)
        await self.assert_alive(bob)
        self.assertEqual(await self.stored_count(), 0)

    async def test_abusive_client_is_closed(self):
        """
        A client whose frames keep being refused is closed with 1008 once
        it passes C{max_refusals_per_minute}; a few refusals are fine.
        """
        await self.start(websocket_max_refusals_per_minute=3)
        alice = await self.connect(self.alice)
        for _ in range(3):
            alice.sendMessage(b"\xff\xff", isBinary=True)
            await alice.next_of("error")
        await self.assert_alive(alice)
        alice.sendMessage(b"\xff\xff", isBinary=True)
        code, _ = await alice.closed
        self.assertEqual(code, 1008)
        self.assertFalse(self.service.realtime.hub.is_connected(self.alice.id))

    async def test_server_failures_are_not_abuse(self):
        """
        Frames the server fails to handle (the database is down: each is
        answered C{unavailable}) do not count as the client's refusals.
        """
        await self.start(websocket_max_refusals_per_minute=3)
        alice = await self.connect(self.alice)

        async def down(messages, created_at):
            raise ConnectionError("the database is down")

        self.patch(self.service.parts.messages, "insert_batch", down)
        for n in range(6):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"u-{n}")
            self.assertEqual((await alice.next_of("error")).errorCode, "unavailable")
        await self.assert_alive(alice)
        self.flushLoggedErrors(ConnectionError)

    async def test_autoping_drops_dead_peers(self):
        """
        A peer that stops answering the server's pings is dropped.
        """
        await self.start(websocket_autoping_interval=0.2,
                         websocket_autoping_timeout=0.2)
        alice = await self.connect(self.alice)
        alice.transport.pauseProducing()
        hub = self.service.realtime.hub
        for _ in range(100):
            if not hub.is_connected(self.alice.id):
                break
            await sleep(0.05)
        self.assertFalse(hub.is_connected(self.alice.id))
        alice.transport.resumeProducing()
        await alice.lost

    async def test_live_peers_kept(self):
        """
        A peer that answers the server's pings stays connected, however
        long it sends nothing else.
        """
        await self.start(websocket_autoping_interval=0.1,
                         websocket_autoping_timeout=0.1)
        await self.connect(self.alice)
        hub = self.service.realtime.hub
        [connection] = hub.connections_of(self.alice.id)
        for _ in range(20):
            if connection.ping_sent is not None and connection.last_heard > connection.ping_sent:
                break
            await sleep(0.05)
        self.assertGreater(connection.last_heard, connection.ping_sent)
        await sleep(0.5)
        self.assertTrue(hub.is_connected(self.alice.id))

    async def test_registered_frame_handler(self):
        """
        Other parts (calls, receipts) add frame kinds through the factory;
        their domain errors become error frames, and spoofed senders are
        refused before they see the frame.
        """
        from chatd.errors import Forbidden
        from chatd.protocol.frames import Message

        await self.start()
        seen = []

        async def handle_typing(connection, frame):
            seen.append((connection.user.id, frame.to))
            if frame.to == "nobody":
                raise Forbidden("no typing to nobody")
            connection.send_frame(Message(type="typing", content="ok"))

        self.service.realtime.factory.register_frame_handler(
            "typing", handle_typing)
        alice = await self.connect(self.alice)
        alice.send(type="typing", to=self.bob.uuid)
        self.assertEqual((await alice.next_of("typing")).content, "ok")
        await self._refused(alice, "forbidden", type="typing", to="nobody")
        await self._refused(alice, "spoofed_from", type="typing",
                            from_=self.bob.uuid, to=self.bob.uuid)
        self.assertEqual(seen, [(self.alice.id, self.bob.uuid),
                                (self.alice.id, "nobody")])

    async def test_heartbeat(self):
        await self.start()
        alice = await self.connect(self.alice)
        alice.send(type="heatbeat", content="ping")
        pong = await alice.next_of("heatbeat")
        self.assertEqual((pong.type, pong.content), ("heatbeat", "pong"))


class UpgradeTests(WebSocketTestCase):
    async def _status(self, url, headers=None):
        """
        The HTTP status of an upgrade request.
        """
        request_headers = {
            b"Connection": [b"Upgrade"], b"Upgrade": [b"websocket"],
            b"Sec-WebSocket-Version": [b"13"],
            b"Sec-WebSocket-Key": [b"dGhlIHNhbXBsZSBub25jZQ=="],
        }
        for name, value in (headers or {}).items():
            request_headers[name.encode()] = [value.encode()]
        response = await http_client().get(
            url.replace("ws://", "http://"), headers=request_headers)
        await response.content()
        return response.code

    async def test_unauthenticated(self):
        await self.start()
        self.assertEqual(await self._status(ws_url(self.service)), 401)
        self.assertEqual(
            await self._status(ws_url(self.service, token="garbage")), 401)
        with self.assertRaises(HandshakeFailed):
            await ws_connect(self, ws_url(self.service, user=self.alice.uuid))
        self.assertEqual(self.service.realtime.hub.connection_count, 0)

    async def test_user_must_match(self):
        await self.start()
        token, _ = await self.service.parts.tokens.issue(self.alice)
        self.assertEqual(await self._status(
            ws_url(self.service, user=self.bob.uuid, token=token)), 403)

    async def test_header_token(self):
        await self.start()
        token, _ = await self.service.parts.tokens.issue(self.alice)
        client = await ws_connect(self, ws_url(self.service),
                                  headers={"Authorization": f"Bearer {token}"})
        self.assertEqual((await client.next_of("")).to, self.alice.uuid)

    async def test_cookie_from_the_proxied_https_page(self):
        """
        Behind a trusted proxy that terminates TLS, the page's origin is
        https:// although the proxy connects in plain text: a cookie
        upgrade from the server's own https origin is accepted, as the
        REST API's cookie check accepts it. The same headers from a peer
        that is not a trusted proxy are not believed.
        """
        for trusted in (["127.0.0.1"], []):
            await self.start(server_trusted_proxies=trusted)
            token, _ = await self.service.parts.tokens.issue(self.alice)
            url = ws_url(self.service)
            headers = {"Cookie": f"{self.config.auth.cookie_name}={token}",
                       "X-Forwarded-Proto": "https"}
            origin = f"https://{url.split('/')[2]}"
            if trusted:
                client = await ws_connect(self, url, headers=headers, origin=origin)
                self.assertEqual((await client.next_of("")).content, "welcome!")
                await client.close()
            else:
                self.assertEqual(await self._status(url, dict(headers, Origin=origin)), 403)
            await self.service.stopService()

    async def test_cookie_needs_allowed_origin(self):
        await self.start(server_allowed_origins=["https://chat.example.com"])
        token, _ = await self.service.parts.tokens.issue(self.alice)
        cookie = {"Cookie": f"{self.config.auth.cookie_name}={token}"}
        url = ws_url(self.service)
        own = url.replace("ws://", "http://").split("/socket.io")[0]
        self.assertEqual(await self._status(
            url, dict(cookie, Origin="https://evil.example.net")), 403)
        self.assertEqual(await self._status(url, cookie), 403)
        for origin in (own, "https://chat.example.com"):
            client = await ws_connect(self, url, headers=cookie, origin=origin)
            self.assertEqual((await client.next_of("")).content, "welcome!")
            await client.close()


class TlsTests(WebSocketTestCase):
    async def test_wss_on_the_tls_listener(self):
        """
        /socket.io is served behind the same TLS as the API: chat over
        wss://, including a fan-out and a slow-reader-safe send path.
        """
        from tests.helpers import listening_ports, make_tls_files, tls_listen

        ca, cert, key = make_tls_files(self.mktemp())
        await self.start(server_listen=[tls_listen(cert, key)])
        port = listening_ports(self.service)[0]
        clients = []
        for user in (self.alice, self.bob):
            token, _ = await self.service.parts.tokens.issue(user)
            client = await ws_connect(
                self, f"wss://localhost:{port}/socket.io?token={token}",
                ca_path=ca)
            self.assertEqual((await client.next_of("")).content, "welcome!")
            clients.append(client)
        alice, bob = clients
        alice.send(to=self.bob.uuid, content="secret", contentType=1,
                   messageType=1, clientMsgId="t-1")
        self.assertEqual((await bob.next_of("")).content, "secret")
        self.assertEqual((await alice.next_of("ack")).type, "ack")


class SyncTests(WebSocketTestCase):
    async def test_offline_then_sync(self):
        """
        Messages sent while a user was offline are replayed in order, in
        pages, then a done frame; group messages too.
        """
        await self.start(websocket_sync_page_size=2)
        group = await create_group(self.database, self.carol, "g", [self.bob])
        alice = await self.connect(self.alice)
        carol = await self.connect(self.carol)
        for n in range(5):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"c{n}")
            await alice.next_of("ack")
        carol.send(to=group.uuid, content="group", contentType=1, messageType=2)
        last_ack = await carol.next_of("ack")
        bob = await self.connect(self.bob)
        bob.send(type="sync", sinceId=0)
        replayed = [await bob.next_of("") for _ in range(6)]
        self.assertEqual([f.content for f in replayed],
                         ["m0", "m1", "m2", "m3", "m4", "group"])
        self.assertEqual(getattr(replayed[-1], "from"), group.uuid)
        self.assertEqual(replayed[0].clientMsgId, "c0")
        done = await bob.next_of("sync")
        self.assertEqual((done.type, done.content, done.id, done.more),
                         ("sync", "done", last_ack.id, False))
        bob.send(type="sync", sinceId=replayed[2].id, limit=2)
        self.assertEqual([(await bob.next_of("")).content for _ in range(2)],
                         ["m3", "m4"])
        done = await bob.next_of("sync")
        self.assertEqual((done.content, done.id, done.more),
                         ("done", replayed[4].id, True))


class RestartTests(WebSocketTestCase):
    async def acks_left(self, client):
        """
        The acks among the frames a closed client had still to read.
        """
        acks = []
        while True:
            try:
                frame = await client.next(timeout=0.5)
            except Exception:
                return acks
            if frame.type == "ack":
                acks.append(frame)

    async def test_stop_does_not_wait_for_a_reader_that_does_not_read(self):
        """
        A sync waiting for a client that does not read gives up when the
        server stops, instead of holding the stop for good.
        """
        from chatd.stores.messages import ONE_TO_ONE, NewMessage

        await self.start(websocket_sync_page_size=2)
        await self.service.parts.messages.insert_batch(
            [NewMessage(self.alice.id, f"s{n}", ONE_TO_ONE, self.bob.id, 1, f"m{n}")
             for n in range(10)], 5)
        bob = await self.connect(self.bob)
        [connection] = self.service.realtime.hub.connections_of(self.bob.id)
        connection._buffer.pauseProducing()  # as if the client stopped reading
        bob.send(type="sync", sinceId=0)
        await sleep(0.2)
        stopped = []
        self.service.stopService().addBoth(stopped.append)
        for _ in range(50):
            if stopped:
                break
            await sleep(0.1)
        self.assertEqual(stopped, [None])

    async def test_every_message_stored_at_shutdown_is_acknowledged(self):
        """
        A stopping server reads no more frames, but answers those it took:
        every message it stored is acknowledged before the connection
        closes (1001), so a client resends only what was not stored.
        """
        await self.start()
        alice = await self.connect(self.alice)
        for n in range(200):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"c{n}")
        acked = {(await alice.next_of("ack")).id}
        await self.service.stopService()
        code, _ = await alice.closed
        self.assertEqual(code, 1001)
        acked.update(ack.id for ack in await self.acks_left(alice))
        self.service = await start_server(self, self.config)
        self.database = server_database(self.service)
        stored = {m.id for m in await self.history(self.alice)}
        self.assertGreater(len(stored), 1)
        self.assertEqual(stored, acked)

    async def test_acknowledged_messages_survive_a_restart(self):
        """
        Stop the daemon while messages flow and start it again: every
        acknowledged message is in history exactly once, and a resend of one
        after the restart is acknowledged with the same id, not stored.
        """
        await self.start()
        alice = await self.connect(self.alice)
        for n in range(30):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"c{n}")
        acks = {}
        for _ in range(10):
            ack = await alice.next_of("ack")
            acks[ack.clientMsgId] = ack.id
        await self.service.stopService()
        code, _ = await alice.closed
        acks.update((ack.clientMsgId, ack.id) for ack in await self.acks_left(alice))
        self.assertIn(code, (1001, 1006))
        self.assertGreaterEqual(len(acks), 10)

        self.service = await start_server(self, self.config)
        self.database = server_database(self.service)
        stored = await self.history(self.alice)
        by_client = {}
        for message in stored:
            by_client.setdefault(message.client_msg_id, []).append(message.id)
        for client_id, message_id in acks.items():
            self.assertEqual(by_client[client_id], [message_id])
        self.assertEqual(len(stored), len(by_client))

        # The client resends everything it has no ack for (and, to check
        # dedupe, everything else too): each is stored exactly once.
        alice = await self.connect(self.alice)
        for n in range(30):
            alice.send(to=self.bob.uuid, content=f"m{n}", contentType=1,
                       messageType=1, clientMsgId=f"c{n}")
        for _ in range(30):
            ack = await alice.next_of("ack")
            if ack.clientMsgId in acks:
                self.assertEqual(ack.id, acks[ack.clientMsgId])
        stored = await self.history(self.alice)
        self.assertEqual(sorted(m.client_msg_id for m in stored),
                         sorted(f"c{n}" for n in range(30)))
        self.assertEqual([m.content for m in stored],
                         [f"m{n}" for n in range(30)])


class SlowReaderTests(WebSocketTestCase):
    async def test_slow_reader_is_cut_off(self):
        """
        A client that stops reading is closed with code 4008 once its
        backlog passes the limit, while other users keep chatting.
        """
        await self.start(websocket_max_outgoing_bytes=256 * 1024)
        admin = await create_user(self.database, "root", is_admin=True)
        root = await self.connect(admin)
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        carol = await self.connect(self.carol)
        await make_friends(self.database, self.carol, self.alice)
        hub = self.service.realtime.hub
        # Stop reading, with a small receive buffer, so that the kernel's
        # buffers (autotuned up to tens of MB) do not hide the backlog.
        import socket

        bob.transport.getHandle().setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        bob.transport.pauseProducing()
        bulk = "x" * (256 * 1024)
        latencies = []
        for n in range(400):
            if not hub.is_connected(self.bob.id):
                break
            # A large broadcast reaches everyone; only bob does not read.
            root.send(content=bulk, contentType=1)
            started = time.monotonic()
            carol.send(to=self.alice.uuid, content=f"ping {n}", contentType=1,
                       messageType=1)
            while True:
                got = await alice.next_of("")
                if got.content != bulk:
                    break
            latencies.append(time.monotonic() - started)
            self.assertEqual(got.content, f"ping {n}")
        self.assertFalse(hub.is_connected(self.bob.id),
                         "the slow reader was never cut off")
        self.assertLess(max(latencies), 5.0)
        bob.transport.resumeProducing()
        code, reason = await bob.closed
        self.assertEqual(code, 4008, reason)
        await self.assert_alive(alice)


def _hold_users_txn(txn, seconds, holding):
    """
    Keep other transactions from reading users for a while: SQLite has one
    connection to hold; MySQL takes a table lock. C{holding} is set once
    the hold is in place.
    """
    if txn.engine.name == "mysql":
        txn.execute("LOCK TABLES users WRITE")
        holding.set()
        time.sleep(seconds)
        txn.execute("UNLOCK TABLES")
    else:
        holding.set()
        time.sleep(seconds)


class StopWhileHandlingTests(WebSocketTestCase):
    async def test_frames_being_handled_finish_before_the_database_closes(self):
        """
        A frame whose handling waits for the database when the server stops
        is finished before the database closes: no error is logged, and the
        message is stored at most once.
        """
        await self.start()
        alice = await self.connect(self.alice)
        holding = threading.Event()
        held = Deferred.fromCoroutine(
            self.database.run("hold", _hold_users_txn, 1.0, holding))
        while not holding.is_set():
            await deferLater(reactor, 0.01)
        alice.send(to=self.bob.uuid, content="in flight", contentType=1,
                   messageType=1, clientMsgId="f-1")
        hub = self.service.realtime.hub
        for _ in range(500):
            if any(c._pending for c in hub.connections_of(self.alice.id)):
                break
            await deferLater(reactor, 0.01)
        self.assertTrue(any(c._pending for c in hub.connections_of(self.alice.id)))
        await self.service.stopService()
        await held
        self.service = await start_server(self, self.config)
        stored = await self.service.parts.messages.since(self.alice.id, [], 0, 10)
        self.assertIn([m.client_msg_id for m in stored], ([], ["f-1"]))


class ConnectionMemoryTests(WebSocketTestCase):
    async def test_handshake_forgotten_once_open(self):
        """
        An open connection keeps nothing of its opening handshake (whose
        query held the token), no refusal history until it has a refusal,
        and no copy of the factory's options.
        """
        await self.start()
        alice = await self.connect(self.alice)
        (connection,) = self.service.realtime.hub.connections_of(self.alice.id)
        state = vars(connection)
        self.assertEqual((connection.http_request_data, dict(connection.http_headers),
                          dict(connection.http_request_params), connection._refusals),
                         (None, {}, {}, None))
        self.assertNotIn("token=", repr(state))
        self.assertNotIn("maxMessagePayloadSize", state)
        self.assertLess(len(state), 30, sorted(state))
        await self.assert_alive(alice)

    async def test_devices_share_the_user(self):
        await self.start()
        await self.connect(self.alice)
        await self.connect(self.alice)
        first, second = self.service.realtime.hub.connections_of(self.alice.id)
        self.assertIs(first.user, second.user)
