"""
GET /message: one-to-one history for the two people in it, group history
for members, pages, and each refusal.
"""

from twisted.trial import unittest

from chatd.stores.messages import GROUP, ONE_TO_ONE, NewMessage
from tests.helpers import sign_up_three
from tests.test_api_social import NOBODY


class HistoryTests(unittest.TestCase):
    async def _setup(self):
        await sign_up_three(self)

    async def store(self, messages, when=1_000):
        return await self.parts.messages.insert_batch(messages, when)

    async def direct(self, sender, recipient, text, content_type=1, url=""):
        [stored] = await self.store([NewMessage(
            self.ids[sender], None, ONE_TO_ONE, self.ids[recipient],
            content_type, text, url)])
        return stored.id

    async def history(self, token, query):
        return await self.client.call("GET", "/message?" + query, token=token)

    async def test_one_to_one(self):
        await self._setup()
        await self.direct("alice", "bob", "hi bob")
        await self.direct("bob", "alice", "hi alice")
        await self.direct("alice", "carol", "not for bob")
        query = (f"Uuid={self.alice['uuid']}&FriendUsername=bob"
                 "&MessageType=1")
        code, answer = await self.history(self.alice_token, query)
        self.assertEqual(code, 200)
        items = answer["data"]
        self.assertEqual([m["content"] for m in items], ["hi bob", "hi alice"])
        first = items[0]
        self.assertEqual(first["fromUsername"], "alice")
        self.assertEqual(first["toUsername"], "bob")
        self.assertEqual(first["fromUserId"], self.ids["alice"])
        self.assertEqual(first["toUserId"], self.ids["bob"])
        self.assertEqual(first["fromUuid"], self.alice["uuid"])
        self.assertEqual(first["contentType"], 1)
        self.assertEqual(first["createAt"], "1970-01-01T00:00:01.000Z")
        self.assertTrue({"id", "avatar", "url"} <= set(first))
        # Bob sees the same conversation; lower-case parameters work too.
        code, answer = await self.history(
            self.bob_token,
            f"uuid={self.bob['uuid']}&friendUsername=alice&messageType=1")
        self.assertEqual([m["content"] for m in answer["data"]],
                         ["hi bob", "hi alice"])

    async def test_pages(self):
        await self._setup()
        ids = [await self.direct("alice", "bob", f"m{i}") for i in range(7)]
        base = f"Uuid={self.alice['uuid']}&FriendUsername=bob&MessageType=1"
        code, answer = await self.history(self.alice_token, base + "&limit=3")
        self.assertEqual([m["content"] for m in answer["data"]],
                         ["m4", "m5", "m6"])
        code, answer = await self.history(
            self.alice_token, base + f"&limit=3&before={ids[4]}")
        self.assertEqual([m["content"] for m in answer["data"]],
                         ["m1", "m2", "m3"])
        code, answer = await self.history(
            self.alice_token, base + f"&limit=2&after={ids[1]}")
        self.assertEqual([m["content"] for m in answer["data"]], ["m2", "m3"])
        for extra, message in [("&limit=0", "limit: must be between 1 and 200"),
                               ("&limit=201", "limit: must be between 1 and 200"),
                               ("&limit=x", "limit: must be an integer"),
                               ("&before=1&after=2",
                                "before: give before or after, not both")]:
            code, answer = await self.history(self.alice_token, base + extra)
            self.assertEqual((code, answer["msg"]), (400, message), extra)

    async def test_one_to_one_refusals(self):
        await self._setup()
        await self.direct("alice", "bob", "private")
        cases = [
            (f"Uuid={self.alice['uuid']}&FriendUsername=bob&MessageType=1", 403),
            (f"Uuid={NOBODY}&FriendUsername=bob&MessageType=1", 404),
            (f"Uuid={self.carol['uuid']}&FriendUsername=nobody&MessageType=1",
             404),
            (f"Uuid={self.carol['uuid']}&MessageType=1", 400),
            (f"Uuid={self.carol['uuid']}&FriendUsername=bob", 400),
            (f"Uuid={self.carol['uuid']}&FriendUsername=bob&MessageType=3", 400),
            (f"Uuid={self.carol['uuid']}&FriendUsername=bob&MessageType=x", 400),
        ]
        for query, status in cases:
            code, answer = await self.history(self.carol_token, query)
            self.assertEqual((code, answer["code"]), (status, -1), query)
        # Carol's own conversation with Bob is empty, not Alice's.
        code, answer = await self.history(
            self.carol_token,
            f"Uuid={self.carol['uuid']}&FriendUsername=bob&MessageType=1")
        self.assertEqual((code, answer["data"]), (200, []))

    async def test_group_members_only(self):
        await self._setup()
        code, created = await self.client.call(
            "POST", "/group/" + self.alice["uuid"], token=self.alice_token,
            json={"name": "hikers"})
        group = created["data"]
        await self.client.call(
            "POST", f"/group/join/{self.bob['uuid']}/{group['uuid']}",
            token=self.bob_token)
        await self.store([NewMessage(self.ids["bob"], "c1", GROUP,
                                     group["groupId"], 1, "hello group")])
        query = f"Uuid={group['uuid']}&MessageType=2"
        code, answer = await self.history(self.alice_token, query)
        self.assertEqual(code, 200)
        [message] = answer["data"]
        self.assertEqual(message["content"], "hello group")
        self.assertEqual(message["toUuid"], group["uuid"])
        self.assertEqual(message["messageType"], 2)
        code, answer = await self.history(self.carol_token, query)
        self.assertEqual((code, answer["msg"]),
                         (403, "only members of the group may do this"))
        code, answer = await self.history(
            self.carol_token, f"Uuid={NOBODY}&MessageType=2")
        self.assertEqual((code, answer["msg"]), (404, "no such group"))
