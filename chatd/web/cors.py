"""
Cross-origin rules, in one place: which origins may call the API from a
browser (C{server.allowed_origins}, none by default; same-origin requests
always work), the CORS headers, preflight answers, and the check that
refuses cookie-authenticated writes from foreign origins.
"""

from urllib.parse import unquote_to_bytes

from twisted.web.resource import Resource

from chatd.web.envelope import failure
from chatd.web.proxy import ProxyPolicy

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = b"Authorization, Content-Type, Range"
EXPOSED_HEADERS = b"Content-Disposition, Content-Range, Retry-After"


def _header(request, name):
    value = request.getHeader(name)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value


class CorsPolicy:
    def __init__(self, allowed_origins, proxies=None):
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self._allowed_folded = frozenset(o.lower() for o in self.allowed_origins)
        self._proxies = proxies if proxies is not None else ProxyPolicy()

    def _allows(self, origin, host, secure):
        # The one origin rule, for requests and upgrades alike: the
        # server's own origin (https:// when the client came over TLS,
        # directly or through a trusted proxy) or an allowed one. Origins
        # and hosts compare ignoring case.
        origin = origin.strip().rstrip("/").lower()
        own = f"{'https' if secure else 'http'}://{host.strip()}".lower()
        return origin == own or origin in self._allowed_folded

    def is_allowed(self, origin, request):
        """
        Whether C{origin} is this server's own or in the allowlist.
        """
        return self._allows(origin, _header(request, "host") or "",
                            self._proxies.is_secure(request))

    def allows_upgrade(self, origin, host, peer, tls, forwarded_proto_lines):
        """
        L{is_allowed} for a WebSocket upgrade, from the handshake's parts
        (see L{ProxyPolicy.secure_via}): behind a TLS-terminating proxy the
        page's origin is C{https://} although the proxy connects in plain
        text.
        """
        return self._allows(origin, host,
                            self._proxies.secure_via(peer, tls, forwarded_proto_lines))

    def origin_ok(self, request):
        """
        Whether a request may act with the caller's cookie: it has no
        Origin (not a cross-origin browser request), or an allowed one.
        """
        origin = _header(request, "origin")
        return origin is None or self.is_allowed(origin, request)

    def apply(self, request):
        """
        Add the CORS headers a request's origin earns.

        @return: True if the request was a preflight and has been answered.
        """
        origin = _header(request, "origin")
        request.setHeader(b"vary", b"Origin")
        allowed = origin is not None and origin in self.allowed_origins
        if allowed:
            request.setHeader(b"access-control-allow-origin", origin.encode())
            request.setHeader(b"access-control-allow-credentials", b"true")
            request.setHeader(b"access-control-expose-headers", EXPOSED_HEADERS)
        preflight = (request.method == b"OPTIONS" and origin is not None
                     and request.getHeader(b"access-control-request-method"))
        if not preflight:
            return False
        if allowed:
            request.setResponseCode(204)
            request.setHeader(b"access-control-allow-methods", ALLOWED_METHODS)
            request.setHeader(b"access-control-allow-headers", ALLOWED_HEADERS)
            request.setHeader(b"access-control-max-age", b"600")
        else:
            request.setResponseCode(403)
        return True


class CorsResource(Resource):
    """
    Wraps a leaf resource (the API): CORS headers on every answer,
    preflights answered here.
    """

    isLeaf = True

    def __init__(self, wrapped, policy):
        super().__init__()
        self._wrapped = wrapped
        self._policy = policy

    def render(self, request):
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return failure(request, 400, "the path is not valid UTF-8")
        if self._policy.apply(request):
            if request.code == 403:
                return failure(request, 403, "origin not allowed")
            return b""
        return self._wrapped.render(request)
