"""
Domain errors, each with its HTTP status and envelope message.

Handlers raise these; the REST layer turns one into an HTTP status plus the
C{{code: -1, msg, data: null}} envelope, and the WebSocket layer into an
error frame, each in one place.
"""


class ChatError(Exception):
    """
    A request chatd refuses, with a message meant for the client.
    """

    status = 400

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BadRequest(ChatError):
    status = 400


class Unauthorized(ChatError):
    status = 401


class Forbidden(ChatError):
    status = 403


class NotFound(ChatError):
    status = 404


class Conflict(ChatError):
    status = 409


class PayloadTooLarge(ChatError):
    status = 413


class InternalError(ChatError):
    """
    The server failed, not the request: an unexpected exception, told to a
    WebSocket client without its details.
    """

    status = 500


class TooManyRequests(ChatError):
    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after
