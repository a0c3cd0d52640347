"""
Friends over REST: add, list, remove; mutual; each refusal.
"""

from twisted.trial import unittest

from chatd import events
from tests.helpers import sign_up_three

NOBODY = "00000000-0000-0000-0000-000000000000"


def record(parts, *names):
    seen = []
    for name in names:
        parts.events.subscribe(
            name, lambda _name=name, **details: seen.append((_name, details)))
    return seen


class FriendTests(unittest.TestCase):
    async def _three(self):
        await sign_up_three(self)

    async def friends_of(self, user, token):
        code, answer = await self.client.call(
            "GET", "/user?uuid=" + user["uuid"], token=token)
        self.assertEqual(code, 200)
        return [f["username"] for f in answer["data"]]

    async def test_add_is_mutual(self):
        await self._three()
        seen = record(self.parts, events.FRIENDSHIP_ADDED)
        code, answer = await self.client.call(
            "POST", "/friend", token=self.alice_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "bob"})
        self.assertEqual((code, answer), (200, {"code": 0, "msg": "SUCCESS",
                                                "data": None}))
        self.assertEqual(await self.friends_of(self.alice, self.alice_token),
                         ["bob"])
        self.assertEqual(await self.friends_of(self.bob, self.bob_token),
                         ["alice"])
        self.assertEqual(await self.friends_of(self.carol, self.carol_token), [])
        alice_id = (await self.parts.users.get_by_uuid(self.alice["uuid"])).id
        bob_id = (await self.parts.users.get_by_uuid(self.bob["uuid"])).id
        self.assertEqual(seen, [(events.FRIENDSHIP_ADDED,
                                 {"user_id": alice_id, "friend_id": bob_id})])
        self.assertTrue(await self.parts.social_store.are_friends(bob_id, alice_id))

    async def test_list_fields(self):
        await self._three()
        await self.client.call(
            "POST", "/friend", token=self.alice_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "bob"})
        code, answer = await self.client.call(
            "GET", "/user?uuid=" + self.alice["uuid"], token=self.alice_token)
        [friend] = answer["data"]
        self.assertEqual(friend["uuid"], self.bob["uuid"])
        self.assertEqual(set(friend),
                         {"uuid", "username", "nickname", "avatar", "createAt"})

    async def test_add_refusals(self):
        await self._three()
        await self.client.call(
            "POST", "/friend", token=self.alice_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "bob"})
        cases = [
            ({"uuid": self.alice["uuid"], "friendUsername": "alice"}, 400,
             "friendUsername: you cannot befriend yourself"),
            ({"uuid": self.alice["uuid"], "friendUsername": "bob"}, 409,
             "bob is already your friend"),
            ({"uuid": self.alice["uuid"], "friendUsername": "nobody"}, 404,
             "no such user"),
            ({"uuid": self.bob["uuid"], "friendUsername": "carol"}, 403,
             "you may only act for your own account"),
            ({"uuid": NOBODY, "friendUsername": "carol"}, 404, "no such user"),
            ({"uuid": self.alice["uuid"]}, 400, "friendUsername: required"),
            ({"friendUsername": "carol"}, 400, "uuid: required"),
            ({"uuid": self.alice["uuid"], "friendUsername": 7}, 400,
             "friendUsername: must be a string"),
            ({"uuid": ["x"], "friendUsername": "carol"}, 400,
             "uuid: must be a string"),
        ]
        for body, status, message in cases:
            code, answer = await self.client.call(
                "POST", "/friend", token=self.alice_token, json=body)
            self.assertEqual((code, answer["msg"]), (status, message), body)
        self.assertEqual(await self.friends_of(self.carol, self.carol_token), [])

    async def test_list_refusals(self):
        await self._three()
        for query, status in [("?uuid=" + self.bob["uuid"], 403),
                              ("?uuid=" + NOBODY, 404), ("", 400)]:
            code, answer = await self.client.call(
                "GET", "/user" + query, token=self.alice_token)
            self.assertEqual((code, answer["code"]), (status, -1), query)

    async def test_remove(self):
        await self._three()
        await self.client.call(
            "POST", "/friend", token=self.alice_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "bob"})
        seen = record(self.parts, events.FRIENDSHIP_REMOVED)
        code, _ = await self.client.call(
            "DELETE", "/friend", token=self.bob_token,
            json={"uuid": self.bob["uuid"], "friendUsername": "alice"})
        self.assertEqual(code, 200)
        self.assertEqual(await self.friends_of(self.alice, self.alice_token), [])
        self.assertEqual(await self.friends_of(self.bob, self.bob_token), [])
        self.assertEqual([name for name, _ in seen], [events.FRIENDSHIP_REMOVED])
        code, answer = await self.client.call(
            "DELETE", "/friend", token=self.bob_token,
            json={"uuid": self.bob["uuid"], "friendUsername": "alice"})
        self.assertEqual((code, answer["msg"]), (404, "alice is not your friend"))
        code, _ = await self.client.call(
            "DELETE", "/friend", token=self.bob_token,
            json={"uuid": self.alice["uuid"], "friendUsername": "carol"})
        self.assertEqual(code, 403)
