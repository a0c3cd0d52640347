"""
Accounts: registration, sign-in, sign-out, profile and password changes,
avatars.
"""

import unicodedata
import uuid as uuid_module

from twisted.logger import Logger

from chatd import events as event_names
from chatd.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from chatd.files import sniff
from chatd.handlers import validation
from chatd.handlers.common import require_self
from chatd.stores import now_ms

log = Logger()


def _fold(name):
    """
    A user name as the database compares it (ignoring case).
    """
    return unicodedata.normalize("NFC", name.strip()).lower()


def _account_key(user_id):
    """
    The key of an account's sign-in failures in the rate limiter.
    """
    return f"user:{user_id}"


WRONG_CREDENTIALS = "wrong user name or password"
AVATAR_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class Accounts:
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param passwords: a L{chatd.auth.passwords.PasswordHasher}.
    @param tokens: a L{chatd.auth.tokens.TokenService}.
    @param limits: a L{chatd.auth.ratelimit.AuthLimits}.
    @param files: a L{chatd.files.FileStore}.
    @param events: the L{chatd.events.Events} told of revoked tokens, so
        that connections opened with them are closed.
    """

    def __init__(self, users, passwords, tokens, limits, files, clock,
                 events, password_min_length=8):
        self.users = users
        self._events = events
        self._passwords = passwords
        self._tokens = tokens
        self._limits = limits
        self._files = files
        self._clock = clock
        self._password_min_length = password_min_length

    async def register(self, address, username, password, nickname="",
                       email=""):
        """
        Create an account. Every attempt counts against the address's
        registration limit.

        @raise TooManyRequests: too many registrations from C{address}.
        @raise BadRequest: a field breaks the rules.
        @raise Conflict: the user name is taken.
        """
        self._limits.register_address.check(address)
        self._limits.register_address.charge(address)
        username = validation.username(username)
        password = validation.password(password, self._password_min_length)
        nickname = validation.nickname(nickname) or username
        email = validation.email(email)
        password_hash = await self._passwords.hash(password)
        user = await self.users.create(
            str(uuid_module.uuid4()), username, password_hash,
            nickname=nickname, email=email, created_at=now_ms(self._clock))
        log.info("Registered user {username} ({uuid})",
                 username=user.username, uuid=user.uuid)
        return user

    async def login(self, address, username, password):
        """
        Check a user name and password; a wrong password and an unknown
        user get the same answer.

        @return: C{(user, token, identity)}.
        @raise TooManyRequests: too many failures from C{address} or for
            this account.
        @raise Unauthorized: wrong user name or password.
        """
        if not isinstance(username, str) or not username:
            raise BadRequest("username: required")
        if not isinstance(password, str) or not password:
            raise BadRequest("password: required")
        username = unicodedata.normalize("NFC", username.strip())
        limits = self._limits
        limits.login_address.check(address)
        # Charged now, refunded on success: concurrent guesses cannot all
        # pass the check while the first ones are being hashed.
        limits.login_address.charge(address)
        if len(password) > validation.PASSWORD_MAX or \
                len(username) > validation.USERNAME_MAX * 4:
            credentials = None
        else:
            credentials = await self.users.credentials("username", username)
        # The account found, not the name typed: the database's collation
        # finds one account under many spellings (case, and on MySQL
        # accents and ignorable characters).
        account = ("name:" + username.lower()[:128] if credentials is None
                   else _account_key(credentials.user.id))
        try:
            limits.login_account.check(account)
        except TooManyRequests:
            # Refused before any guess: a locked account must not use up
            # the quota of whoever shares the caller's address.
            limits.login_address.refund(address)
            raise
        limits.login_account.charge(account)
        if credentials is None:
            ok = await self._passwords.verify_nobody(password[:1024])
        else:
            ok = await self._passwords.verify(
                password, credentials.password_hash)
        if not ok:
            raise Unauthorized(WRONG_CREDENTIALS)
        limits.login_address.refund(address)
        limits.login_account.refund(account)
        token, identity = await self._tokens.issue(credentials.user)
        return credentials.user, token, identity

    async def logout(self, identity):
        await self._tokens.revoke(identity)
        self._events.publish(event_names.TOKEN_REVOKED, user_id=identity.user_id,
                             token_id=identity.token_id)

    async def get(self, uuid):
        """
        @raise NotFound: no such user.
        """
        user = await self.users.get_by_uuid(uuid) if uuid else None
        if user is None:
            raise NotFound("no such user")
        return user

    async def update(self, identity, username=None, nickname=None,
                     email=None, password=None, old_password=None):
        """
        Change the caller's own profile, and their password if C{password}
        is given (which needs C{old_password} and revokes every earlier
        token).

        @return: C{(user, token)}; the token is a new one after a password
            change, else None.
        @raise Forbidden: C{username} names someone else, or the old
            password is wrong.
        """
        if username not in (None, "") and (
                not isinstance(username, str)
                or _fold(username) != _fold(identity.username)):
            if not isinstance(username, str):
                raise BadRequest("username: must be a string")
            if await self.users.get_by_name(username.strip()) is None:
                raise NotFound("no such user")
            raise Forbidden("you may only change your own account")
        fields = {}
        if nickname is not None:
            fields["nickname"] = validation.nickname(nickname)
        if email is not None:
            fields["email"] = validation.email(email)
        token = None
        if password not in (None, ""):
            password = validation.password(
                password, self._password_min_length)
            token = await self._change_password(
                identity, password, old_password)
        user = await self.users.update_profile(
            identity.user_id, now_ms(self._clock), **fields)
        return user, token

    async def _change_password(self, identity, password, old_password):
        if not isinstance(old_password, str) or not old_password:
            raise BadRequest("oldPassword: required to change the password")
        account = _account_key(identity.user_id)
        self._limits.login_account.check(account)
        self._limits.login_account.charge(account)
        credentials = await self.users.credentials("id", identity.user_id)
        if credentials is None:
            raise Unauthorized("the token was revoked; sign in again")
        if not await self._passwords.verify(
                old_password, credentials.password_hash):
            raise Forbidden("oldPassword: wrong password")
        self._limits.login_account.refund(account)
        password_hash = await self._passwords.hash(password)
        now = now_ms(self._clock)
        await self.users.set_password(identity.user_id, password_hash, now)
        self._events.publish(event_names.TOKENS_REVOKED, user_id=identity.user_id,
                             issued_before=now)
        log.info("Password changed for {uuid}; earlier tokens revoked",
                 uuid=identity.uuid)
        token, _ = await self._tokens.issue(credentials.user)
        return token

    async def set_avatar(self, identity, uuid, data, suffix_hint=""):
        """
        Store an uploaded image as the caller's avatar.

        @return: the L{chatd.files.StoredFile}.
        """
        await require_self(self.users, identity, uuid)
        if len(data) > self._files.max_bytes:
            raise PayloadTooLarge(
                f"the file is larger than {self._files.max_bytes} bytes")
        if not data:
            raise BadRequest("file: the file is empty")
        media_type, _ = sniff(data, suffix_hint)
        if media_type not in AVATAR_TYPES:
            raise BadRequest("file: an avatar must be a PNG, JPEG, GIF or"
                             " WebP image")
        previous = await self.users.get_by_id(identity.user_id)
        stored = await self._files.save(identity.user_id, data, suffix_hint)
        await self.users.set_avatar(
            identity.user_id, stored.name, now_ms(self._clock))
        if previous is not None and previous.avatar:
            try:
                await self._files.discard_if_unused(previous.avatar)
            except Exception:
                log.failure("Removing the replaced avatar {name} failed",
                            name=previous.avatar)
        return stored
