"""
Tests for L{chatd.turn}: TURN REST API credentials as coturn's
C{use-auth-secret} checks them, and the ICE server list.
"""

import base64
import hashlib
import hmac

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.config import CallsConfig, ConfigError
from chatd.turn import IceServers, turn_credential
from tests.helpers import api_client, sign_up

SECRET = "coturn-shared-secret"
USER = "6f1c2b9e-0000-4000-8000-000000000001"


def coturn_password(secret, username):
    """
    What coturn computes for a username under use-auth-secret, written out
    here independently of chatd.turn.
    """
    mac = hmac.HMAC(secret.encode(), username.encode(), hashlib.sha1)
    return base64.standard_b64encode(mac.digest()).decode()


class TurnCredentialTests(SynchronousTestCase):
    def test_known_vector(self):
        """
        A vector computed with openssl:
        printf %s "1700086400:<uuid>" | openssl dgst -sha1 -hmac SECRET \
            -binary | base64
        """
        credential = turn_credential(SECRET, USER, 86400, 1700000000)
        self.assertEqual(credential.username, f"1700086400:{USER}")
        self.assertEqual(credential.password, "RCQeDg1vRWo3RhymCPgXbHGCxsg=")
        self.assertEqual(credential.expires_at, 1700086400)

    def test_independent_computation(self):
        for secret, user, lifetime, now in [
                (SECRET, "alice", 60, 1.9), ("ü-secret", "bob", 3600, 12345),
                ("x" * 100, USER, 1, 0)]:
            credential = turn_credential(secret, user, lifetime, now)
            expiry = int(now) + lifetime
            self.assertEqual(credential.username, f"{expiry}:{user}")
            self.assertEqual(credential.password,
                             coturn_password(secret, f"{expiry}:{user}"))

    def test_other_secret_differs(self):
        self.assertNotEqual(
            turn_credential(SECRET, USER, 60, 0).password,
            turn_credential(SECRET + "x", USER, 60, 0).password)


class IceServersTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1700000000.5)

    def test_stun_and_turn(self):
        config = CallsConfig(
            stun_urls=("stun:stun.example.com:3478",),
            turn_urls=("turn:turn.example.com:3478?transport=udp",
                       "turns:turn.example.com:5349?transport=tcp"),
            turn_secret=SECRET, turn_credential_lifetime=600)
        answer = IceServers(config, self.clock).for_user(USER)
        username = f"1700000600:{USER}"
        self.assertEqual(answer, {
            "iceServers": [
                {"urls": ["stun:stun.example.com:3478"]},
                {"urls": ["turn:turn.example.com:3478?transport=udp",
                          "turns:turn.example.com:5349?transport=tcp"],
                 "username": username,
                 "credential": coturn_password(SECRET, username)},
            ],
            "ttl": 600,
            "expiresAt": 1700000600,
        })

    def test_credentials_follow_the_clock(self):
        config = CallsConfig(turn_urls=("turn:t",), turn_secret=SECRET)
        servers = IceServers(config, self.clock)
        first = servers.for_user(USER)["iceServers"][0]
        self.clock.advance(10)
        later = servers.for_user(USER)["iceServers"][0]
        self.assertEqual(later["username"], f"1700086410:{USER}")
        self.assertNotEqual(first["credential"], later["credential"])

    def test_stun_only(self):
        config = CallsConfig(stun_urls=("stun:s",))
        self.assertEqual(IceServers(config, self.clock).for_user(USER),
                         {"iceServers": [{"urls": ["stun:s"]}]})

    def test_none(self):
        self.assertEqual(IceServers(CallsConfig(), self.clock).for_user(USER),
                         {"iceServers": []})

    def test_turn_needs_a_secret(self):
        error = self.assertRaises(ConfigError, IceServers,
                                  CallsConfig(turn_urls=("turn:t",)),
                                  self.clock)
        self.assertIn("calls.turn_secret", str(error))


class IceServersRouteTests(TestCase):
    async def client(self):
        return await api_client(
            self, calls_stun_urls=["stun:stun.example.com"],
            calls_turn_urls=["turn:turn.example.com:3478"],
            calls_turn_secret=SECRET, calls_turn_credential_lifetime=300)

    async def test_signed_in(self):
        client, _ = await self.client()
        user, token = await sign_up(client, "alice")
        for path in ("/api/v1/ice-servers", "/ice-servers"):
            code, answer = await client.call("GET", path, token=token)
            self.assertEqual((code, answer["code"]), (200, 0))
            data = answer["data"]
            stun, turn = data["iceServers"]
            self.assertEqual(stun, {"urls": ["stun:stun.example.com"]})
            self.assertEqual(turn["urls"], ["turn:turn.example.com:3478"])
            expiry, _, who = turn["username"].partition(":")
            self.assertEqual(who, user["uuid"])
            self.assertEqual(int(expiry), data["expiresAt"])
            self.assertEqual(data["ttl"], 300)
            self.assertEqual(turn["credential"],
                             coturn_password(SECRET, turn["username"]))

    async def test_not_signed_in(self):
        client, _ = await self.client()
        code, answer = await client.call("GET", "/api/v1/ice-servers")
        self.assertEqual((code, answer["code"], answer["data"]), (401, -1, None))
        code, answer = await client.call("GET", "/api/v1/ice-servers",
                                         token="not-a-token")
        self.assertEqual((code, answer["code"]), (401, -1))
