"""
Checks every handler makes about who acts for whom.
"""

from chatd.errors import BadRequest, Forbidden, NotFound


async def require_self(users, identity, uuid, field="uuid"):
    """
    Refuse to act for anyone but the caller.

    @raise BadRequest: no uuid given.
    @raise NotFound: C{uuid} names no user.
    @raise Forbidden: C{uuid} is someone else's.
    """
    if uuid == identity.uuid:
        return
    if not uuid or not isinstance(uuid, str):
        raise BadRequest(f"{field}: required")
    if await users.get_by_uuid(uuid) is None:
        raise NotFound("no such user")
    raise Forbidden("you may only act for your own account")
