"""
A request body limit enforced while the body streams in, before it is
stored whole: a declared C{Content-Length} over the limit is refused at
once, and a chunked body as soon as it passes the limit, with 413 and the
envelope, and the connection is closed.
"""

from io import BytesIO

from twisted.logger import Logger
from twisted.web.server import Request

from chatd.web.envelope import _json

log = Logger()


def limited_request_factory(max_body_bytes, larger=None):
    """
    A L{Request} class that refuses bodies over C{max_body_bytes}, or over
    the limit C{larger} gives a C{(method, path)} (the path without its
    query), such as an upload's: nobody may make the server spool an
    upload's worth of body to a route that reads a small one.
    """
    larger = dict(larger or {})

    class LimitedRequest(Request):
        max_body = max_body_bytes
        _refused = False
        _received = 0

        def gotLength(self, length):
            # The request line is the channel's until the body is in.
            channel = self.channel
            route = (getattr(channel, "_command", None),
                     (getattr(channel, "_path", None) or b"").split(b"?", 1)[0])
            self.max_body = larger.get(route, max_body_bytes)
            if length is not None and length > self.max_body:
                self._refuse()
                return
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self._refused:
                return
            self._received += len(data)
            if self._received > self.max_body:
                self._refuse()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command, path, version):
            if self._refused:
                return
            super().requestReceived(command, path, version)

        def _refuse(self):
            self._refused = True
            # No "100 Continue" after the refusal.
            self.requestHeaders.removeHeader(b"expect")
            if self.content is None:
                self.content = BytesIO()
            log.info("Refused a request body over {limit} bytes",
                     limit=self.max_body)
            body = _json({"code": -1,
                          "msg": f"the body is larger than {self.max_body} bytes",
                          "data": None})
            self.channel.transport.write(
                b"HTTP/1.1 413 Payload Too Large\r\n"
                b"Content-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n" + body)
            self.channel.loseConnection()

    return LimitedRequest
