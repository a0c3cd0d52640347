"""
Tests for L{chatd.handlers.addressing}: the cached and the loading paths
decide alike.
"""

from twisted.trial.unittest import TestCase

from chatd.errors import Forbidden, NotFound
from chatd.handlers.addressing import resolve, resolve_cached
from chatd.protocol import frames


class _Thing:
    def __init__(self, id, uuid, username=""):
        self.id, self.uuid, self.username = id, uuid, username


class FakeHub:
    """
    The Hub's routing lookups over dicts; C{cached} says whether the
    C{cached_*} lookups see them yet.
    """

    def __init__(self):
        self.users, self.groups, self.members, self.friends = {}, {}, {}, {}
        self.cached = True

    def cached_user_by_uuid(self, uuid):
        return self.users.get(uuid) if self.cached else None

    def cached_group_by_uuid(self, uuid):
        return self.groups.get(uuid) if self.cached else None

    def cached_group_members(self, group_id):
        return self.members.get(group_id) if self.cached else None

    def cached_friend_ids(self, user_id):
        return self.friends.get(user_id) if self.cached else None

    async def user_by_uuid(self, uuid):
        return self.users.get(uuid)

    async def group_by_uuid(self, uuid):
        return self.groups.get(uuid)

    async def group_members(self, group_id):
        return self.members.get(group_id, set())

    async def friend_ids(self, user_id):
        return self.friends.get(user_id, set())


class AddressingTests(TestCase):
    def setUp(self):
        self.hub = hub = FakeHub()
        self.alice, self.bob, self.carol = (
            _Thing(1, "ua", "alice"), _Thing(2, "ub", "bob"), _Thing(3, "uc", "carol"))
        for user in (self.alice, self.bob, self.carol):
            hub.users[user.uuid] = user
        hub.friends = {1: {2}, 2: {1}, 3: set()}
        self.group = _Thing(10, "ug")
        hub.groups["ug"] = self.group
        hub.members[10] = {1, 2}

    async def _both(self, sender, to, message_type, allow_self=False):
        """
        The outcome of both paths: an addressee's (peer, group) or the
        error code, which must agree. (An unknown uuid is never cached:
        the cached path leaves it to the loading one.)
        """
        outcomes = []
        for decide in (resolve_cached, resolve):
            try:
                result = decide(self.hub, sender, to, message_type, allow_self)
                if decide is resolve:
                    result = await result
                outcomes.append(None if result is None else (result.peer, result.group))
            except (Forbidden, NotFound) as error:
                outcomes.append(error.frame_code)
        if outcomes[0] is None:
            self.assertEqual(to, "ux")
        else:
            self.assertEqual(outcomes[0], outcomes[1])
        return outcomes[1]

    async def test_decisions_agree(self):
        one, group = frames.ONE_TO_ONE, frames.GROUP
        self.assertEqual(await self._both(self.alice, "ub", one), (self.bob, None))
        self.assertEqual(await self._both(self.alice, "uc", one), "not_friend")
        self.assertEqual(await self._both(self.alice, "ux", one), "unknown_recipient")
        self.assertEqual(await self._both(self.carol, "uc", one, allow_self=True),
                         (self.carol, None))
        self.assertEqual(await self._both(self.carol, "uc", one), "not_friend")
        self.assertEqual(await self._both(self.bob, "ug", group), (None, self.group))
        self.assertEqual(await self._both(self.carol, "ug", group), "not_member")
        self.assertEqual(await self._both(self.carol, "ux", group), "unknown_group")

    async def test_overlong_uuid_not_looked_up(self):
        """
        A C{to} longer than any uuid is refused as unknown without a
        lookup (a frame may carry megabytes there).
        """
        looked_up = []
        self.hub.user_by_uuid = self.hub.group_by_uuid = (
            lambda uuid: looked_up.append(uuid))
        long_uuid = "u" * 37
        for message_type, code in ((frames.ONE_TO_ONE, "unknown_recipient"),
                                   (frames.GROUP, "unknown_group")):
            with self.assertRaises(NotFound) as caught:
                await resolve(self.hub, self.alice, long_uuid, message_type)
            self.assertEqual(caught.exception.frame_code, code)
        self.assertEqual(looked_up, [])

    def test_cold_caches(self):
        """
        Whatever is not cached yet sends the caller to the loading path.
        """
        self.hub.cached = False
        for to, message_type in [("ub", frames.ONE_TO_ONE), ("ug", frames.GROUP)]:
            self.assertIsNone(resolve_cached(self.hub, self.alice, to, message_type))

    async def test_changes_seen_through_the_cache(self):
        """
        An unfriending or a departure the cache has taken in is refused
        on the cached path at once.
        """
        self.hub.friends[1].discard(2)
        self.hub.members[10].discard(2)
        self.assertEqual(await self._both(self.alice, "ub", frames.ONE_TO_ONE),
                         "not_friend")
        self.assertEqual(await self._both(self.bob, "ug", frames.GROUP), "not_member")
