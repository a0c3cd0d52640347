"""
Password hashing, rate limits and input rules.
"""

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatd.auth.passwords import (
    PasswordHasher,
    hash_password_sync,
    verify_password_sync,
)
from chatd.auth.ratelimit import RateLimiter
from chatd.errors import BadRequest, TooManyRequests
from chatd.handlers import validation


class PasswordTests(unittest.TestCase):
    def test_format_and_verify(self):
        stored = hash_password_sync("pässword one", log2_n=10)
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        self.assertEqual((scheme, log2_n, r, p), ("scrypt", "10", "8", "1"))
        self.assertNotIn("pässword", stored)
        self.assertTrue(verify_password_sync("pässword one", stored))
        self.assertFalse(verify_password_sync("password one", stored))
        self.assertFalse(verify_password_sync("", stored))

    def test_salted(self):
        self.assertNotEqual(hash_password_sync("same", log2_n=10),
                            hash_password_sync("same", log2_n=10))

    def test_garbage_hashes_never_match(self):
        for stored in ("", "!test", "scrypt$10$8$1$$", "bcrypt$x$y$z$a$b",
                       "scrypt$99$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA",
                       "scrypt$10$8$1$!!$AAAA", None):
            self.assertFalse(verify_password_sync("x", stored), stored)

    async def test_in_thread(self):
        hasher = PasswordHasher(reactor, log2_n=10)
        stored = await hasher.hash("secret words")
        self.assertTrue(await hasher.verify("secret words", stored))
        self.assertFalse(await hasher.verify("other words", stored))
        self.assertFalse(await hasher.verify_nobody("secret words"))


class RateLimiterTests(unittest.TestCase):
    def test_burst_then_refill(self):
        clock = Clock()
        limiter = RateLimiter(clock, burst=3, per_hour=60)
        for _ in range(3):
            limiter.check("a")
            limiter.charge("a")
        error = self.assertRaises(TooManyRequests, limiter.check, "a")
        self.assertEqual(error.retry_after, 60)
        self.assertEqual(error.status, 429)
        limiter.check("b")
        clock.advance(59)
        self.assertRaises(TooManyRequests, limiter.check, "a")
        clock.advance(1)
        limiter.check("a")
        limiter.charge("a")
        self.assertRaises(TooManyRequests, limiter.check, "a")
        clock.advance(3600)
        for _ in range(3):
            limiter.check("a")
            limiter.charge("a")
        self.assertRaises(TooManyRequests, limiter.check, "a")

    def test_amounts(self):
        """
        A bucket of bytes: a check asks for the amount, a charge takes it;
        an amount over the burst waits for a full bucket, not forever.
        """
        clock = Clock()
        limiter = RateLimiter(clock, burst=1000, per_hour=3600)
        limiter.check("a", 600)
        limiter.charge("a", 600)
        error = self.assertRaises(TooManyRequests, limiter.check, "a", 600)
        self.assertEqual(error.retry_after, 200)
        limiter.check("a", 400)
        clock.advance(200)
        limiter.check("a", 600)
        limiter.charge("a", 600)
        self.assertEqual(limiter.retry_after("a", 5000), 1000)

    def test_take_checks_then_charges(self):
        limiter = RateLimiter(Clock(), burst=2, per_hour=0)
        limiter.take("a")
        limiter.take("a")
        error = self.assertRaises(TooManyRequests, limiter.take, "a", frame_code="slow")
        self.assertEqual(error.frame_code, "slow")
        self.assertEqual(limiter.retry_after("a"), 3600)

    def test_refund(self):
        clock = Clock()
        limiter = RateLimiter(clock, burst=1, per_hour=0)
        limiter.refund("a")
        self.assertEqual(len(limiter), 0)
        limiter.charge("a")
        self.assertRaises(TooManyRequests, limiter.check, "a")
        limiter.refund("a")
        limiter.check("a")
        limiter.refund("a")
        self.assertEqual(limiter.retry_after("a"), 0)
        limiter.charge("a")
        self.assertRaises(TooManyRequests, limiter.check, "a")

    def test_no_refill(self):
        clock = Clock()
        limiter = RateLimiter(clock, burst=1, per_hour=0)
        limiter.charge("a")
        self.assertEqual(limiter.retry_after("a"), 3600)

    def test_full_buckets_forgotten(self):
        clock = Clock()
        limiter = RateLimiter(clock, burst=5, per_hour=3600)
        for n in range(1023):
            limiter.charge(f"k{n}")
        self.assertEqual(len(limiter), 1023)
        clock.advance(10)
        limiter.charge("last")
        self.assertEqual(len(limiter), 1)

    def test_pruned_at_most_every_ten_seconds(self):
        """
        On the message path thousands of charges a second must not each
        thousand look at every bucket.
        """
        clock = Clock()
        limiter = RateLimiter(clock, burst=5, per_hour=3600 * 1000)
        for n in range(1024):
            limiter.charge(f"k{n}")
        self.assertEqual(len(limiter), 1024)  # looked at; none full yet
        clock.advance(1)  # every bucket full again
        for n in range(1024):
            limiter.charge(f"j{n}")
        self.assertEqual(len(limiter), 2048)  # not looked at: too soon
        clock.advance(9)
        for n in range(1024):
            limiter.charge(f"i{n}")
        self.assertEqual(len(limiter), 1024)  # the full ones forgotten


class ValidationTests(unittest.TestCase):
    def test_usernames(self):
        for good in ("alice", "al_ice.2", "Zoë", "张伟abc", "_x1"):
            self.assertEqual(validation.username(good), good)
        self.assertEqual(validation.username("  bob  "), "bob")
        for bad in ("ab", "a" * 33, "a b", "a/b", "../x", ".hidden", "-x",
                    "a\x00b", "a\u200bb", "", 5, None):
            self.assertRaises(BadRequest, validation.username, bad)

    def test_passwords(self):
        self.assertEqual(validation.password("12345678", 8), "12345678")
        self.assertRaises(BadRequest, validation.password, "1234567", 8)
        self.assertRaises(BadRequest, validation.password, "x" * 1025, 8)
        self.assertRaises(BadRequest, validation.password, 12345678, 8)

    def test_text(self):
        self.assertEqual(validation.group_notice("line one\nline two"),
                         "line one\nline two")
        self.assertRaises(BadRequest, validation.group_name, "bell\x07")
        self.assertRaises(BadRequest, validation.group_name, "")
        self.assertEqual(validation.email(""), "")
        self.assertEqual(validation.email("a@b.co"), "a@b.co")
        self.assertRaises(BadRequest, validation.email, "a@b")
