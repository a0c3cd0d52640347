"""
Groups: creation, membership, and the owner's powers.
"""

import uuid as uuid_module

from chatd import events as event_names
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.handlers import validation
from chatd.handlers.common import require_self
from chatd.stores import now_ms
from chatd.stores.groups import ALREADY_MEMBER, REMOVED


class Groups:
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param groups: a L{chatd.stores.groups.GroupStore}.
    @param events: the L{chatd.events.Events} to publish changes on.
    @param files: the L{chatd.files.FileStore} holding the attachments.
    """

    def __init__(self, users, groups, events, clock, files):
        self._users = users
        self._groups = groups
        self._events = events
        self._clock = clock
        self._files = files

    async def get(self, group_uuid, field="groupUuid"):
        """
        @raise NotFound: no such group.
        """
        if not group_uuid or not isinstance(group_uuid, str):
            raise BadRequest(f"{field}: required")
        group = await self._groups.get_by_uuid(group_uuid)
        if group is None:
            raise NotFound("no such group")
        return group

    async def get_as_member(self, identity, group_uuid):
        """
        A group the caller is a member of.

        @raise NotFound: no such group.
        @raise Forbidden: the caller is not a member.
        """
        group = await self.get(group_uuid)
        if not await self._groups.is_member(group.id, identity.user_id):
            raise Forbidden("only members of the group may do this")
        return group

    async def _get_as_owner(self, identity, group_uuid):
        group = await self.get(group_uuid)
        if group.owner_id != identity.user_id:
            raise Forbidden("only the owner of the group may do this")
        return group

    async def mine(self, identity, uuid):
        """
        The groups the caller belongs to (C{uuid} must be the caller's).
        """
        await require_self(self._users, identity, uuid)
        return await self._groups.groups_of(identity.user_id)

    async def create(self, identity, uuid, name, notice=""):
        """
        Create a group owned by the caller, who is its first member.
        """
        await require_self(self._users, identity, uuid)
        name = validation.group_name(name)
        notice = validation.group_notice(notice)
        group = await self._groups.create(
            str(uuid_module.uuid4()), identity.user_id, name, notice,
            now_ms(self._clock))
        self._events.publish(event_names.MEMBER_JOINED, group_id=group.id,
                             user_id=identity.user_id)
        return group

    async def join(self, identity, user_uuid, group_uuid):
        """
        @raise Conflict: the caller already is a member.
        @raise Forbidden: the owner removed the caller from the group.
        """
        await require_self(self._users, identity, user_uuid, "userUuid")
        group = await self.get(group_uuid)
        joined = await self._groups.join(group.id, identity.user_id, now_ms(self._clock))
        if joined == ALREADY_MEMBER:
            raise Conflict("you already are a member of this group")
        if joined == REMOVED:
            raise Forbidden("the group's owner removed you from it")
        self._events.publish(event_names.MEMBER_JOINED, group_id=group.id,
                             user_id=identity.user_id)
        return group

    async def leave(self, identity, user_uuid, group_uuid):
        """
        @raise Forbidden: the owner cannot leave (they may delete the group).
        @raise NotFound: the caller is not a member.
        """
        await require_self(self._users, identity, user_uuid, "userUuid")
        group = await self.get(group_uuid)
        if group.owner_id == identity.user_id:
            raise Forbidden("the owner cannot leave the group; delete it")
        if not await self._groups.leave(group.id, identity.user_id):
            raise NotFound("you are not a member of this group")
        self._events.publish(event_names.MEMBER_LEFT, group_id=group.id,
                             user_id=identity.user_id)

    async def members(self, identity, group_uuid):
        """
        The members of a group, for its members only.
        """
        group = await self.get_as_member(identity, group_uuid)
        return await self._groups.members(group.id)

    async def update(self, identity, group_uuid, name=None, notice=None):
        """
        Rename a group or change its notice (the owner only).
        """
        group = await self._get_as_owner(identity, group_uuid)
        if name is not None:
            name = validation.group_name(name)
        if notice is not None:
            notice = validation.group_notice(notice)
        if name is None and notice is None:
            raise BadRequest("name: give a name or a notice to change")
        return await self._groups.update(
            group.id, now_ms(self._clock), name=name, notice=notice)

    async def remove_member(self, identity, group_uuid, user_uuid):
        """
        Remove a member (the owner only; not the owner themself).
        """
        group = await self._get_as_owner(identity, group_uuid)
        user = await self._named_user(user_uuid)
        if user.id == group.owner_id:
            raise BadRequest("userUuid: the owner cannot be removed")
        if not await self._groups.remove(group.id, user.id, now_ms(self._clock)):
            raise NotFound("that user is not a member of this group")
        self._events.publish(event_names.MEMBER_LEFT, group_id=group.id,
                             user_id=user.id)

    async def lift_removal(self, identity, group_uuid, user_uuid):
        """
        Let a user the owner removed join again (the owner only).
        """
        group = await self._get_as_owner(identity, group_uuid)
        user = await self._named_user(user_uuid)
        if not await self._groups.lift_removal(group.id, user.id):
            raise NotFound("that user was not removed from this group")

    async def _named_user(self, user_uuid):
        """
        The user C{user_uuid} names (the owner's powers act on one).
        """
        if not user_uuid or not isinstance(user_uuid, str):
            raise BadRequest("userUuid: required")
        user = await self._users.get_by_uuid(user_uuid)
        if user is None:
            raise NotFound("no such user")
        return user

    async def delete(self, identity, group_uuid):
        """
        Delete a group with its members, history and the attachments
        nothing else uses (the owner only).
        """
        group = await self._get_as_owner(identity, group_uuid)
        _, orphans = await self._groups.delete(group.id)
        self._events.publish(event_names.GROUP_DELETED, group_id=group.id)
        for name in orphans:
            await self._files.remove_bytes(self._files.path_of(name))
