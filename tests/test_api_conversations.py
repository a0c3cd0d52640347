"""
The conversation routes under /api/v1/: the list, history pages with
cursors, mark read, search, recall, edit and presence, with their
refusals, through the real Klein app (in memory) on the test database.
"""

from twisted.trial import unittest

from chatd.stores import now_ms
from chatd.stores.messages import GROUP, ONE_TO_ONE, NewMessage, conversation_key
from tests.helpers import sign_up_three

V1 = "/api/v1"


class ConversationApiTests(unittest.TestCase):
    async def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        await sign_up_three(self)
        code, answer = await self.client.call(
            "POST", "/friend", token=self.alice_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "bob"})
        self.assertEqual(code, 200, answer)
        code, answer = await self.client.call(
            "POST", f"/group/{self.alice['uuid']}", token=self.alice_token,
            json={"name": "team"})
        self.assertEqual(code, 201, answer)
        self.group = answer["data"]
        code, _ = await self.client.call(
            "POST", f"/group/join/{self.bob['uuid']}/{self.group['uuid']}",
            token=self.bob_token)
        self.assertEqual(code, 200)

    async def direct(self, sender, recipient, text, age=0):
        [stored] = await self.parts.messages.insert_batch([NewMessage(
            self.ids[sender], None, ONE_TO_ONE, self.ids[recipient], 1, text)],
            now_ms(self.reactor) - age * 1000)
        return stored.id

    async def to_group(self, sender, text):
        [stored] = await self.parts.messages.insert_batch([NewMessage(
            self.ids[sender], None, GROUP, self.group["groupId"], 1, text)],
            now_ms(self.reactor))
        return stored.id

    async def test_list_and_read(self):
        await self.direct("bob", "alice", "one")
        last = await self.direct("bob", "alice", "two")
        await self.to_group("bob", "team news")
        code, answer = await self.client.call(
            "GET", V1 + "/conversations", token=self.alice_token)
        self.assertEqual(code, 200, answer)
        items = answer["data"]["conversations"]
        self.assertEqual([(c["uuid"], c["unread"]) for c in items],
                         [(self.group["uuid"], 1), (self.bob["uuid"], 2)])
        self.assertEqual(items[1]["lastMessage"]["content"], "two")
        self.assertEqual(items[1]["messageType"], 1)
        self.assertIsNone(answer["data"]["next"])
        code, answer = await self.client.call(
            "POST", V1 + f"/conversations/{self.bob['uuid']}/read",
            token=self.alice_token, json={"id": last})
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["data"], {"uuid": self.bob["uuid"],
                                          "lastReadId": last, "unread": 0})
        code, answer = await self.client.call(
            "GET", V1 + "/conversations?limit=1", token=self.bob_token)
        self.assertEqual(answer["data"]["conversations"][0]["uuid"],
                         self.group["uuid"])
        cursor = answer["data"]["next"]
        code, answer = await self.client.call(
            "GET", V1 + f"/conversations?limit=1&before={cursor}",
            token=self.bob_token)
        [alice] = answer["data"]["conversations"]
        self.assertEqual((alice["uuid"], alice["peerReadId"]),
                         (self.alice["uuid"], last))

    async def test_read_refusals(self):
        message = await self.to_group("alice", "members only")
        code, answer = await self.client.call(
            "POST", V1 + f"/conversations/{self.group['uuid']}/read",
            token=self.carol_token, json={"id": message})
        self.assertEqual((code, answer["code"]), (403, -1))
        code, answer = await self.client.call(
            "POST", V1 + f"/conversations/{self.group['uuid']}/read",
            token=self.bob_token, json={"id": "x"})
        self.assertEqual(code, 400)
        code, answer = await self.client.call(
            "GET", V1 + "/conversations")
        self.assertEqual(code, 401)

    async def test_history_cursors(self):
        ids = [await self.direct("alice", "bob", f"m{i}") for i in range(5)]
        path = V1 + f"/conversations/{self.alice['uuid']}/messages"
        code, answer = await self.client.call(
            "GET", path + "?limit=2", token=self.bob_token)
        self.assertEqual(code, 200, answer)
        page = answer["data"]
        self.assertEqual([m["content"] for m in page["messages"]], ["m3", "m4"])
        self.assertEqual((page["before"], page["after"]), (ids[3], ids[4]))
        code, answer = await self.client.call(
            "GET", path + f"?limit=2&before={page['before']}",
            token=self.bob_token)
        self.assertEqual([m["content"] for m in answer["data"]["messages"]],
                         ["m1", "m2"])
        code, answer = await self.client.call(
            "GET", path + f"?after={ids[3]}", token=self.bob_token)
        self.assertEqual([m["content"] for m in answer["data"]["messages"]],
                         ["m4"])
        self.assertIsNone(answer["data"]["before"])
        code, answer = await self.client.call(
            "GET", V1 + f"/conversations/{self.group['uuid']}/messages",
            token=self.carol_token)
        self.assertEqual(code, 403)

    async def test_search(self):
        await self.direct("alice", "bob", "lunch tomorrow? 明天吃饭")
        await self.to_group("bob", "lunch is served")
        await self.direct("carol", "bob", "secret lunch")
        code, answer = await self.client.call(
            "GET", V1 + "/search?q=LUNCH", token=self.alice_token)
        self.assertEqual(code, 200, answer)
        self.assertEqual([m["content"] for m in answer["data"]["messages"]],
                         ["lunch is served", "lunch tomorrow? 明天吃饭"])
        code, answer = await self.client.call(
            "GET", V1 + "/search?q=%E5%90%83%E9%A5%AD&limit=1",
            token=self.bob_token)
        self.assertEqual(len(answer["data"]["messages"]), 1)
        self.assertIsNotNone(answer["data"]["next"])
        code, answer = await self.client.call(
            "GET", V1 + f"/search?q=lunch&uuid={self.group['uuid']}",
            token=self.carol_token)
        self.assertEqual(code, 403)
        code, answer = await self.client.call(
            "GET", V1 + "/search?q=", token=self.carol_token)
        self.assertEqual(code, 400)

    async def test_recall_and_edit(self):
        message = await self.direct("alice", "bob", "helo")
        code, answer = await self.client.call(
            "PUT", V1 + f"/message/{message}", token=self.alice_token,
            json={"content": "hello"})
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["data"]["content"], "hello")
        self.assertFalse(answer["data"]["recalled"])
        code, answer = await self.client.call(
            "PUT", V1 + f"/message/{message}", token=self.bob_token,
            json={"content": "hacked"})
        self.assertEqual(code, 403)
        code, answer = await self.client.call(
            "POST", V1 + f"/message/{message}/recall", token=self.bob_token)
        self.assertEqual(code, 403)
        code, answer = await self.client.call(
            "POST", V1 + f"/message/{message}/recall", token=self.carol_token)
        self.assertEqual(code, 403)
        code, answer = await self.client.call(
            "POST", V1 + f"/message/{message}/recall", token=self.alice_token)
        self.assertEqual(code, 200, answer)
        self.assertTrue(answer["data"]["recalled"])
        code, answer = await self.client.call(
            "GET", V1 + f"/conversations/{self.alice['uuid']}/messages",
            token=self.bob_token)
        [item] = answer["data"]["messages"]
        self.assertEqual((item["content"], item["recalled"]), ("", True))
        self.assertIsNotNone(item["editedAt"])
        code, answer = await self.client.call(
            "POST", V1 + f"/message/{message}/recall", token=self.alice_token)
        self.assertEqual(code, 409)

    async def test_window_expired(self):
        message = await self.direct("alice", "bob", "old", age=121)
        code, answer = await self.client.call(
            "POST", V1 + f"/message/{message}/recall", token=self.alice_token)
        self.assertEqual(code, 403)
        self.assertIn("within 120 seconds", answer["msg"])
        code, answer = await self.client.call(
            "PUT", V1 + f"/message/{message}", token=self.alice_token,
            json={"content": "new"})
        self.assertEqual(code, 403)

    async def test_presence(self):
        await self.parts.conversations.went_offline(self.ids["bob"], 1_000)
        code, answer = await self.client.call(
            "GET", V1 + f"/presence?uuids={self.bob['uuid']}",
            token=self.alice_token)
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["data"], [{
            "uuid": self.bob["uuid"], "username": "bob", "online": False,
            "lastSeen": "1970-01-01T00:00:01.000Z"}])
        code, answer = await self.client.call(
            "GET", V1 + f"/presence?uuids={self.bob['uuid']}",
            token=self.carol_token)
        self.assertEqual(code, 403)

    async def test_limit_out_of_bounds(self):
        """
        A limit of 0 or less is refused with 400, not taken for the default.
        """
        await self.direct("alice", "bob", "hi")
        bob = self.bob["uuid"]
        for path in (f"{V1}/conversations", f"{V1}/conversations/{bob}/messages",
                     f"{V1}/search?q=hi"):
            for limit in (0, -1):
                separator = "&" if "?" in path else "?"
                code, answer = await self.client.call(
                    "GET", f"{path}{separator}limit={limit}", token=self.alice_token)
                self.assertEqual(code, 400, (path, limit, answer))
                self.assertTrue(answer["msg"].startswith("limit: must be between 1 and"),
                                answer)

    async def test_numbers_and_text_no_database_can_hold(self):
        """
        Ids past a signed 64-bit integer and strings holding a lone
        surrogate are refused with 400, not stored and not a 500.
        """
        mid = await self.direct("alice", "bob", "hi")
        huge = 2**63
        bob = self.bob["uuid"]
        calls = [
            ("GET", f"/message?MessageType=1&Uuid={self.alice['uuid']}"
             f"&FriendUsername=bob&before={huge}", None),
            ("GET", f"{V1}/conversations/{bob}/messages?after={huge}", None),
            ("GET", f"{V1}/conversations?before={huge}~d:1:2", None),
            ("POST", f"/message/{huge}/recall", None),
            ("POST", f"{V1}/conversations/{bob}/read", {"id": huge}),
            ("GET", f"{V1}/search?q=hi&before={huge}", None),
        ]
        for method, path, body in calls:
            code, answer = await self.client.call(method, path, token=self.alice_token,
                                                  json=body)
            self.assertEqual(code, 400, (path, answer))
        response, body = await self.client.request(
            "PUT", f"/message/{mid}", token=self.alice_token,
            headers={"Content-Type": "application/json"},
            data=b'{"content": "ok \\ud800"}')
        self.assertEqual(response.code, 400, body)
        self.assertIn(b"lone surrogate", body)
        [stored] = await self.parts.messages.conversation_page(
            conversation_key(ONE_TO_ONE, self.ids["alice"], self.ids["bob"]))
        self.assertEqual(stored.content, "hi")
