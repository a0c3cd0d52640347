"""
The access log, without secrets: query parameters that carry credentials
(C{token}, C{access_token}, C{password}) are written as C{REDACTED}, so
that a WebSocket URL with C{?token=...} does not leave a usable token in
the log.
"""

import re

from twisted.web.http import combinedLogFormatter

_SECRET_QUERY = re.compile(rb"([?&](?:token|access_token|password))=[^&#]*",
                           re.IGNORECASE)


def redact(uri):
    return _SECRET_QUERY.sub(rb"\1=REDACTED", uri)


def access_log_formatter(timestamp, request):
    """
    Twisted's combined log format, with credentials in the query redacted.
    """
    uri = request.uri
    safe = redact(uri)
    if safe == uri:
        return combinedLogFormatter(timestamp, request)
    request.uri = safe
    try:
        return combinedLogFormatter(timestamp, request)
    finally:
        request.uri = uri
