"""
Password hashing with scrypt from the standard library: memory-hard, salted,
no extra dependency. Hashes are self-describing strings,
C{scrypt$<log2 n>$<r>$<p>$<salt>$<hash>} (salt and hash in unpadded
base64), so the cost can be raised later without breaking old hashes.

Hashing takes tens of milliseconds of CPU on purpose, so it always runs in
the reactor's thread pool, never on the reactor thread.
"""

import base64
import hashlib
import hmac
import os

from twisted.internet.threads import deferToThreadPool

_SALT_BYTES = 16
_HASH_BYTES = 32


def _b64(data):
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text):
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password, salt, log2_n, r, p):
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
        maxmem=2 * 128 * n * r + (1 << 20), dklen=_HASH_BYTES)


def hash_password_sync(password, log2_n=15, r=8, p=1):
    """
    Hash a password (blocking; see L{PasswordHasher.hash}).
    """
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, log2_n, r, p)
    return f"scrypt${log2_n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password, stored):
    """
    Whether C{password} matches the hash C{stored} (blocking).
    """
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        log2_n, r, p = int(log2_n), int(r), int(p)
        salt, digest = _unb64(salt), _unb64(digest)
    except (ValueError, AttributeError):
        return False
    if scheme != "scrypt" or not (1 <= log2_n <= 22 and 1 <= r <= 32
                                  and 1 <= p <= 16):
        return False
    computed = _scrypt(password, salt, log2_n, r, p)
    return hmac.compare_digest(computed, digest)


class PasswordHasher:
    """
    Hashes and checks passwords in C{reactor}'s thread pool.

    @param log2_n: scrypt's cost: memory is 128 * 2**log2_n * r bytes.
    """

    def __init__(self, reactor, log2_n=15, r=8, p=1):
        self._reactor = reactor
        self._log2_n = log2_n
        self._r = r
        self._p = p
        self._dummy = None

    def _in_thread(self, function, *args):
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), function, *args)

    async def hash(self, password):
        return await self._in_thread(
            hash_password_sync, password, self._log2_n, self._r, self._p)

    async def verify(self, password, stored):
        return await self._in_thread(verify_password_sync, password, stored)

    async def verify_nobody(self, password):
        """
        Spend the time a real check takes, for a user who does not exist,
        so that the answer's timing does not tell whether the name is taken.
        Always False.
        """
        if self._dummy is None:
            self._dummy = await self.hash("chatd dummy password")
        await self.verify(password, self._dummy)
        return False
