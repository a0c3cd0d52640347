"""
Access tokens: issue, verify, expiry, revocation, and where requests
carry them.
"""

import os
import stat

import jwt
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatd.auth.tokens import TokenService, load_token_secret, token_from_headers
from chatd.errors import Unauthorized
from chatd.stores.users import UserStore
from tests.helpers import migrated_database

SECRET = b"k" * 64


class TokenFromHeadersTests(unittest.TestCase):
    def test_bearer(self):
        self.assertEqual(token_from_headers("Bearer abc", None), "abc")
        self.assertEqual(token_from_headers(b"bearer  abc ", None), "abc")

    def test_cookie(self):
        self.assertEqual(
            token_from_headers(None, "a=1; chatd_token=xyz; b=2"), "xyz")
        self.assertEqual(
            token_from_headers(None, b"other=1; t=2", cookie_name="t"), "2")

    def test_header_wins(self):
        self.assertEqual(
            token_from_headers("Bearer h", "chatd_token=c"), "h")

    def test_none(self):
        self.assertIsNone(token_from_headers(None, None))
        self.assertIsNone(token_from_headers("Basic abc", "x=1"))
        self.assertIsNone(token_from_headers("Bearer ", "chatd_token="))


class SecretTests(unittest.TestCase):
    def test_configured(self):
        self.assertEqual(load_token_secret("s" * 40, self.mktemp()), b"s" * 40)

    def test_generated_once_with_mode_0600(self):
        directory = self.mktemp()
        os.makedirs(directory)
        first = load_token_secret("", directory)
        self.assertGreaterEqual(len(first), 32)
        mode = os.stat(os.path.join(directory, "token_secret")).st_mode
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertEqual(load_token_secret("", directory), first)


class TokenServiceTests(unittest.TestCase):
    async def _setup(self):
        self.database = await migrated_database(self)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.users = UserStore(self.database)
        self.user = await self.users.create(
            "u-1", "alice", "scrypt$x", created_at=1)
        self.tokens = TokenService(self.database, SECRET, 3600, self.clock)

    async def test_issue_and_verify(self):
        await self._setup()
        token, identity = await self.tokens.issue(self.user)
        self.assertEqual(identity.uuid, "u-1")
        self.assertEqual(identity.expires_at, 1_700_000_000 + 3600)
        verified = await self.tokens.verify(token)
        self.assertEqual(verified, identity)
        claims = jwt.decode(token, SECRET, algorithms=["HS256"],
                            options={"verify_exp": False})
        self.assertEqual(set(claims), {"sub", "jti", "iat", "exp"})

    async def test_expired(self):
        await self._setup()
        token, _ = await self.tokens.issue(self.user)
        self.clock.advance(3600)
        with self.assertRaises(Unauthorized):
            await self.tokens.verify(token)

    async def test_revoked(self):
        await self._setup()
        token, identity = await self.tokens.issue(self.user)
        other, _ = await self.tokens.issue(self.user)
        await self.tokens.revoke(identity)
        with self.assertRaises(Unauthorized):
            await self.tokens.verify(token)
        await self.tokens.verify(other)

    async def test_password_change_revokes_earlier_tokens(self):
        await self._setup()
        old, _ = await self.tokens.issue(self.user)
        self.clock.advance(0.001)
        await self.users.set_password(
            self.user.id, "scrypt$y", int(self.clock.seconds() * 1000))
        new, _ = await self.tokens.issue(self.user)
        with self.assertRaises(Unauthorized):
            await self.tokens.verify(old)
        await self.tokens.verify(new)

    async def test_bad_tokens(self):
        await self._setup()
        now = int(self.clock.seconds())
        claims = {"sub": "u-1", "jti": "j", "iat": now, "exp": now + 60}
        bad = [
            None, "", "garbage", "a.b.c",
            jwt.encode(claims, b"w" * 48, algorithm="HS256"),
            jwt.encode(claims, SECRET, algorithm="HS512"),
            jwt.encode(dict(claims, sub="nobody"), SECRET, algorithm="HS256"),
            jwt.encode({"sub": "u-1", "iat": now, "exp": now + 60}, SECRET,
                       algorithm="HS256"),
            jwt.encode({"sub": "u-1", "jti": "j", "iat": now}, SECRET,
                       algorithm="HS256"),
            jwt.encode(claims, None, algorithm="none"),
        ]
        for token in bad:
            with self.assertRaises(Unauthorized, msg=repr(token)):
                await self.tokens.verify(token)
        good = jwt.encode(claims, SECRET, algorithm="HS256")
        identity = await self.tokens.verify(good)
        self.assertEqual(identity.user_id, self.user.id)
