"""
Who a frame may be addressed to: a friend (one-to-one) or a group the
sender belongs to. Messages, relays and typing frames share these rules;
the facts come from the Hub's caches, so no database query is made once
they are warm.
"""

from dataclasses import dataclass

from chatd.errors import Forbidden, NotFound
from chatd.protocol import frames
from chatd.protocol.frames import refuse

# The longest uuid a user or group has (36 characters, hyphenated).
UUID_MAX = 36


@dataclass(frozen=True)
class Addressee:
    """
    @ivar peer: the recipient L{User} of a one-to-one frame, else None.
    @ivar group: the L{Group} of a group frame, else None.
    @ivar members: the group's member ids (empty for one-to-one frames).
    """

    peer: object = None
    group: object = None
    members: frozenset = frozenset()

    def relay_targets(self, out, sender):
        """
        Apply go-chat's rewriting of a group frame to C{out} (C{from} the
        group, C{to} the sender) and return the ids of the users it goes to:
        the peer, or the group's other members.
        """
        if self.group is None:
            return {self.peer.id}
        setattr(out, "from", self.group.uuid)
        out.to = sender.uuid
        return self.members - {sender.id}


def resolve_cached(hub, user, to, message_type, allow_self=False):
    """
    L{resolve} from the Hub's caches alone: the addressee, or None if a
    fact it needs is not cached yet (then call L{resolve}).

    @raise chatd.errors.ChatError: as L{resolve}.
    """
    if message_type == frames.GROUP:
        group = hub.cached_group_by_uuid(to)
        members = None if group is None else hub.cached_group_members(group.id)
        if members is None:
            return None
        return _group_addressee(user, group, members)
    peer = hub.cached_user_by_uuid(to)
    if peer is None:
        return None
    if allow_self and peer.id == user.id:
        return Addressee(peer=peer)
    friends = hub.cached_friend_ids(user.id)
    if friends is None:
        return None
    return _peer_addressee(user, peer, friends)


async def resolve(hub, user, to, message_type, allow_self=False):
    """
    The addressee of a frame from C{user} to C{to} (a user or group uuid).

    @param allow_self: a one-to-one frame to oneself needs no friendship.
    @raise chatd.errors.ChatError: no such user or group, not a friend, not
        a member (each with its error frame code).
    """
    if len(to) > UUID_MAX:
        # Names nothing: not worth a query.
        if message_type == frames.GROUP:
            return _group_addressee(user, None, None)
        return _peer_addressee(user, None, ())
    if message_type == frames.GROUP:
        group = await hub.group_by_uuid(to)
        members = None if group is None else await hub.group_members(group.id)
        return _group_addressee(user, group, members)
    peer = await hub.user_by_uuid(to)
    if peer is not None and allow_self and peer.id == user.id:
        return Addressee(peer=peer)
    friends = () if peer is None else await hub.friend_ids(user.id)
    return _peer_addressee(user, peer, friends)


def _group_addressee(user, group, members):
    if group is None:
        raise refuse(NotFound, "no such group", "unknown_group")
    if user.id not in members:
        raise refuse(Forbidden, "you are not a member of this group", "not_member")
    return Addressee(group=group, members=members)


def _peer_addressee(user, peer, friends):
    if peer is None:
        raise refuse(NotFound, "no such user", "unknown_recipient")
    if peer.id not in friends:
        raise refuse(Forbidden, f"{peer.username} is not your friend", "not_friend")
    return Addressee(peer=peer)
