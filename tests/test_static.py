"""
The optional web client at /: files as they are, index.html for client
routes, API routes and /healthz above it, no way out of the directory.
"""

import os

from twisted.trial import unittest

from tests.helpers import api_client, sign_up

INDEX = b"<!doctype html><title>go-chat-web</title>"


def make_client_build(testcase):
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(os.path.join(directory, "static", "js"))
    with open(os.path.join(directory, "index.html"), "wb") as f:
        f.write(INDEX)
    with open(os.path.join(directory, "static", "js", "main.js"), "wb") as f:
        f.write(b"console.log('hi');")
    with open(os.path.join(directory, ".env"), "wb") as f:
        f.write(b"SECRET=1")
    with open(os.path.join(os.path.dirname(directory), "outside.txt"), "wb") as f:
        f.write(b"outside")
    return directory


class StaticTests(unittest.TestCase):
    async def _setup(self):
        self.build = make_client_build(self)
        self.client, self.parts = await api_client(
            self, server_static_dir=self.build)

    async def test_index_and_files(self):
        await self._setup()
        for path in ("/", "/login", "/panel/3dc7b4d4-ffd9-43e6-b79f-e92a0cab1cb1",
                     "/static"):
            response, body = await self.client.request("GET", path)
            self.assertEqual((response.code, body), (200, INDEX), path)
            self.assertEqual(response.headers.getRawHeaders("content-type"),
                             ["text/html"])
            self.assertEqual(response.headers.getRawHeaders("cache-control"),
                             ["no-cache"])
            self.assertEqual(response.headers.getRawHeaders("x-frame-options"), ["DENY"])
            self.assertEqual(response.headers.getRawHeaders("content-security-policy"),
                             ["frame-ancestors 'none'"])
        response, body = await self.client.request("GET", "/static/js/main.js")
        self.assertEqual((response.code, body), (200, b"console.log('hi');"))
        self.assertIn("javascript",
                      response.headers.getRawHeaders("content-type")[0])
        self.assertEqual(response.headers.getRawHeaders("x-content-type-options"),
                         ["nosniff"])

    async def test_ranges(self):
        """
        One range is served as asked; several are ignored for the whole
        file (Twisted's multipart answer could hang or multiply the file).
        """
        await self._setup()
        whole = b"console.log('hi');"
        for header, code, body in (("bytes=0-6", 206, whole[:7]),
                                   ("bytes=0-,0-", 200, whole),
                                   ("bytes=0-1,4-5", 200, whole)):
            response, got = await self.client.request(
                "GET", "/static/js/main.js", headers={"Range": header})
            self.assertEqual((response.code, got), (code, body), header)

    async def test_missing_asset(self):
        await self._setup()
        response, _ = await self.client.request("GET", "/static/js/nope.js")
        self.assertEqual(response.code, 404)

    async def test_no_way_out(self):
        await self._setup()
        for path in ("/../outside.txt", "/%2e%2e/outside.txt",
                     "/..%2Foutside.txt", "/static/..%2F..%2Foutside.txt",
                     "/.env", "/x%00.js", "/%5C..%5Coutside.txt"):
            response, body = await self.client.request("GET", path)
            self.assertNotIn(b"outside", body, path)
            self.assertNotIn(b"SECRET", body, path)
            self.assertIn(response.code, (200, 400, 404), path)
            if response.code == 200:
                self.assertEqual(body, INDEX, path)

    async def test_api_above_client(self):
        await self._setup()
        alice, token = await sign_up(self.client, "alice")
        code, answer = await self.client.call("GET", "/user/" + alice["uuid"],
                                              token=token)
        self.assertEqual((code, answer["data"]["username"]), (200, "alice"))
        code, _ = await self.client.call("GET", "/api/v1/user/" + alice["uuid"],
                                         token=token)
        self.assertEqual(code, 200)
        code, answer = await self.client.call("GET", "/group/user/x", token=token)
        self.assertEqual(code, 404)
        response, body = await self.client.request("GET", "/healthz")
        self.assertEqual(response.code, 200)
        self.assertIn(b'"status"', body)

    async def test_only_get(self):
        await self._setup()
        response, _ = await self.client.request("POST", "/login")
        self.assertEqual(response.code, 405)

    async def test_without_static_dir(self):
        client, _ = await api_client(self)
        code, answer = await client.call("GET", "/")
        self.assertEqual((code, answer["code"]), (404, -1))
        code, answer = await client.call("GET", "/panel/x")
        self.assertEqual((code, answer["code"]), (404, -1))
