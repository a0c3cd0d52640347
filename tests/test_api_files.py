"""
Files over HTTP: avatar uploads (POST /file), downloads (GET /file/<name>)
with types, nosniff, attachments, Range; limits and traversal refusals; and
the sniffing of types from the first bytes.
"""

import json
import os

from twisted.trial import unittest

from chatd import files as files_module
from chatd.errors import BadRequest, NotFound, PayloadTooLarge
from chatd.files import check_name, is_inline, sniff
from chatd.stores.messages import ONE_TO_ONE, NewMessage
from tests.helpers import api_client, multipart, sign_up
from tests.test_api_social import NOBODY

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class SniffTests(unittest.TestCase):
    def test_magic(self):
        cases = [
            (PNG, "image/png", "png"),
            (b"\xff\xd8\xff\xe0rest", "image/jpeg", "jpg"),
            (b"GIF89a....", "image/gif", "gif"),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", "webp"),
            (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav", "wav"),
            (b"%PDF-1.7\n", "application/pdf", "pdf"),
            (b"PK\x03\x04rest", "application/zip", "zip"),
            (b"ID3\x04\x00", "audio/mpeg", "mp3"),
            (b"\xff\xfb\x90\x00", "audio/mpeg", "mp3"),
            (b"\xff\xf1\x50\x80", "audio/aac", "aac"),
            (b"OggS\x00\x02", "audio/ogg", "ogg"),
            (b"GIF87a....", "image/gif", "gif"),
            (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo", "avi"),
            (b"\x1f\x8b\x08\x00", "application/gzip", "gz"),
            (b"7z\xbc\xaf\x27\x1c\x00\x04", "application/x-7z-compressed", "7z"),
            (b"Rar!\x1a\x07\x01\x00", "application/vnd.rar", "rar"),
            (b"fLaC\x00\x00\x00\x22", "audio/flac", "flac"),
            (b"#!AMR\n", "audio/amr", "amr"),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska",
             "video/x-matroska", "mkv"),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm",
             "video/webm", "webm"),
            (b"\x00\x00\x00\x18ftypmp42", "video/mp4", "mp4"),
            (b"\x00\x00\x00\x18ftypM4A ", "audio/mp4", "m4a"),
            (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
             "image/svg+xml", "svg"),
            (b"<?xml version='1.0'?>\n<svg></svg>", "image/svg+xml", "svg"),
            (b"\xef\xbb\xbf  <!DOCTYPE html><p>x", "text/html", "html"),
            (b"<script>alert(1)</script>", "text/html", "html"),
            (b"hello, world\n", "text/plain", "txt"),
            (b"\x00\x01\x02\x03", "application/octet-stream", "bin"),
        ]
        for data, media_type, extension in cases:
            self.assertEqual(sniff(data), (media_type, extension), data[:12])

    def test_suffix_only_among_harmless_types(self):
        self.assertEqual(sniff(b"PK\x03\x04x", "docx")[1], "docx")
        self.assertEqual(sniff(b"\x00\x01", "doc"),
                         ("application/msword", "doc"))
        self.assertEqual(sniff(b"\x00\x01", "html"),
                         ("application/octet-stream", "bin"))
        self.assertEqual(sniff(b"\x00\x01", "exe")[1], "bin")
        self.assertEqual(sniff(b"a,b\n1,2\n", "csv"), ("text/plain", "csv"))
        self.assertEqual(sniff(PNG, "html"), ("image/png", "png"))

    def test_inline(self):
        for media_type in ("image/png", "audio/mpeg", "video/mp4", "text/plain"):
            self.assertTrue(is_inline(media_type))
        for media_type in ("text/html", "image/svg+xml", "application/xml",
                           "application/pdf", "application/octet-stream"):
            self.assertFalse(is_inline(media_type))

    def test_names(self):
        good = "0123456789abcdef0123456789abcdef.png"
        self.assertEqual(check_name(good), good)
        for bad, error in [("../token_secret", BadRequest),
                           ("/etc/passwd", BadRequest),
                           ("..\\x", BadRequest), ("a\x00.png", BadRequest),
                           ("..", NotFound), ("chatd.sqlite3", NotFound),
                           (good.upper(), NotFound), (good + ".html", NotFound)]:
            self.assertRaises(error, check_name, bad)


class UploadTests(unittest.TestCase):
    async def _setup(self, **changes):
        self.client, self.parts = await api_client(self, **changes)
        self.alice, self.token = await sign_up(self.client, "alice")
        self.bob, self.bob_token = await sign_up(self.client, "bob")

    async def upload(self, uuid, data, filename="me.png", token=None):
        body, headers = multipart([("uuid", uuid)], [("file", filename, data)])
        return await self.client.call("POST", "/file", token=token or self.token,
                                      data=body, headers=headers)

    async def test_upload_budget(self):
        """
        Avatars count against the same per-user budget of bytes as
        attachments: past it an upload gets 429 with Retry-After, and
        another user is not affected.
        """
        await self._setup(files_upload_bytes_per_hour=4 * len(PNG) * 2)
        for _ in range(2):
            code, _ = await self.upload(self.alice["uuid"], PNG)
            self.assertEqual(code, 200)
        body, headers = multipart([("uuid", self.alice["uuid"])], [("file", "me.png", PNG)])
        response, raw = await self.client.request(
            "POST", "/file", token=self.token, data=body, headers=headers)
        self.assertEqual(response.code, 429)
        self.assertTrue(json.loads(raw)["msg"].startswith("too many bytes of files"))
        self.assertTrue(response.headers.getRawHeaders("retry-after"))
        code, _ = await self.upload(self.bob["uuid"], PNG, token=self.bob_token)
        self.assertEqual(code, 200)

    async def test_too_many_parts(self):
        """
        A form of more parts than an upload has is refused before it is
        parsed (150,000 tiny parts took the parser 18 s); sixteen is fine.
        """
        await self._setup()
        fields = [("uuid", self.alice["uuid"])]
        for extra, status in ((14, 200), (15, 400), (5000, 400)):
            body, headers = multipart(
                fields + [(f"f{i}", "x") for i in range(extra)],
                [("file", "me.png", PNG)])
            boundary = headers["Content-Type"].partition("boundary=")[2]
            # Every way the parser reads a boundary is counted.
            for form in (f"Boundary={boundary}", f'boundary="{boundary}"',
                         f"boundary*=utf-8''{boundary}", f"boundary = {boundary}",
                         f"boundary*0={boundary[:5]}; boundary*1={boundary[5:]}",
                         f"xboundary=nothing; boundary={boundary}"):
                headers["Content-Type"] = "multipart/form-data; " + form
                code, answer = await self.client.call(
                    "POST", "/file", token=self.token, data=body, headers=headers)
                self.assertEqual(code, status, (extra, form))
                if status == 400:
                    self.assertEqual(answer["msg"], "body: more than 16 parts")

    async def test_parsed_off_the_event_loop(self):
        """
        The body is parsed on a thread of the pool, not the event loop.
        """
        import threading

        from chatd.web import api

        await self._setup()
        threads = []

        def parse(content_type, raw):
            threads.append(threading.current_thread())
            return original(content_type, raw)

        original = api.parse_multipart
        self.patch(api, "parse_multipart", parse)
        code, _ = await self.upload(self.alice["uuid"], PNG)
        self.assertEqual(code, 200)
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())

    async def test_avatar(self):
        await self._setup()
        code, answer = await self.upload(self.alice["uuid"], PNG,
                                         filename="../../evil.html")
        self.assertEqual(code, 200)
        name = answer["data"]
        self.assertRegex(name, r"^[0-9a-f]{32}\.png$")
        code, user = await self.client.call(
            "GET", "/user/" + self.alice["uuid"], token=self.token)
        self.assertEqual(user["data"]["avatar"], name)
        path = os.path.join(self.parts.files.directory, name)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), PNG)
        response, body = await self.client.request("GET", "/file/" + name)
        self.assertEqual(response.code, 200)
        self.assertEqual(body, PNG)
        headers = response.headers
        self.assertEqual(headers.getRawHeaders("content-type"), ["image/png"])
        self.assertEqual(headers.getRawHeaders("x-content-type-options"),
                         ["nosniff"])
        self.assertIsNone(headers.getRawHeaders("content-disposition"))
        self.assertEqual(headers.getRawHeaders("accept-ranges"), ["bytes"])
        # Browsers may keep it; shared caches may not (recall deletes it).
        self.assertEqual(headers.getRawHeaders("cache-control"),
                         ["private, max-age=31536000, immutable"])

    async def test_replaced_avatar_removed_unless_used(self):
        await self._setup()
        _, first = await self.upload(self.alice["uuid"], PNG)
        _, second = await self.upload(self.alice["uuid"], PNG + b"2")
        directory = self.parts.files.directory
        self.assertEqual(os.listdir(directory), [second["data"]])
        response, _ = await self.client.request("GET", "/file/" + first["data"])
        self.assertEqual(response.code, 404)
        # A file a message points to stays.
        alice = await self.parts.users.get_by_uuid(self.alice["uuid"])
        bob = await self.parts.users.get_by_uuid(self.bob["uuid"])
        await self.parts.messages.insert_batch([NewMessage(
            alice.id, None, ONE_TO_ONE, bob.id, 3, "", second["data"])], 1)
        _, third = await self.upload(self.alice["uuid"], PNG + b"3")
        self.assertEqual(sorted(os.listdir(directory)),
                         sorted([second["data"], third["data"]]))

    async def test_saved_durably(self):
        """
        Before a save returns, the directory holding the file store's
        directory is flushed (when the store's directory was just made),
        then the file's bytes, then the directory holding its final name.
        """
        await self._setup()
        flushed = []
        real_fsync = os.fsync

        def fsync(descriptor):
            flushed.append(os.readlink(f"/proc/self/fd/{descriptor}"))
            real_fsync(descriptor)

        self.patch(files_module.os, "fsync", fsync)
        directory = self.parts.files.directory
        stored = await self.parts.files.save(None, PNG)
        self.assertEqual(flushed, [os.path.dirname(directory),
                                   os.path.join(directory, stored.name + ".part"), directory])
        del flushed[:]
        stored = await self.parts.files.save(None, PNG)
        self.assertEqual(flushed, [os.path.join(directory, stored.name + ".part"),
                                   directory])

    async def test_failed_save_leaves_nothing(self):
        """
        A save that fails (the disk is full) leaves no partial file, and
        the store's directory is the service's alone.
        """
        import errno

        await self._setup()
        await self.parts.files.save(None, PNG)
        directory = self.parts.files.directory
        self.assertEqual(os.stat(directory).st_mode & 0o777, 0o700)
        before = sorted(os.listdir(directory))

        def full(descriptor):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(files_module.os, "fsync", full)
        with self.assertRaises(OSError):
            await self.parts.files.save(None, PNG)
        self.assertEqual(sorted(os.listdir(directory)), before)

    async def test_range(self):
        await self._setup()
        _, answer = await self.upload(self.alice["uuid"], PNG)
        name = answer["data"]
        response, body = await self.client.request(
            "GET", "/file/" + name, headers={"Range": "bytes=8-15"})
        self.assertEqual(response.code, 206)
        self.assertEqual(body, PNG[8:16])
        self.assertEqual(response.headers.getRawHeaders("content-range"),
                         [f"bytes 8-15/{len(PNG)}"])
        response, body = await self.client.request(
            "GET", "/file/" + name, headers={"Range": "bytes=-4"})
        self.assertEqual((response.code, body), (206, PNG[-4:]))
        response, _ = await self.client.request(
            "GET", "/file/" + name, headers={"Range": "bytes=99999-"})
        self.assertEqual(response.code, 416)
        # A suffix longer than the file is the whole file (RFC 9110).
        for suffix in (len(PNG) + 1, 10**20):
            response, body = await self.client.request(
                "GET", "/file/" + name, headers={"Range": f"bytes=-{suffix}"})
            self.assertEqual((response.code, body), (206, PNG), suffix)
            self.assertEqual(response.headers.getRawHeaders("content-range"),
                             [f"bytes 0-{len(PNG) - 1}/{len(PNG)}"])
        for huge in ("bytes=0-99999999999999999999", "bytes=99999999999999999999-"):
            response, _ = await self.client.request(
                "GET", "/file/" + name, headers={"Range": huge})
            self.assertIn(response.code, (206, 416), huge)

    async def test_ranges_of_several_parts_or_none(self):
        """
        A Range of several parts, overlapping or not, or of none, gets the
        whole file once: never a part per range asked (a 1 KiB file asked
        for 200 times over), and never a request left hanging.
        """
        await self._setup()
        _, answer = await self.upload(self.alice["uuid"], PNG)
        name = answer["data"]
        for header in ("bytes=0-,0-", ",".join(["bytes=0-"] + ["0-"] * 199),
                       ",".join(["bytes=0-0"] + ["0-0"] * 999), "bytes=0-3,8-11",
                       "bytes=,", "bytes= , "):
            response, body = await self.client.request(
                "GET", "/file/" + name, headers={"Range": header})
            self.assertEqual((response.code, body), (200, PNG), header[:20])
            self.assertIsNone(response.headers.getRawHeaders("content-range"))

    async def test_failure_while_serving_a_file(self):
        """
        A file that fails to be served once its headers are set is answered
        with a whole 500 envelope, without the file's length or range.
        """
        from chatd.web import ranges

        await self._setup()
        _, answer = await self.upload(self.alice["uuid"], PNG)
        self.patch(ranges.SingleRangeFile, "_rangeToOffsetAndSize",
                   lambda resource, start, end: (-5, 10))
        response, body = await self.client.request(
            "GET", "/file/" + answer["data"], headers={"Range": "bytes=0-9"})
        self.assertEqual(response.code, 500)
        self.assertEqual(json.loads(body)["msg"], "internal error")
        self.assertIsNone(response.headers.getRawHeaders("content-range"))
        self.assertIn(response.headers.getRawHeaders("content-length"),
                      (None, [str(len(body))]))
        self.assertEqual(len(self.flushLoggedErrors(ValueError, OSError)), 1)

    async def test_refusals(self):
        await self._setup()
        for uuid, status in [(self.bob["uuid"], 403), (NOBODY, 404), ("", 400)]:
            code, answer = await self.upload(uuid, PNG)
            self.assertEqual((code, answer["code"]), (status, -1), uuid)
        code, answer = await self.upload(self.alice["uuid"], PNG, token="bad")
        self.assertEqual(code, 401)
        body, headers = multipart([], [("file", "a.png", PNG)])
        code, answer = await self.client.call(
            "POST", "/file", token=self.token, data=body, headers=headers)
        self.assertEqual((code, answer["msg"]), (400, "uuid: required"))
        code, user = await self.client.call(
            "GET", "/user/" + self.bob["uuid"], token=self.bob_token)
        self.assertEqual(user["data"]["avatar"], "")

    async def test_bad_uploads(self):
        await self._setup()
        cases = [
            (b"<html><script>alert(1)</script></html>", 400,
             "file: an avatar must be a PNG, JPEG, GIF or WebP image"),
            (b"<svg onload='alert(1)'/>", 400,
             "file: an avatar must be a PNG, JPEG, GIF or WebP image"),
            (b"", 400, "file: the file is empty"),
        ]
        for data, status, message in cases:
            code, answer = await self.upload(self.alice["uuid"], data)
            self.assertEqual((code, answer["msg"]), (status, message), data)
        body, headers = multipart([("uuid", self.alice["uuid"])])
        code, answer = await self.client.call(
            "POST", "/file", token=self.token, data=body, headers=headers)
        self.assertEqual((code, answer["msg"]), (400, "file: required"))
        code, answer = await self.client.call(
            "POST", "/file", token=self.token, json={"uuid": self.alice["uuid"]})
        self.assertEqual(code, 400)
        self.assertEqual(os.listdir(self.parts.files.directory)
                         if os.path.isdir(self.parts.files.directory) else [], [])

    async def test_too_large(self):
        await self._setup(files_max_upload_bytes=1000)
        code, answer = await self.upload(self.alice["uuid"], PNG)
        self.assertEqual((code, answer["msg"]),
                         (413, "the file is larger than 1000 bytes"))
        self.assertFalse(os.path.isdir(self.parts.files.directory)
                         and os.listdir(self.parts.files.directory))
        with self.assertRaises(PayloadTooLarge):
            await self.parts.files.save(None, b"x" * 1001)


class DownloadTests(unittest.TestCase):
    async def _setup(self):
        self.client, self.parts = await api_client(self)

    async def test_active_types_are_attachments(self):
        await self._setup()
        for data, media_type in [
                (b"<!doctype html><script>alert(1)</script>", "text/html"),
                (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
                (b"<?xml version='1.0'?><x/>", "application/xml"),
                (b"%PDF-1.4", "application/pdf"),
                (b"\x00\x01\x02", "application/octet-stream")]:
            stored = await self.parts.files.save(None, data)
            self.assertEqual(stored.media_type, media_type)
            response, body = await self.client.request("GET", "/file/" + stored.name)
            self.assertEqual(response.code, 200)
            self.assertEqual(body, data)
            headers = response.headers
            self.assertEqual(headers.getRawHeaders("content-disposition"),
                             [f'attachment; filename="{stored.name}"'])
            self.assertEqual(headers.getRawHeaders("x-content-type-options"),
                             ["nosniff"])
            self.assertIn("sandbox",
                          headers.getRawHeaders("content-security-policy")[0])
            self.assertEqual(headers.getRawHeaders("content-type")[0], media_type
                             if not media_type.startswith("text/")
                             else media_type + "; charset=utf-8")

    async def test_text_inline(self):
        await self._setup()
        stored = await self.parts.files.save(None, b"just text", "txt")
        response, body = await self.client.request("GET", "/file/" + stored.name)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["text/plain; charset=utf-8"])
        self.assertIsNone(response.headers.getRawHeaders("content-disposition"))

    async def test_head(self):
        await self._setup()
        stored = await self.parts.files.save(None, PNG)
        response, body = await self.client.request("HEAD", "/file/" + stored.name)
        self.assertEqual((response.code, body), (200, b""))

    async def test_traversal(self):
        await self._setup()
        secret_dir = self.parts.config.server.data_dir
        self.assertTrue(os.path.exists(os.path.join(secret_dir, "token_secret")))
        paths = [
            "/file/../token_secret", "/file/..%2Ftoken_secret",
            "/file/..%2F..%2Fetc%2Fpasswd", "/file/%2Fetc%2Fpasswd",
            "/file/..%5Ctoken_secret", "/file/%2e%2e%2ftoken_secret",
            "/file/x%00.png", "/file/token_secret", "/file/..",
            "/file/%252e%252e%252ftoken_secret", "/file//etc/passwd",
            "/file/0123456789abcdef0123456789abcdef.png",
            "/api/v1/file/..%2Ftoken_secret",
        ]
        for path in paths:
            response, body = await self.client.request("GET", path)
            self.assertIn(response.code, (400, 404), path)
            self.assertEqual(response.headers.getRawHeaders("content-type"),
                             ["application/json; charset=utf-8"], path)
