"""
C{GET /healthz}: 200 when the database answers, 503 when it does not.
"""

import json

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from chatd import __version__

log = Logger()


class HealthResource(Resource):
    isLeaf = True

    def __init__(self, database):
        super().__init__()
        self._database = database

    def render_GET(self, request):
        d = Deferred.fromCoroutine(self._check())
        d.addCallback(self._answer, request)
        return NOT_DONE_YET

    render_HEAD = render_GET

    async def _check(self):
        try:
            await self._database.ping()
        except Exception as error:
            log.warn("Health check: database does not answer: {error!r}",
                     error=error)
            return False
        return True

    def _answer(self, healthy, request):
        if request._disconnected:
            return
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {
            "status": "ok" if healthy else "unavailable",
            "database": "ok" if healthy else "down",
            "version": __version__,
        }
        request.write(json.dumps(body).encode())
        request.finish()
