"""
The access log leaves credentials out.
"""

from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from chatd.web.accesslog import access_log_formatter, redact


class RedactTests(unittest.TestCase):
    def test_redact(self):
        self.assertEqual(redact(b"/socket.io?user=u1&token=eyJ.abc.def"),
                         b"/socket.io?user=u1&token=REDACTED")
        self.assertEqual(redact(b"/x?TOKEN=a&password=b&access_token=c&q=1"),
                         b"/x?TOKEN=REDACTED&password=REDACTED"
                         b"&access_token=REDACTED&q=1")
        self.assertEqual(redact(b"/user?uuid=1&mytoken=2"),
                         b"/user?uuid=1&mytoken=2")

    def test_formatter(self):
        request = DummyRequest([b"socket.io"])
        request.uri = b"/socket.io?user=u1&token=secret"
        request.method = b"GET"
        request.clientproto = b"HTTP/1.1"
        request.code = 101
        request.sentLength = 0
        line = access_log_formatter("[25/Nov/2026:04:20:00 +0000]", request)
        self.assertIn("token=REDACTED", line)
        self.assertNotIn("secret", line)
        self.assertEqual(request.uri, b"/socket.io?user=u1&token=secret")
