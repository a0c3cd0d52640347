"""
Token-bucket rate limits, keyed by anything (a client address, an account),
on an injected clock.

A bucket holds up to C{burst} tokens and refills at C{per_hour} tokens an
hour. L{RateLimiter.check} refuses when a key's bucket is empty (or holds
fewer than an amount: a bucket of bytes); L{RateLimiter.charge} takes one
token (or the amount), L{RateLimiter.refund} gives one back.
Callers charge before the slow work and refund when the attempt does not
count, so that concurrent attempts cannot all pass the check before any is
charged. Full buckets are forgotten, so memory stays proportional to the
keys that were charged recently.
"""

import math

from chatd.errors import TooManyRequests

# Full buckets are looked for every this many charges, at most once in
# _PRUNE_SECONDS: a limiter on the message path sees thousands of charges
# a second, and a look at every bucket takes a few milliseconds at 10,000.
_PRUNE_EVERY = 1024
_PRUNE_SECONDS = 10.0


class RateLimiter:
    def __init__(self, clock, burst, per_hour, what="attempts"):
        self._clock = clock
        self._burst = float(burst)
        self._rate = per_hour / 3600.0
        self._what = what
        self._buckets = {}
        self._charges = 0
        self._pruned = None

    def _level(self, key, now):
        entry = self._buckets.get(key)
        if entry is None:
            return self._burst
        level, since = entry
        return min(self._burst, level + (now - since) * self._rate)

    def retry_after(self, key, amount=1):
        """
        Seconds until C{key} may try again (with C{amount} tokens, at most
        the burst): 0 if it may now.
        """
        amount = min(amount, self._burst)
        level = self._level(key, self._clock.seconds())
        if level >= amount:
            return 0
        if self._rate <= 0:
            return 3600
        return max(1, math.ceil((amount - level) / self._rate))

    def check(self, key, amount=1):
        """
        @raise TooManyRequests: C{key} has fewer than C{amount} tokens left.
        """
        wait = self.retry_after(key, amount)
        if wait:
            raise TooManyRequests(
                f"too many {self._what}; try again in {wait} seconds", wait)

    def charge(self, key, amount=1):
        """
        Take C{amount} tokens from C{key}'s bucket (down to empty).
        """
        now = self._clock.seconds()
        self._buckets[key] = (max(0.0, self._level(key, now) - amount), now)
        self._charges += 1
        if self._charges % _PRUNE_EVERY == 0 and (
                self._pruned is None or now - self._pruned >= _PRUNE_SECONDS):
            self._pruned = now
            self._prune(now)

    def take(self, key, amount=1, frame_code=None):
        """
        L{check} then L{charge}: for callers that count every attempt.

        @param frame_code: the error frame code the refusal carries.
        @raise TooManyRequests: C{key} has fewer than C{amount} tokens left.
        """
        try:
            self.check(key, amount)
        except TooManyRequests as error:
            if frame_code is not None:
                error.frame_code = frame_code
            raise
        self.charge(key, amount)

    def refund(self, key, amount=1):
        """
        Give back C{amount} tokens taken by L{charge} for an attempt that
        turned out not to count (e.g. a successful login).
        """
        if key in self._buckets:
            now = self._clock.seconds()
            self._buckets[key] = (min(self._burst, self._level(key, now) + amount), now)

    def _prune(self, now):
        full = [key for key in self._buckets
                if self._level(key, now) >= self._burst]
        for key in full:
            del self._buckets[key]

    def __len__(self):
        return len(self._buckets)


class AuthLimits:
    """
    The rate limits of sign-in and registration, from the C{[auth]} config.
    """

    def __init__(self, clock, auth_config):
        c = auth_config
        self.login_address = RateLimiter(
            clock, c.login_address_burst, c.login_address_per_hour,
            "failed logins from this address")
        self.login_account = RateLimiter(
            clock, c.login_account_burst, c.login_account_per_hour,
            "failed logins for this account")
        self.register_address = RateLimiter(
            clock, c.register_address_burst, c.register_address_per_hour,
            "registrations from this address")
