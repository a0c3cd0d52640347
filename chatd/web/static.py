"""
Serving a web client build (e.g. go-chat-web) from C{server.static_dir} at
C{/}, below the API: existing files as they are, and the client's
C{index.html} for any other path without a file extension, so that
client-side routes such as C{/panel/<uuid>} load the app.
"""

import os

from twisted.web.resource import Resource

from chatd.web import envelope
from chatd.web.ranges import SingleRangeFile


class SpaResource(Resource):
    isLeaf = True

    def __init__(self, directory):
        super().__init__()
        self._root = os.path.realpath(directory)

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return envelope.failure(request, 405, "method not allowed")
        segments = list(request.postpath)
        return self._serve(request, [s for s in segments if s != b""])

    def _serve(self, request, segments):
        try:
            names = [s.decode("utf-8") for s in segments]
        except UnicodeDecodeError:
            return envelope.failure(request, 400, "bad path")
        for name in names:
            if name in (".", "..") or "\x00" in name or "/" in name \
                    or "\\" in name or name.startswith("."):
                return envelope.failure(request, 404, "not found")
        path = os.path.realpath(os.path.join(self._root, *names))
        if path != self._root and not path.startswith(self._root + os.sep):
            return envelope.failure(request, 404, "not found")
        if os.path.isdir(path):
            path = os.path.join(path, "index.html")
        if not os.path.isfile(path):
            if names and "." in names[-1]:
                return envelope.failure(request, 404, "not found")
            path = os.path.join(self._root, "index.html")
            if not os.path.isfile(path):
                return envelope.failure(request, 404, "not found")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if path.endswith(".html"):
            request.setHeader(b"cache-control", b"no-cache")
            # No other site may frame the client (clickjacking).
            request.setHeader(b"x-frame-options", b"DENY")
            request.setHeader(b"content-security-policy", b"frame-ancestors 'none'")
        resource = SingleRangeFile(path)
        return resource.render(request)
