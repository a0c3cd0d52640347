"""
The C{{code, msg, data}} envelope of every JSON answer, as go-chat sends it:
C{code} 0 and C{msg} "SUCCESS" on success, C{code} -1 and the reason on
failure (chatd also sets a meaningful HTTP status).
"""

import json

SUCCESS = 0
FAILURE = -1


def _json(body):
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _headers(request):
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")


def success(request, data=None):
    """
    Set the headers of a successful JSON answer and return its body.
    """
    _headers(request)
    return _json({"code": SUCCESS, "msg": "SUCCESS", "data": data})


def failure(request, status, message):
    """
    Set the status and headers of a refusal and return its body.
    """
    request.setResponseCode(status)
    _headers(request)
    return _json({"code": FAILURE, "msg": message, "data": None})
