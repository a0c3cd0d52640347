"""
Friends and look-ups by name. Friendship is mutual.
"""

from chatd import events as event_names
from chatd.errors import BadRequest, Conflict, NotFound
from chatd.handlers import validation
from chatd.handlers.common import require_self
from chatd.stores import now_ms


class Social:
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param social: a L{chatd.stores.social.SocialStore}.
    @param groups: a L{chatd.stores.groups.GroupStore}.
    @param events: the L{chatd.events.Events} to publish changes on.
    """

    def __init__(self, users, social, groups, events, clock):
        self._users = users
        self._social = social
        self._groups = groups
        self._events = events
        self._clock = clock

    async def friends(self, identity, uuid):
        """
        The caller's friends (C{uuid} must be the caller's).
        """
        await require_self(self._users, identity, uuid)
        return await self._social.friends(identity.user_id)

    async def _friend_by_name(self, identity, friend_username):
        if friend_username is None or friend_username == "":
            raise BadRequest("friendUsername: required")
        if not isinstance(friend_username, str):
            raise BadRequest("friendUsername: must be a string")
        friend = await self._users.get_by_name(friend_username.strip())
        if friend is None:
            raise NotFound("no such user")
        if friend.id == identity.user_id:
            raise BadRequest("friendUsername: you cannot befriend yourself")
        return friend

    async def add_friend(self, identity, uuid, friend_username):
        """
        Make the caller and the user named C{friend_username} friends.

        @raise Conflict: they already are.
        """
        await require_self(self._users, identity, uuid)
        friend = await self._friend_by_name(identity, friend_username)
        added = await self._social.add(
            identity.user_id, friend.id, now_ms(self._clock))
        if not added:
            raise Conflict(f"{friend.username} is already your friend")
        self._events.publish(event_names.FRIENDSHIP_ADDED,
                             user_id=identity.user_id, friend_id=friend.id)
        return friend

    async def remove_friend(self, identity, uuid, friend_username):
        """
        End the caller's friendship with C{friend_username}.

        @raise NotFound: they are not friends.
        """
        await require_self(self._users, identity, uuid)
        friend = await self._friend_by_name(identity, friend_username)
        if not await self._social.remove(identity.user_id, friend.id):
            raise NotFound(f"{friend.username} is not your friend")
        self._events.publish(event_names.FRIENDSHIP_REMOVED,
                             user_id=identity.user_id, friend_id=friend.id)

    async def find_by_name(self, name):
        """
        The user and the group whose names are exactly C{name}, either
        possibly None.
        """
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: required")
        name = validation.text(name, "name", 128)
        user = await self._users.get_by_name(name)
        group = await self._groups.get_by_name(name)
        return user, group
