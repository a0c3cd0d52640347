"""
The one site chatd serves on every endpoint: health, and later the REST API
and the WebSocket endpoint, side by side.
"""

from twisted.web.resource import Resource
from twisted.web.server import Site

from chatd.web.health import HealthResource


def build_root(config, database, reactor):
    """
    The root resource of the site.
    """
    root = Resource()
    root.putChild(b"healthz", HealthResource(database))
    return root


def build_site(root, reactor):
    site = Site(root, reactor=reactor)
    site.displayTracebacks = False
    return site
