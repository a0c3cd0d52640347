"""
The root resource: fixed children (C{/healthz}, C{/socket.io}) first, then
the REST API at go-chat's paths and under C{/api/v1/}, then the optional
web client (see L{chatd.web.static}).
"""

from twisted.web.resource import Resource

from chatd.web.api import API_SEGMENTS

API_PREFIX = (b"api", b"v1")


class _Prefix(Resource):
    """
    C{/api/}: only C{v1} below it, which is the API.
    """

    def __init__(self, api):
        super().__init__()
        self._api = api

    def render(self, request):
        return self._api.render(request)

    def getChild(self, name, request):
        if name == API_PREFIX[1]:
            return self._api
        request.postpath.insert(0, request.prepath.pop())
        return self._api


class ChatRoot(Resource):
    """
    @param api: the API resource (a leaf that routes on the rest of the
        path).
    @param static: the web client resource, or None.
    """

    def __init__(self, api, static=None):
        super().__init__()
        self._api = api
        self._static = static
        self._prefix = _Prefix(api)

    def getChildWithDefault(self, name, request):
        if request.isSecure():
            # A browser that was here over TLS keeps to it for a year.
            request.setHeader(b"strict-transport-security", b"max-age=31536000")
        return super().getChildWithDefault(name, request)

    def getChild(self, name, request):
        if name == API_PREFIX[0]:
            return self._prefix
        # Give the segment back: the leaf below routes on the whole path.
        request.postpath.insert(0, request.prepath.pop())
        if self._static is not None and name not in API_SEGMENTS:
            return self._static
        return self._api
