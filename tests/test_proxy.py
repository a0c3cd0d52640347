"""
Clients behind trusted reverse proxies: X-Forwarded-For and
X-Forwarded-Proto believed only from them.
"""

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from chatd.web.proxy import ProxyPolicy
from tests.helpers import api_client, sign_up


def request_from(peer, secure=False, **headers):
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", peer, 40000)
    request.isSecure = lambda: secure
    for name, value in headers.items():
        request.requestHeaders.addRawHeader(name.replace("_", "-"), value)
    return request


class ProxyPolicyTests(unittest.TestCase):
    def test_untrusted_peer_headers_ignored(self):
        policy = ProxyPolicy(["10.0.0.0/8"])
        request = request_from("203.0.113.9", x_forwarded_for=b"1.2.3.4",
                               x_forwarded_proto=b"https")
        self.assertEqual(policy.client_address(request), "203.0.113.9")
        self.assertFalse(policy.is_secure(request))

    def test_no_proxies_configured(self):
        policy = ProxyPolicy()
        request = request_from("10.0.0.1", x_forwarded_for=b"1.2.3.4")
        self.assertEqual(policy.client_address(request), "10.0.0.1")

    def test_trusted_proxy(self):
        policy = ProxyPolicy(["10.0.0.0/8", "127.0.0.1"])
        request = request_from(
            "10.1.2.3", x_forwarded_for=b"198.51.100.7, 10.9.9.9",
            x_forwarded_proto=b"https")
        self.assertEqual(policy.client_address(request), "198.51.100.7")
        self.assertTrue(policy.is_secure(request))

    def test_spoofed_left_entries_ignored(self):
        policy = ProxyPolicy(["10.0.0.1"])
        request = request_from(
            "10.0.0.1", x_forwarded_for=b"6.6.6.6, 198.51.100.7")
        self.assertEqual(policy.client_address(request), "198.51.100.7")

    def test_garbage(self):
        policy = ProxyPolicy(["10.0.0.1"])
        request = request_from("10.0.0.1", x_forwarded_for=b"not-an-ip")
        self.assertEqual(policy.client_address(request), "10.0.0.1")
        self.assertEqual(policy.client_address(request_from("10.0.0.1")),
                         "10.0.0.1")
        self.assertFalse(policy.is_secure(request_from(
            "10.0.0.1", x_forwarded_proto=b"http")))


class BehindProxyTests(unittest.TestCase):
    async def test_limits_per_forwarded_address_and_secure_cookie(self):
        # StubTreq's requests come from 127.0.0.1.
        client, _ = await api_client(
            self, server_trusted_proxies=["127.0.0.1"],
            auth_login_address_burst=1, auth_login_address_per_hour=1,
            auth_login_account_burst=100)
        await sign_up(client, "alice")
        for address in ("198.51.100.1", "198.51.100.2"):
            code, _ = await client.call(
                "POST", "/user/login",
                json={"username": "alice", "password": "wrong-pass"},
                headers={"X-Forwarded-For": address})
            self.assertEqual(code, 401, address)
        code, _ = await client.call(
            "POST", "/user/login",
            json={"username": "alice", "password": "wrong-pass"},
            headers={"X-Forwarded-For": "198.51.100.1"})
        self.assertEqual(code, 429)
        response, _ = await client.request(
            "POST", "/user/login",
            json={"username": "alice", "password": "password1"},
            headers={"X-Forwarded-For": "198.51.100.3",
                     "X-Forwarded-Proto": "https"})
        self.assertEqual(response.code, 200)
        self.assertIn("Secure", response.headers.getRawHeaders("set-cookie")[0])


class ConfigTests(unittest.TestCase):
    def test_checked(self):
        from chatd.config import ConfigError, config_from_dict

        config = config_from_dict(
            {"server": {"trusted_proxies": ["10.0.0.0/8", "::1"]}})
        self.assertEqual(config.server.trusted_proxies, ("10.0.0.0/8", "::1"))
        error = self.assertRaises(
            ConfigError, config_from_dict,
            {"server": {"trusted_proxies": ["proxy.example"]}}, "x.toml")
        self.assertIn("x.toml: server.trusted_proxies", str(error))
