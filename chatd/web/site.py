"""
The one site chatd serves on every endpoint: health, and later the REST API
and the WebSocket endpoint, side by side.
"""

from twisted.web.server import Site

from chatd.web.accesslog import access_log_formatter
from chatd.web.api import MAX_JSON_BYTES, MULTIPART_OVERHEAD, ChatApi
from chatd.web.cors import CorsPolicy, CorsResource
from chatd.web.health import HealthResource
from chatd.web.limits import limited_request_factory
from chatd.web.proxy import ProxyPolicy
from chatd.web.root import API_PREFIX, ChatRoot
from chatd.web.static import SpaResource


def build_root(config, database, reactor, parts=None):
    """
    The root resource of the site: fixed children, then the REST API (at
    go-chat's paths and under /api/v1/), then the web client if
    C{server.static_dir} is set.

    @param parts: the shared L{chatd.parts.Parts} (built here if None).
    """
    if parts is None:
        from chatd.parts import build_parts

        parts = build_parts(config, database, reactor)
    proxies = ProxyPolicy(config.server.trusted_proxies)
    cors = CorsPolicy(config.server.allowed_origins, proxies)
    api = CorsResource(ChatApi(parts, cors, proxies).resource(), cors)
    static = SpaResource(config.server.static_dir) if config.server.static_dir else None
    root = ChatRoot(api, static)
    root.putChild(b"healthz", HealthResource(database))
    return root


def max_body_bytes(config):
    """
    The largest request body the site reads: an upload and its framing.
    """
    return config.files.max_upload_bytes + MULTIPART_OVERHEAD


def build_site(root, reactor, max_body=None):
    """
    The HTTP site over C{root}. With C{max_body}, only an upload (C{POST
    /file}, also under C{/api/v1}) may have a body that large; every other
    route reads a JSON
    body of at most L{MAX_JSON_BYTES}, and larger ones are refused before
    they are stored.
    """
    # Bodies are parsed by the routes, which answer malformed ones with the
    # envelope; Twisted's form parser answers some with a bare 400 and
    # crashes on others (a multipart field named with name*=).
    site = Site(root, reactor=reactor, logFormatter=access_log_formatter,
                parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    if max_body is not None:
        uploads = (b"/file", b"/".join((b"", *API_PREFIX, b"file")))
        site.requestFactory = limited_request_factory(
            MAX_JSON_BYTES, {(b"POST", path): max_body for path in uploads})
    return site
