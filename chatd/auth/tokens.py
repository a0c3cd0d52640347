"""
Access tokens: signed JWTs (HS256) that name a user, expire, and can be
revoked.

A token's claims: C{sub} the user's uuid, C{jti} a random token id, C{iat}
the time it was issued (seconds, with millisecond precision), C{exp} when it
expires. A token is refused when its signature, algorithm or claims are
wrong, when it has expired, when its id was revoked (logout), or when it was
issued before its user's C{tokens_valid_after} (a password change).

Clients send a token as C{Authorization: Bearer <token>} or in the cookie
named by C{auth.cookie_name} (default L{DEFAULT_COOKIE_NAME}); see
L{token_from_headers}.
"""

import os
import secrets
import uuid as uuid_module
from dataclasses import dataclass

import jwt

from chatd.errors import Unauthorized
from chatd.stores import now_ms

ALGORITHM = "HS256"
DEFAULT_COOKIE_NAME = "chatd_token"
SECRET_FILE = "token_secret"


@dataclass(frozen=True, slots=True)
class Identity:
    """
    Who a verified token speaks for. (Slots: every WebSocket connection
    keeps one.)

    @ivar expires_at: when the token expires, in seconds since the epoch.
    @ivar issued_ms: when it was issued, in milliseconds since the epoch.
    """

    user_id: int
    uuid: str
    username: str
    token_id: str
    expires_at: int
    issued_ms: int = 0


def token_from_headers(authorization, cookie_header,
                       cookie_name=DEFAULT_COOKIE_NAME):
    """
    The access token a request carries: from C{Authorization: Bearer}
    first, else from the cookie C{cookie_name}; None if neither has one.

    @param authorization: the Authorization header's value (str or bytes),
        or None.
    @param cookie_header: the Cookie header's value (str or bytes), or None.
    """
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    if isinstance(cookie_header, bytes):
        cookie_header = cookie_header.decode("latin-1")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if cookie_header:
        for part in cookie_header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name.strip() == cookie_name:
                value = value.strip().strip('"')
                if value:
                    return value
    return None


def load_token_secret(configured, data_dir):
    """
    The HS256 key: the configured one, else the one in
    C{DATA_DIR/token_secret}, generated (mode 0600) on first start.
    """
    if configured:
        return configured.encode("utf-8")
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as f:
            secret = f.read().strip()
        if len(secret) < 32:
            raise ValueError(f"{path}: the token secret is too short")
        return secret.encode("ascii")
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    return secret.encode("ascii")


class TokenService:
    """
    Issues, verifies and revokes access tokens.

    @param database: the L{chatd.storage.database.Database}.
    @param secret: the HS256 key (bytes or str).
    @param lifetime: seconds a token stays valid.
    @param clock: an L{IReactorTime}.
    """

    def __init__(self, database, secret, lifetime, clock):
        self._database = database
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._lifetime = lifetime
        self._clock = clock

    async def issue(self, user):
        """
        A new token for C{user} (a L{chatd.stores.users.User}).

        @return: C{(token, identity)}.
        """
        issued = now_ms(self._clock)
        expires_at = issued // 1000 + self._lifetime
        token_id = uuid_module.uuid4().hex
        claims = {
            "sub": user.uuid,
            "jti": token_id,
            "iat": issued / 1000,
            "exp": expires_at,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return token, Identity(user.id, user.uuid, user.username, token_id,
                               expires_at, issued)

    def _claims(self, token):
        if not token or not isinstance(token, str) or len(token) > 4096:
            raise Unauthorized("sign in first")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "jti", "sub"],
                         # Expiry is checked below against the injected
                         # clock; the signature always is.
                         "verify_exp": False, "verify_iat": False})
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not valid")
        try:
            expires_at = int(claims["exp"])
            issued_ms = int(round(float(claims["iat"]) * 1000))
            subject, token_id = claims["sub"], claims["jti"]
        except (TypeError, ValueError):
            raise Unauthorized("the token is not valid")
        if not isinstance(subject, str) or not isinstance(token_id, str):
            raise Unauthorized("the token is not valid")
        if self._clock.seconds() >= expires_at:
            raise Unauthorized("the token has expired; sign in again")
        return subject, token_id, issued_ms, expires_at

    async def verify(self, token):
        """
        The L{Identity} of a valid token.

        @raise Unauthorized: no token, or a bad, expired or revoked one.
        """
        subject, token_id, issued_ms, expires_at = self._claims(token)
        row = await self._database.run(
            "verify_token", self._verify_txn, subject, token_id)
        if row is None:
            raise Unauthorized("the token is not valid")
        user_id, username, valid_after, revoked = row
        if revoked or issued_ms < valid_after:
            raise Unauthorized("the token was revoked; sign in again")
        return Identity(user_id, subject, username, token_id, expires_at,
                        issued_ms)

    def _verify_txn(self, txn, subject, token_id):
        txn.execute(
            "SELECT id, username, tokens_valid_after,"
            " (SELECT COUNT(*) FROM revoked_tokens WHERE jti = ?)"
            " FROM users WHERE uuid = ?", (token_id, subject))
        row = txn.fetchone()
        if row is None:
            return None
        return int(row[0]), row[1], int(row[2]), int(row[3])

    async def revoke(self, identity):
        """
        Revoke one token (logout). Expired revocations are purged.
        """
        await self._database.run(
            "revoke_token", self._revoke_txn, identity.token_id,
            identity.user_id, identity.expires_at * 1000,
            now_ms(self._clock))

    def _revoke_txn(self, txn, token_id, user_id, expires_at, now):
        txn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now,))
        txn.execute("DELETE FROM revoked_tokens WHERE jti = ?", (token_id,))
        txn.execute(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at)"
            " VALUES (?, ?, ?)", (token_id, user_id, expires_at))
