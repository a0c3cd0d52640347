"""
Building and reading chatd's WebSocket frames.

Every frame, in both directions, is one binary WebSocket message holding one
protobuf C{protocol.Message} (C{proto/message.proto}). The C{type} field
says what kind of frame it is; docs/protocol.md documents each kind:

  - C{""} (empty): a chat message. Client to server: send it. Server to
    client: a delivery (live, a copy for another device, or a sync replay).
  - C{"heatbeat"} (go-chat's spelling): client ping C{content "ping"},
    answered with C{content "pong"}.
  - C{"webrtc"}: calls (L{chatd.calls}): control frames, and SDP/ICE and
    media relayed between the two parties of a call, never stored.
  - C{"ack"}: server to client, the message with C{clientMsgId} is durable
    with server C{id} and C{createAt}.
  - C{"error"}: server to client, a frame was refused; C{errorCode} says
    why in one word, C{content} in a sentence, C{clientMsgId} names it.
  - C{"sync"}: client to server, replay everything after C{sinceId};
    server to client, C{content "done"}: the replay is complete up to
    C{id} (C{more} is set when the client should sync again from there).
"""

import base64
import binascii
import re

from google.protobuf.message import DecodeError

from chatd import errors
from chatd.protocol.message_pb2 import Message

__all__ = ["Message", "decode", "encode"]

# Frame kinds, the values of the C{type} field.
MESSAGE = ""
HEARTBEAT = "heatbeat"
WEBRTC = "webrtc"
ACK = "ack"
ERROR = "error"
SYNC = "sync"

# messageType values.
ONE_TO_ONE = 1
GROUP = 2

# contentType values.
TEXT = 1
FILE = 2
IMAGE = 3
AUDIO = 4
VIDEO = 5
STORED_CONTENT_TYPES = frozenset({TEXT, FILE, IMAGE, AUDIO, VIDEO})

# Who the welcome frame is from, as in go-chat.
SYSTEM = "System"

# Error codes, one per domain error class (see L{error_frame}), plus the
# specific ones the messaging rules use.
_ERROR_CODES = [
    (errors.Unauthorized, "unauthorized"),
    (errors.Forbidden, "forbidden"),
    (errors.NotFound, "not_found"),
    (errors.Conflict, "conflict"),
    (errors.PayloadTooLarge, "too_large"),
    (errors.TooManyRequests, "too_many_requests"),
    (errors.BadRequest, "bad_request"),
]

_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*?);base64,", re.IGNORECASE)


def encode(frame):
    """
    The bytes of a frame (a L{Message}).
    """
    return frame.SerializeToString()


def decode(payload):
    """
    Parse the bytes of one frame.

    @raise chatd.errors.BadRequest: the bytes are not a C{Message}.
    """
    frame = Message()
    try:
        frame.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError):
        raise errors.BadRequest("the frame is not a protobuf Message")
    return frame


def error_code(error):
    """
    The C{errorCode} of an error frame for a domain error: its own C{code}
    attribute if it has one, else the one of its class.
    """
    code = getattr(error, "frame_code", None)
    if code:
        return code
    for cls, name in _ERROR_CODES:
        if isinstance(error, cls):
            return name
    return "error"


def error_frame(error, client_msg_id=""):
    """
    The error frame telling a client why a frame was refused.

    @param error: a L{chatd.errors.ChatError}.
    @param client_msg_id: the refused frame's client message id, if any.
    """
    return Message(
        type=ERROR, errorCode=error_code(error), content=error.message,
        clientMsgId=client_msg_id)


def refuse(cls, message, code):
    """
    A domain error of class C{cls} carrying a specific error frame code,
    e.g. C{raise refuse(Forbidden, "...", "not_friend")}.
    """
    error = cls(message)
    error.frame_code = code
    return error


def welcome_frame(user_uuid):
    """
    go-chat's greeting, sent when a connection opens.
    """
    return Message(**{"from": SYSTEM, "to": user_uuid, "content": "welcome!"})


def pong_frame():
    return Message(type=HEARTBEAT, content="pong")


def ack_frame(client_msg_id, message_id, created_at, to="", message_type=0):
    return Message(
        type=ACK, clientMsgId=client_msg_id, id=message_id, createAt=created_at,
        to=to, messageType=message_type)


def sync_done_frame(last_id, more=False):
    return Message(type=SYNC, content="done", id=last_id, more=more)


def decode_data_url(content):
    """
    The bytes and the media type of a base64 C{data:} URL, as go-chat-web
    sends files (C{contentType} 2) in C{content}.

    @raise chatd.errors.BadRequest: not a base64 data URL.
    """
    match = _DATA_URL.match(content)
    if match is None:
        # go-chat only looks for ";base64," too.
        marker = content.find(";base64,")
        if marker < 0:
            raise refuse(errors.BadRequest,
                         "content is not a base64 data URL", "bad_base64")
        media_type, encoded = "", content[marker + len(";base64,"):]
    else:
        media_type, encoded = match.group(1), content[match.end():]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise refuse(errors.BadRequest,
                     "content is not valid base64", "bad_base64")
    if not data:
        raise refuse(errors.BadRequest, "the data URL is empty", "bad_base64")
    return data, media_type.lower()


def content_type_for(media_type):
    """
    go-chat's contentType for a stored file's media type: image, audio,
    video, or else file.
    """
    kind = media_type.split("/", 1)[0].lower()
    return {"image": IMAGE, "audio": AUDIO, "video": VIDEO}.get(kind, FILE)
