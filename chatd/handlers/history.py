"""
Message history over REST (C{GET /message}): one-to-one history for the
two people in it, group history for the group's members, in pages.
"""

from chatd.errors import BadRequest, NotFound
from chatd.handlers.common import require_self
from chatd.stores.messages import GROUP, ONE_TO_ONE, conversation_key

DEFAULT_PAGE = 50
MAX_PAGE = 200


class History:
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param groups: the L{chatd.handlers.groups.Groups} handler.
    @param messages: a L{chatd.stores.messages.MessageStore}.
    """

    def __init__(self, users, groups, messages):
        self._users = users
        self._groups = groups
        self._messages = messages

    async def page(self, identity, uuid, message_type, friend_username=None,
                   before=None, after=None, limit=DEFAULT_PAGE):
        """
        A page of a conversation, oldest first: the newest C{limit}
        messages, or those just below C{before}, or those just above
        C{after} (message ids).

        @return: a list of L{chatd.stores.messages.StoredMessage}.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}")
        if before is not None and after is not None:
            raise BadRequest("before: give before or after, not both")
        if message_type == ONE_TO_ONE:
            await require_self(self._users, identity, uuid, "Uuid")
            if not friend_username:
                raise BadRequest("FriendUsername: required")
            friend = await self._users.get_by_name(friend_username)
            if friend is None:
                raise NotFound("no such user")
            conversation = conversation_key(
                ONE_TO_ONE, identity.user_id, friend.id)
        elif message_type == GROUP:
            group = await self._groups.get_as_member(identity, uuid)
            conversation = conversation_key(GROUP, identity.user_id, group.id)
        else:
            raise BadRequest("MessageType: must be 1 (one-to-one) or 2 (group)")
        if after is not None:
            return await self._messages.conversation_after(
                conversation, after, limit)
        page = await self._messages.conversation_page(
            conversation, before, limit)
        return list(reversed(page))
