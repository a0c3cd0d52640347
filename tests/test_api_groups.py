"""
Groups over REST: create, list, join, leave, members, the owner's powers,
and each refusal.
"""

import os

from twisted.trial import unittest

from chatd import events
from chatd.stores.messages import GROUP, ONE_TO_ONE, NewMessage
from tests.helpers import multipart, sign_up_three
from tests.test_api_files import PNG
from tests.test_api_social import NOBODY, record


class GroupTests(unittest.TestCase):
    async def _setup(self):
        await sign_up_three(self)

    async def create(self, name="hikers", **extra):
        code, answer = await self.client.call(
            "POST", "/group/" + self.alice["uuid"], token=self.alice_token,
            json=dict(name=name, **extra))
        self.assertEqual(code, 201, answer)
        return answer["data"]

    async def join(self, user, token, group):
        return await self.client.call(
            "POST", f"/group/join/{user['uuid']}/{group['uuid']}", token=token)

    async def members(self, group, token):
        code, answer = await self.client.call(
            "GET", "/group/user/" + group["uuid"], token=token)
        if code == 200:
            return [m["username"] for m in answer["data"]]
        return code, answer["msg"]

    async def test_create_and_list(self):
        await self._setup()
        seen = record(self.parts, events.MEMBER_JOINED)
        group = await self.create()  # go-chat-web sends only {name}
        self.assertEqual(group["name"], "hikers")
        self.assertEqual(group["notice"], "")
        self.assertTrue(group["isOwner"])
        code, answer = await self.client.call(
            "GET", "/group/" + self.alice["uuid"], token=self.alice_token)
        self.assertEqual(code, 200)
        [listed] = answer["data"]
        self.assertEqual(set(listed), {"uuid", "groupId", "createAt", "name",
                                       "notice", "isOwner"})
        self.assertEqual(listed["uuid"], group["uuid"])
        self.assertEqual(await self.members(group, self.alice_token), ["alice"])
        stored = await self.parts.group_store.get_by_uuid(group["uuid"])
        self.assertEqual(seen, [(events.MEMBER_JOINED, {
            "group_id": stored.id, "user_id": stored.owner_id})])

    async def test_create_refusals(self):
        await self._setup()
        cases = [
            ("/group/" + self.bob["uuid"], {"name": "x"}, 403),
            ("/group/" + NOBODY, {"name": "x"}, 404),
            ("/group/" + self.alice["uuid"], {}, 400),
            ("/group/" + self.alice["uuid"], {"name": "   "}, 400),
            ("/group/" + self.alice["uuid"], {"name": "n" * 65}, 400),
            ("/group/" + self.alice["uuid"], {"name": 5}, 400),
            ("/group/" + self.alice["uuid"], {"name": "ok", "notice": "n" * 1025},
             400),
        ]
        for path, body, status in cases:
            code, answer = await self.client.call(
                "POST", path, token=self.alice_token, json=body)
            self.assertEqual((code, answer["code"]), (status, -1), body)
        code, answer = await self.client.call(
            "POST", "/group/" + self.alice["uuid"], token=self.alice_token,
            json={"name": "n" * 65})
        self.assertEqual(answer["msg"], "name: must be at most 64 characters")
        code, answer = await self.client.call(
            "GET", "/group/" + self.bob["uuid"], token=self.alice_token)
        self.assertEqual(code, 403)
        code, answer = await self.client.call(
            "GET", "/group/" + NOBODY, token=self.alice_token)
        self.assertEqual(code, 404)

    async def test_join(self):
        await self._setup()
        group = await self.create()
        seen = record(self.parts, events.MEMBER_JOINED)
        code, answer = await self.join(self.bob, self.bob_token, group)
        self.assertEqual((code, answer["data"]), (200, None))
        self.assertEqual(await self.members(group, self.bob_token),
                         ["alice", "bob"])
        self.assertEqual(len(seen), 1)
        code, answer = await self.join(self.bob, self.bob_token, group)
        self.assertEqual(code, 409)
        code, answer = await self.join(self.carol, self.bob_token, group)
        self.assertEqual((code, answer["msg"]),
                         (403, "you may only act for your own account"))
        code, answer = await self.join(self.bob, self.bob_token,
                                       {"uuid": NOBODY})
        self.assertEqual((code, answer["msg"]), (404, "no such group"))
        code, _ = await self.join({"uuid": NOBODY}, self.bob_token, group)
        self.assertEqual(code, 404)
        code, _ = await self.client.call(
            "GET", "/group/" + self.bob["uuid"], token=self.bob_token)
        self.assertEqual(code, 200)

    async def test_members_only(self):
        await self._setup()
        group = await self.create()
        self.assertEqual(await self.members(group, self.carol_token),
                         (403, "only members of the group may do this"))
        self.assertEqual(await self.members({"uuid": NOBODY}, self.carol_token),
                         (404, "no such group"))

    async def test_leave(self):
        await self._setup()
        group = await self.create()
        await self.join(self.bob, self.bob_token, group)
        seen = record(self.parts, events.MEMBER_LEFT)
        path = f"/group/leave/{self.bob['uuid']}/{group['uuid']}"
        code, _ = await self.client.call("POST", path, token=self.bob_token)
        self.assertEqual(code, 200)
        self.assertEqual(await self.members(group, self.alice_token), ["alice"])
        self.assertEqual(len(seen), 1)
        code, _ = await self.client.call("POST", path, token=self.bob_token)
        self.assertEqual(code, 404)
        code, answer = await self.client.call(
            "POST", f"/group/leave/{self.alice['uuid']}/{group['uuid']}",
            token=self.alice_token)
        self.assertEqual((code, answer["msg"]),
                         (403, "the owner cannot leave the group; delete it"))
        code, _ = await self.client.call(
            "POST", f"/group/leave/{self.alice['uuid']}/{group['uuid']}",
            token=self.bob_token)
        self.assertEqual(code, 403)

    async def test_update_by_owner_only(self):
        await self._setup()
        group = await self.create()
        await self.join(self.bob, self.bob_token, group)
        code, answer = await self.client.call(
            "PUT", "/group/" + group["uuid"], token=self.alice_token,
            json={"name": "climbers", "notice": "meet at 9"})
        self.assertEqual(code, 200)
        self.assertEqual((answer["data"]["name"], answer["data"]["notice"]),
                         ("climbers", "meet at 9"))
        code, answer = await self.client.call(
            "PUT", "/group/" + group["uuid"], token=self.bob_token,
            json={"name": "mine now"})
        self.assertEqual((code, answer["msg"]),
                         (403, "only the owner of the group may do this"))
        for body in ({}, {"name": ""}, {"notice": "n" * 1025}, {"name": 3}):
            code, _ = await self.client.call(
                "PUT", "/group/" + group["uuid"], token=self.alice_token,
                json=body)
            self.assertEqual(code, 400, body)
        code, _ = await self.client.call(
            "PUT", "/group/" + NOBODY, token=self.alice_token, json={"name": "x"})
        self.assertEqual(code, 404)

    async def test_remove_member(self):
        await self._setup()
        group = await self.create()
        await self.join(self.bob, self.bob_token, group)
        await self.join(self.carol, self.carol_token, group)
        seen = record(self.parts, events.MEMBER_LEFT)
        code, _ = await self.client.call(
            "DELETE", f"/group/user/{group['uuid']}/{self.bob['uuid']}",
            token=self.carol_token)
        self.assertEqual(code, 403)
        code, _ = await self.client.call(
            "DELETE", f"/group/user/{group['uuid']}/{self.bob['uuid']}",
            token=self.alice_token)
        self.assertEqual(code, 200)
        self.assertEqual(await self.members(group, self.alice_token),
                         ["alice", "carol"])
        self.assertEqual(len(seen), 1)
        for uuid, status in [(self.bob["uuid"], 404), (NOBODY, 404),
                             (self.alice["uuid"], 400)]:
            code, _ = await self.client.call(
                "DELETE", f"/group/user/{group['uuid']}/{uuid}",
                token=self.alice_token)
            self.assertEqual(code, status, uuid)

    async def test_removed_member_stays_out_until_the_owner_lifts_it(self):
        """
        A member the owner removed cannot join again (joining is open);
        one who left may. The owner alone may lift the removal.
        """
        await self._setup()
        group = await self.create()
        for user, token in ((self.bob, self.bob_token), (self.carol, self.carol_token)):
            await self.join(user, token, group)
        await self.client.call("DELETE", f"/group/user/{group['uuid']}/{self.bob['uuid']}",
                               token=self.alice_token)
        await self.client.call("POST", f"/group/leave/{self.carol['uuid']}/{group['uuid']}",
                               token=self.carol_token)
        code, answer = await self.join(self.bob, self.bob_token, group)
        self.assertEqual((code, answer["msg"]),
                         (403, "the group's owner removed you from it"))
        code, _ = await self.join(self.carol, self.carol_token, group)
        self.assertEqual(code, 200)
        lift = f"/group/removed/{group['uuid']}/{self.bob['uuid']}"
        for token, status in ((self.bob_token, 403), (self.carol_token, 403)):
            code, _ = await self.client.call("DELETE", lift, token=token)
            self.assertEqual(code, status)
        code, _ = await self.client.call(
            "DELETE", f"/group/removed/{group['uuid']}/{self.carol['uuid']}",
            token=self.alice_token)
        self.assertEqual(code, 404)
        code, _ = await self.client.call("DELETE", lift, token=self.alice_token)
        self.assertEqual(code, 200)
        code, _ = await self.join(self.bob, self.bob_token, group)
        self.assertEqual(code, 200)
        self.assertEqual(sorted(await self.members(group, self.alice_token)),
                         ["alice", "bob", "carol"])

    async def test_delete_removes_attachments_nothing_else_uses(self):
        """
        Deleting a group deletes the files its messages carried (record and
        bytes: no longer served), but not one that a message elsewhere or
        an avatar still uses.
        """
        await self._setup()
        group = await self.create()
        await self.join(self.bob, self.bob_token, group)
        bob_id = (await self.parts.users.get_by_uuid(self.bob["uuid"])).id
        alice_id = (await self.parts.users.get_by_uuid(self.alice["uuid"])).id
        only_here = await self.parts.files.save(bob_id, PNG)
        also_sent = await self.parts.files.save(bob_id, PNG)
        body, headers = multipart([("uuid", self.bob["uuid"])], [("file", "me.png", PNG)])
        code, answer = await self.client.call("POST", "/file", token=self.bob_token,
                                              data=body, headers=headers)
        avatar = answer["data"]
        await self.parts.messages.insert_batch(
            [NewMessage(bob_id, f"m{i}", GROUP, group["groupId"], 2, "", url)
             for i, url in enumerate([only_here.name, also_sent.name, avatar,
                                      only_here.name])]
            + [NewMessage(bob_id, "d1", ONE_TO_ONE, alice_id, 2, "", also_sent.name)], 5)
        code, _ = await self.client.call(
            "DELETE", "/group/" + group["uuid"], token=self.alice_token)
        self.assertEqual(code, 200)
        for name, served in [(only_here.name, 404), (also_sent.name, 200), (avatar, 200)]:
            response, _ = await self.client.request("GET", "/file/" + name)
            self.assertEqual(response.code, served, name)
            self.assertEqual(os.path.exists(self.parts.files.path_of(name)),
                             served == 200, name)

    async def test_delete(self):
        await self._setup()
        group = await self.create()
        await self.join(self.bob, self.bob_token, group)
        bob_id = (await self.parts.users.get_by_uuid(self.bob["uuid"])).id
        await self.parts.messages.insert_batch(
            [NewMessage(bob_id, "m1", GROUP, group["groupId"], 1, "hello")], 5)
        seen = record(self.parts, events.GROUP_DELETED)
        code, _ = await self.client.call(
            "DELETE", "/group/" + group["uuid"], token=self.bob_token)
        self.assertEqual(code, 403)
        code, _ = await self.client.call(
            "DELETE", "/group/" + NOBODY, token=self.alice_token)
        self.assertEqual(code, 404)
        code, _ = await self.client.call(
            "DELETE", "/group/" + group["uuid"], token=self.alice_token)
        self.assertEqual(code, 200)
        self.assertEqual(len(seen), 1)
        self.assertEqual(await self.members(group, self.alice_token),
                         (404, "no such group"))
        code, answer = await self.client.call(
            "GET", "/group/" + self.bob["uuid"], token=self.bob_token)
        self.assertEqual(answer["data"], [])
        self.assertEqual(await self.parts.messages.conversation_page(
            f"g:{group['groupId']}"), [])
