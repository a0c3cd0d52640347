"""
End-to-end flows on a real loopback server: register, log in, use the
cookie, upload an avatar and fetch it back with a Range request; the body
limit enforced while a request streams in; CORS; the Secure cookie and HSTS
on TLS.
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from tests.helpers import (
    base_url,
    http_client,
    listening_ports,
    make_tls_files,
    multipart,
    start_server,
    test_config,
    tls_listen,
)
from tests.test_api_files import PNG


class _Raw(Protocol):
    """
    Sends bytes, collects the answer until the server closes.
    """

    def __init__(self, chunks):
        self._chunks = chunks
        self.received = b""
        self.done = Deferred()

    def connectionMade(self):
        for chunk in self._chunks:
            self.transport.write(chunk)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.done.callback(self.received)


async def raw_exchange(port, chunks):
    protocol = _Raw(chunks)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    await connectProtocol(endpoint, protocol)
    return await protocol.done


class FlowTests(unittest.TestCase):
    async def _server(self, **changes):
        changes.setdefault("auth_scrypt_log2_n", 10)
        self.config = test_config(self, **changes)
        self.service = await start_server(self, self.config)
        self.url = base_url(self.service)
        self.http = http_client()

    async def call(self, method, path, **kwargs):
        response = await self.http.request(method, self.url + path, **kwargs)
        return response, await response.content()

    async def test_register_login_cookie_avatar_range(self):
        await self._server()
        response, body = await self.call("POST", "/user/register", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(response.code, 201)
        response, body = await self.call("POST", "/user/login", json={
            "username": "alice", "password": "password1"})
        self.assertEqual(response.code, 200)
        user = json.loads(body)["data"]
        set_cookie = response.headers.getRawHeaders("set-cookie")[0]
        self.assertIn("HttpOnly", set_cookie)
        self.assertIn("SameSite=Lax", set_cookie)
        self.assertNotIn("Secure", set_cookie)
        self.assertIsNone(response.headers.getRawHeaders("strict-transport-security"))
        cookie = set_cookie.split(";")[0]
        headers = {"Cookie": cookie}
        response, body = await self.call("GET", "/user/" + user["uuid"],
                                         headers=headers)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["data"]["username"], "alice")
        data, multipart_headers = multipart(
            [("uuid", user["uuid"])], [("file", "me.png", PNG)])
        response, body = await self.call(
            "POST", "/file", data=data,
            headers=dict(headers, **multipart_headers))
        self.assertEqual(response.code, 200, body)
        name = json.loads(body)["data"]
        response, body = await self.call("GET", "/user/" + user["uuid"],
                                         headers=headers)
        self.assertEqual(json.loads(body)["data"]["avatar"], name)
        response, body = await self.call("GET", "/file/" + name,
                                         headers={"Range": "bytes=0-7"})
        self.assertEqual(response.code, 206)
        self.assertEqual(body, PNG[:8])
        self.assertEqual(response.headers.getRawHeaders("content-range"),
                         [f"bytes 0-7/{len(PNG)}"])
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["image/png"])
        response, body = await self.call("POST", "/user/logout", headers=headers)
        self.assertEqual(response.code, 200)
        response, body = await self.call("GET", "/user/" + user["uuid"],
                                         headers=headers)
        self.assertEqual(response.code, 401)

    async def test_declared_body_over_limit(self):
        await self._server(files_max_upload_bytes=1000)
        port = listening_ports(self.service)[0]
        answer = await raw_exchange(port, [
            b"POST /file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 50000000\r\n\r\n", b"--x\r\n"])
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
        self.assertEqual(json.loads(body)["code"], -1)
        self.assertFalse(os.path.exists(
            os.path.join(self.config.server.data_dir, "files")))

    async def test_only_uploads_may_be_large(self):
        """
        A body over the JSON limit is refused before it is stored on any
        route but an upload, signed in or not: nobody makes the server
        spool an upload's worth of body to the sign-in route.
        """
        await self._server(files_max_upload_bytes=1000000)
        port = listening_ports(self.service)[0]
        for path in (b"/user/login", b"/user/register?x=1", b"/file/x.png", b"/api/v1/search"):
            answer = await raw_exchange(port, [
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: 500000\r\n\r\n", b"{"])
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 413 "), (path, head))
            self.assertEqual(json.loads(body)["msg"], "the body is larger than 65536 bytes")
        for path in (b"/file?x=1", b"/api/v1/file"):
            answer = await raw_exchange(port, [
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: 500000\r\n\r\n", b"--x\r\n" + b"x" * 499995])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), (path, answer[:80]))

    async def test_expect_continue_over_limit(self):
        await self._server(files_max_upload_bytes=1000)
        port = listening_ports(self.service)[0]
        answer = await raw_exchange(port, [
            b"POST /file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Expect: 100-continue\r\n"
            b"Content-Length: 50000000\r\n\r\n"])
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:80])
        self.assertNotIn(b"100 Continue", answer)

    async def test_chunked_body_over_limit(self):
        await self._server(files_max_upload_bytes=1000)
        port = listening_ports(self.service)[0]
        chunk = b"x" * 16384
        chunks = [b"POST /file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: multipart/form-data; boundary=x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"]
        chunks += [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * 8
        answer = await raw_exchange(port, chunks)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:80])

    async def test_multipart_bodies_parsed_by_the_routes(self):
        """
        Multipart bodies are the routes' to parse, so what Twisted's form
        parser chokes on gets the envelope: a field named the RFC 2231 way
        (C{name*=}) crashed the request with no answer at all, and a body
        without parts got a bare 400.
        """
        await self._server()
        credentials = json.dumps({"username": "alice", "password": "password1"}).encode()
        json_body = {"Content-Type": "application/json"}
        await self.call("POST", "/user/register", data=credentials, headers=json_body)
        _, answer = await self.call("POST", "/user/login", data=credentials, headers=json_body)
        token = json.loads(answer)["data"]["token"]
        headers = {"Content-Type": "multipart/form-data; boundary=X",
                   "Authorization": f"Bearer {token}"}
        for path, body in (
                ("/user/login", b"--X\r\nContent-Disposition: form-data; name*=utf-8''a"
                                b"\r\n\r\nx\r\n--X--\r\n"),
                ("/file", b"--X--\r\n")):
            response, answer = await self.call("POST", path, data=body, headers=headers)
            self.assertEqual(response.code, 400, (path, answer))
            self.assertEqual(json.loads(answer)["code"], -1)
        headers["Content-Type"] = "multipart/form-data"
        response, answer = await self.call("POST", "/file", data=b"--X--\r\n", headers=headers)
        self.assertEqual((response.code, json.loads(answer)["msg"]),
                         (400, "body: multipart/form-data needs an ASCII boundary"))

    async def test_body_under_limit_passes(self):
        await self._server()
        response, body = await self.call("POST", "/user/register",
                                         data=b"{}" + b" " * 200000,
                                         headers={"Content-Type": "application/json"})
        self.assertEqual(response.code, 413)
        self.assertEqual(json.loads(body)["msg"], "the body is larger than 65536 bytes")

    async def test_cors(self):
        await self._server(server_allowed_origins=["https://app.example.com"])
        response, body = await self.call(
            "OPTIONS", "/user/login",
            headers={"Origin": "https://app.example.com",
                     "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(response.code, 204)
        h = response.headers
        self.assertEqual(h.getRawHeaders("access-control-allow-origin"),
                         ["https://app.example.com"])
        self.assertEqual(h.getRawHeaders("access-control-allow-credentials"),
                         ["true"])
        self.assertIn("POST", h.getRawHeaders("access-control-allow-methods")[0])
        response, body = await self.call(
            "OPTIONS", "/user/login",
            headers={"Origin": "https://evil.example",
                     "Access-Control-Request-Method": "POST"})
        self.assertEqual(response.code, 403)
        self.assertIsNone(response.headers.getRawHeaders(
            "access-control-allow-origin"))
        self.assertEqual(json.loads(body)["code"], -1)
        response, body = await self.call(
            "POST", "/user/login", json={"username": "x", "password": "y"},
            headers={"Origin": "https://evil.example"})
        self.assertIsNone(response.headers.getRawHeaders(
            "access-control-allow-origin"))
        response, body = await self.call(
            "POST", "/user/login", json={"username": "x", "password": "y"},
            headers={"Origin": "https://app.example.com"})
        self.assertEqual(response.headers.getRawHeaders(
            "access-control-allow-origin"), ["https://app.example.com"])
        self.assertEqual(response.headers.getRawHeaders("vary"), ["Origin"])

    async def test_no_cors_by_default(self):
        await self._server()
        response, _ = await self.call(
            "GET", "/user/name?name=x", headers={"Origin": "https://any.example"})
        self.assertEqual(response.code, 401)
        self.assertIsNone(response.headers.getRawHeaders(
            "access-control-allow-origin"))

    async def test_secure_cookie_over_tls(self):
        ca, cert, key = make_tls_files(os.path.abspath(self.mktemp()))
        config = test_config(self, server_listen=[tls_listen(cert, key)],
                             auth_scrypt_log2_n=10)
        service = await start_server(self, config)
        url = base_url(service, scheme="https", host="localhost")
        client = http_client(ca)
        response = await client.post(url + "/user/register", json={
            "username": "alice", "password": "password1"})
        await response.content()
        response = await client.post(url + "/user/login", json={
            "username": "alice", "password": "password1"})
        await response.content()
        self.assertEqual(response.code, 200)
        self.assertIn("Secure", response.headers.getRawHeaders("set-cookie")[0])
        self.assertEqual(response.headers.getRawHeaders("strict-transport-security"),
                         ["max-age=31536000"])
        response = await client.get(url + "/healthz")
        await response.content()
        self.assertEqual(response.headers.getRawHeaders("strict-transport-security"),
                         ["max-age=31536000"])
