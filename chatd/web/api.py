"""
The REST API: go-chat's routes (paths, methods, parameter and field names,
the C{{code, msg, data}} envelope) plus chatd's own, served at the root for
go-chat-web and under C{/api/v1/} for new clients. See docs/api.md.

Routes are thin: they read the request, call a handler, and wrap the answer.
Every refusal is a L{chatd.errors.ChatError} turned into an HTTP status and
the envelope in one place, L{ChatApi.chat_error}.
"""

import json
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

from klein import Klein
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from chatd.auth.tokens import token_from_headers
from chatd.errors import (
    BadRequest,
    ChatError,
    Forbidden,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from chatd.files import is_inline
from chatd.stores import ID_MAX
from chatd.web import conversation_views as views
from chatd.web import envelope
from chatd.web.proxy import ProxyPolicy
from chatd.web.ranges import SingleRangeFile

log = Logger()

# Top-level path segments that belong to the API.
API_SEGMENTS = frozenset({b"user", b"friend", b"message", b"file", b"group"})

MAX_JSON_BYTES = 64 * 1024
# Parts an upload may have: go-chat-web's form has two (the file and the
# user's uuid); each more costs only parsing time on a thread.
MAX_MULTIPART_PARTS = 16
# Room for the multipart framing around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024


def iso_time(ms):
    """
    Milliseconds since the epoch as ISO 8601 in UTC (go-chat's C{createAt}
    is a time string).
    """
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_json(user, own=False):
    """
    A user as go-chat's clients read it; e-mail only for the user themself.
    """
    data = {
        "uuid": user.uuid,
        "username": user.username,
        "nickname": user.nickname,
        "avatar": user.avatar,
        "createAt": iso_time(user.created_at),
    }
    if own:
        data["email"] = user.email
    return data


def group_json(group, identity):
    return {
        "uuid": group.uuid,
        "groupId": group.id,
        "name": group.name,
        "notice": group.notice,
        "createAt": iso_time(group.created_at),
        "isOwner": group.owner_id == identity.user_id,
    }


def message_json(message):
    return {
        "id": message.id,
        "fromUserId": message.sender_id,
        "toUserId": message.recipient_id,
        "fromUuid": message.sender_uuid,
        "toUuid": message.recipient_uuid,
        "fromUsername": message.sender_username,
        "toUsername": message.recipient_username,
        "avatar": message.sender_avatar,
        "content": message.content,
        "contentType": message.content_type,
        "messageType": message.message_type,
        "url": message.url,
        "createAt": iso_time(message.created_at),
    }


def _text(value, what):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what}: not valid UTF-8")


def query(request, *names):
    """
    The first of the query parameters C{names} the request has, as a
    string, or None.
    """
    for name in names:
        values = request.args.get(name.encode("ascii"))
        if values:
            return _text(values[0], name)
    return None


def query_int(request, *names, default=None):
    """
    An integer query parameter (the first of C{names} given), or C{default}.
    """
    value = query(request, *names)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{names[0]}: must be an integer")
    if not -ID_MAX <= number <= ID_MAX:
        raise BadRequest(f"{names[0]}: out of range")
    return number


def read_body(request):
    """
    The request's body as a dict: a JSON object (what go-chat-web sends),
    or a form (C{application/x-www-form-urlencoded}). An empty body is {}.

    @raise BadRequest: not valid JSON, or not an object.
    @raise PayloadTooLarge: over 64 KiB.
    """
    content = request.content
    raw = content.read(MAX_JSON_BYTES + 1) if content is not None else b""
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        return {}
    content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
    if content_type.split(";")[0].strip().lower() == \
            "application/x-www-form-urlencoded":
        form = parse_qs(raw, keep_blank_values=True)
        return {_text(k, "body"): _text(v[-1], _text(k, "body"))
                for k, v in form.items()}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"body: not valid JSON ({error})")
    except RecursionError:
        raise BadRequest("body: not valid JSON (nested too deeply)")
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object")
    try:
        # JSON's \u escapes can spell half a surrogate pair, which no
        # database (nor UTF-8) can store.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("body: a string holds a lone surrogate (\\ud800-\\udfff)")
    return body


def field(body, name, required=False):
    """
    A string field of a request body: None if absent (or null).

    @raise BadRequest: present but not a string, or required and absent.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    return value


def read_multipart(request, limit):
    """
    The C{Content-Type} and raw body of a C{multipart/form-data} request,
    checked for size and for the number of parts before anything parses
    it (L{parse_multipart}).

    @raise BadRequest: not multipart, or more than L{MAX_MULTIPART_PARTS}.
    @raise PayloadTooLarge: over C{limit} and the framing's allowance.
    """
    content_type = request.getHeader(b"content-type") or b""
    if not content_type.lower().startswith(b"multipart/form-data"):
        raise BadRequest("body: must be multipart/form-data with a file")
    content = request.content
    content.seek(0)
    raw = content.read(limit + MULTIPART_OVERHEAD + 1)
    if len(raw) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes")
    # The boundary as the parser will read it (quoted, RFC 2231, ...).
    boundary = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n", headersonly=True).get_boundary()
    if not boundary or not boundary.isascii():
        raise BadRequest("body: multipart/form-data needs an ASCII boundary")
    if raw.count(b"--" + boundary.encode("ascii")) > MAX_MULTIPART_PARTS + 1:
        raise BadRequest(f"body: more than {MAX_MULTIPART_PARTS} parts")
    return content_type, raw


def parse_multipart(content_type, raw):
    """
    The parts of a C{multipart/form-data} body: a dict of name to
    C{(bytes, filename)}. Slow for large bodies (the standard library's
    e-mail parser): run it off the event loop.
    """
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise BadRequest("body: not a valid multipart/form-data body")
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or name in parts:
            continue
        payload = part.get_payload(decode=True) or b""
        parts[name] = (payload, part.get_filename() or "")
    return parts


class ChatApi:
    """
    The REST API over the shared L{chatd.parts.Parts}.

    @param cors: the L{chatd.web.cors.CorsPolicy}.
    @param proxies: the L{chatd.web.proxy.ProxyPolicy}.
    """

    app = Klein()

    def __init__(self, parts, cors, proxies=None):
        self._parts = parts
        self._proxies = proxies if proxies is not None else ProxyPolicy()
        self._accounts = parts.accounts
        self._social = parts.social
        self._groups = parts.groups
        self._history = parts.history
        self._files = parts.files
        self._tokens = parts.tokens
        self._cors = cors
        auth = parts.config.auth
        self._cookie_name = auth.cookie_name
        self._token_lifetime = auth.token_lifetime

    def resource(self):
        return self.app.resource()

    # -- errors, in one place ---------------------------------------------

    @app.handle_errors(ChatError)
    def chat_error(self, request, failure):
        error = failure.value
        if isinstance(error, TooManyRequests):
            request.setHeader(b"retry-after", str(error.retry_after).encode())
        if isinstance(error, Unauthorized):
            request.setHeader(b"www-authenticate", b'Bearer realm="chatd"')
        if isinstance(error, PayloadTooLarge):
            request.setHeader(b"connection", b"close")
        return envelope.failure(request, error.status, error.message)

    @app.handle_errors(HTTPException)
    def http_error(self, request, failure):
        error = failure.value
        if isinstance(error, RequestRedirect):
            request.setHeader(b"location", error.new_url.encode("utf-8"))
            return envelope.failure(request, error.code, "moved")
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            request.setHeader(b"allow", ", ".join(error.valid_methods).encode())
            return envelope.failure(request, 405, "method not allowed")
        if error.code == 404:
            return envelope.failure(request, 404, "no such route")
        return envelope.failure(request, error.code or 500, error.name)

    @app.handle_errors(Exception)
    def internal_error(self, request, failure):
        log.failure("Error answering {method} {path}", failure,
                    method=request.method, path=request.path)
        # What a failing resource had said of the body it meant to send
        # (a file's length and range) is not true of the envelope.
        for name in (b"content-length", b"content-range", b"content-disposition"):
            request.responseHeaders.removeHeader(name)
        return envelope.failure(request, 500, "internal error")

    # -- helpers ------------------------------------------------------------

    async def _identity(self, request):
        """
        The caller, from C{Authorization: Bearer} or the cookie.

        @raise Unauthorized: no token, or a bad one.
        @raise Forbidden: a cookie-authenticated request from a foreign
            origin.
        """
        token = token_from_headers(request.getHeader(b"authorization"), None)
        if token is None:
            token = token_from_headers(
                None, request.getHeader(b"cookie"), self._cookie_name)
            if token is not None and not self._cors.origin_ok(request):
                raise Forbidden("cross-origin request refused")
        if token is None:
            raise Unauthorized("sign in first")
        return await self._tokens.verify(token)

    def _set_cookie(self, request, token, max_age):
        parts = [f"{self._cookie_name}={token}", "Path=/", f"Max-Age={max_age}",
                 "HttpOnly", "SameSite=Lax"]
        if self._proxies.is_secure(request):
            parts.append("Secure")
        request.responseHeaders.addRawHeader(
            b"set-cookie", "; ".join(parts).encode("ascii"))

    # -- accounts -------------------------------------------------------------

    def _same_origin_sign_in(self, request):
        """
        @raise Forbidden: a browser on a foreign page posts the form: it
            would sign the victim's browser in to the poster's account
            (login CSRF), or make accounts from the victim's address.
        """
        if not self._cors.origin_ok(request):
            raise Forbidden("cross-origin sign-in refused")

    @app.route("/user/register", methods=["POST"])
    async def register(self, request):
        self._same_origin_sign_in(request)
        body = read_body(request)
        user = await self._accounts.register(
            self._proxies.client_address(request),
            field(body, "username", required=True),
            field(body, "password", required=True),
            nickname=field(body, "nickname") or "",
            email=field(body, "email") or "")
        request.setResponseCode(201)
        return envelope.success(request, user_json(user, own=True))

    @app.route("/user/login", methods=["POST"])
    async def login(self, request):
        self._same_origin_sign_in(request)
        body = read_body(request)
        user, token, identity = await self._accounts.login(
            self._proxies.client_address(request),
            field(body, "username", required=True),
            field(body, "password", required=True))
        self._set_cookie(request, token, self._token_lifetime)
        data = user_json(user, own=True)
        data["token"] = token
        data["expiresAt"] = identity.expires_at
        return envelope.success(request, data)

    @app.route("/user/logout", methods=["POST"])
    async def logout(self, request):
        identity = await self._identity(request)
        await self._accounts.logout(identity)
        self._set_cookie(request, "", 0)
        return envelope.success(request)

    @app.route("/user", methods=["GET"])
    async def friends(self, request):
        identity = await self._identity(request)
        friends = await self._social.friends(identity, query(request, "uuid"))
        return envelope.success(request, [user_json(u) for u in friends])

    @app.route("/user", methods=["PUT"])
    async def update_user(self, request):
        identity = await self._identity(request)
        body = read_body(request)
        user, token = await self._accounts.update(
            identity,
            username=field(body, "username"),
            nickname=field(body, "nickname"),
            email=field(body, "email"),
            password=field(body, "password"),
            old_password=field(body, "oldPassword"))
        data = user_json(user, own=True)
        if token is not None:
            self._set_cookie(request, token, self._token_lifetime)
            data["token"] = token
        return envelope.success(request, data)

    @app.route("/user/name", methods=["GET"])
    async def find_by_name(self, request):
        await self._identity(request)
        user, group = await self._social.find_by_name(query(request, "name"))
        empty_user = {"uuid": "", "username": "", "nickname": "", "avatar": "",
                      "createAt": ""}
        return envelope.success(request, {
            "user": user_json(user) if user else empty_user,
            "group": {"uuid": group.uuid, "name": group.name} if group
            else {"uuid": "", "name": ""},
        })

    @app.route("/user/<uuid>", methods=["GET"])
    async def get_user(self, request, uuid):
        identity = await self._identity(request)
        user = await self._accounts.get(uuid)
        return envelope.success(request, user_json(user, own=user.id == identity.user_id))

    # -- friends --------------------------------------------------------------

    @app.route("/friend", methods=["POST"])
    async def add_friend(self, request):
        identity = await self._identity(request)
        body = read_body(request)
        await self._social.add_friend(
            identity, field(body, "uuid", required=True),
            field(body, "friendUsername", required=True))
        return envelope.success(request)

    @app.route("/friend", methods=["DELETE"])
    async def remove_friend(self, request):
        identity = await self._identity(request)
        body = read_body(request)
        uuid = field(body, "uuid") or query(request, "uuid")
        name = field(body, "friendUsername") or query(request, "friendUsername")
        await self._social.remove_friend(identity, uuid, name)
        return envelope.success(request)

    # -- messages -------------------------------------------------------------

    @app.route("/message", methods=["GET"])
    async def messages(self, request):
        identity = await self._identity(request)
        message_type = query_int(request, "MessageType", "messageType")
        if message_type is None:
            raise BadRequest("MessageType: required")
        page = await self._history.page(
            identity, query(request, "Uuid", "uuid"), message_type,
            friend_username=query(request, "FriendUsername", "friendUsername"),
            before=query_int(request, "before"),
            after=query_int(request, "after"),
            limit=query_int(request, "limit", default=50))
        return envelope.success(request, [message_json(m) for m in page])

    # -- conversations (docs/api.md, "Conversations") --------------------------

    @app.route("/conversations", methods=["GET"])
    async def conversation_list(self, request):
        identity = await self._identity(request)
        limit = query_int(request, "limit", default=20)
        page = await self._parts.conversations.list(
            identity, before=query(request, "before"), limit=limit)
        return envelope.success(request, views.conversations_json(page, limit))

    @app.route("/conversations/<uuid>/messages", methods=["GET"])
    async def conversation_messages(self, request, uuid):
        identity = await self._identity(request)
        limit = query_int(request, "limit", default=50)
        _, page = await self._parts.conversations.history(
            identity, uuid, before=query_int(request, "before"),
            after=query_int(request, "after"), limit=limit)
        return envelope.success(request, views.history_json(page, limit))

    @app.route("/conversations/<uuid>/read", methods=["POST"])
    async def conversation_read(self, request, uuid):
        identity = await self._identity(request)
        up_to = read_body(request).get("id")
        position = await self._parts.conversations.mark_read(
            identity, uuid, up_to)
        return envelope.success(request, views.read_json(uuid, position))

    @app.route("/search", methods=["GET"])
    async def search(self, request):
        identity = await self._identity(request)
        limit = query_int(request, "limit", default=20)
        found = await self._parts.conversations.search(
            identity, query(request, "q"), uuid=query(request, "uuid"),
            before=query_int(request, "before"), limit=limit)
        return envelope.success(request, views.search_json(found, limit))

    @app.route("/message/<int:message_id>/recall", methods=["POST"])
    async def recall(self, request, message_id):
        identity = await self._identity(request)
        change = await self._parts.conversations.recall(identity, message_id)
        return envelope.success(request, views.change_json(change, True))

    @app.route("/message/<int:message_id>", methods=["PUT"])
    async def edit(self, request, message_id):
        identity = await self._identity(request)
        content = field(read_body(request), "content", required=True)
        change = await self._parts.conversations.edit(
            identity, message_id, content)
        return envelope.success(request, views.change_json(change, False))

    @app.route("/presence", methods=["GET"])
    async def presence(self, request):
        identity = await self._identity(request)
        uuids = (query(request, "uuids", "uuid") or "").split(",")
        entries = await self._parts.conversations.presence(
            identity, [u.strip() for u in uuids])
        return envelope.success(request, views.presence_json(entries))

    # -- calls ----------------------------------------------------------------

    @app.route("/ice-servers", methods=["GET"])
    async def ice_servers(self, request):
        identity = await self._identity(request)
        request.setHeader(b"cache-control", b"no-store")
        return envelope.success(
            request, self._parts.ice_servers.for_user(identity.uuid))

    # -- files ----------------------------------------------------------------

    @app.route("/file", methods=["POST"])
    async def upload(self, request):
        identity = await self._identity(request)
        content_type, raw = read_multipart(request, self._files.max_bytes)
        reactor = self._parts.reactor
        parts = await deferToThreadPool(
            reactor, reactor.getThreadPool(), parse_multipart, content_type, raw)
        if "file" not in parts:
            raise BadRequest("file: required")
        uuid = parts.get("uuid", (b"", ""))[0]
        data, filename = parts["file"]
        suffix = filename.rpartition(".")[2] if "." in filename else ""
        stored = await self._accounts.set_avatar(
            identity, _text(uuid, "uuid"), data, suffix)
        return envelope.success(request, stored.name)

    @app.route("/file/<path:name>", methods=["GET", "HEAD"])
    async def download(self, request, name):
        stored, path = await self._files.find(name)
        resource = SingleRangeFile(path)
        resource.type = stored.media_type
        if stored.media_type.startswith("text/"):
            resource.type += "; charset=utf-8"
        resource.encoding = None
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy",
                          b"default-src 'none'; sandbox")
        # Names are never reused, but a recall or a group's deletion
        # deletes a file: only the browser may keep it, no shared cache.
        request.setHeader(b"cache-control", b"private, max-age=31536000, immutable")
        if not is_inline(stored.media_type):
            request.setHeader(
                b"content-disposition",
                f'attachment; filename="{stored.name}"'.encode("ascii"))
        return resource

    # -- groups ---------------------------------------------------------------

    @app.route("/group/<uuid>", methods=["GET"])
    async def my_groups(self, request, uuid):
        identity = await self._identity(request)
        groups = await self._groups.mine(identity, uuid)
        return envelope.success(request, [group_json(g, identity) for g in groups])

    @app.route("/group/<uuid>", methods=["POST"])
    async def create_group(self, request, uuid):
        identity = await self._identity(request)
        body = read_body(request)
        group = await self._groups.create(
            identity, uuid, field(body, "name", required=True),
            field(body, "notice") or "")
        request.setResponseCode(201)
        return envelope.success(request, group_json(group, identity))

    @app.route("/group/join/<user_uuid>/<group_uuid>", methods=["POST"])
    async def join_group(self, request, user_uuid, group_uuid):
        identity = await self._identity(request)
        await self._groups.join(identity, user_uuid, group_uuid)
        return envelope.success(request)

    @app.route("/group/leave/<user_uuid>/<group_uuid>", methods=["POST"])
    async def leave_group(self, request, user_uuid, group_uuid):
        identity = await self._identity(request)
        await self._groups.leave(identity, user_uuid, group_uuid)
        return envelope.success(request)

    @app.route("/group/user/<group_uuid>", methods=["GET"])
    async def group_members(self, request, group_uuid):
        identity = await self._identity(request)
        members = await self._groups.members(identity, group_uuid)
        return envelope.success(request, [user_json(u) for u in members])

    @app.route("/group/user/<group_uuid>/<user_uuid>", methods=["DELETE"])
    async def remove_member(self, request, group_uuid, user_uuid):
        identity = await self._identity(request)
        await self._groups.remove_member(identity, group_uuid, user_uuid)
        return envelope.success(request)

    @app.route("/group/removed/<group_uuid>/<user_uuid>", methods=["DELETE"])
    async def lift_removal(self, request, group_uuid, user_uuid):
        identity = await self._identity(request)
        await self._groups.lift_removal(identity, group_uuid, user_uuid)
        return envelope.success(request)

    @app.route("/group/<group_uuid>", methods=["PUT"])
    async def update_group(self, request, group_uuid):
        identity = await self._identity(request)
        body = read_body(request)
        group = await self._groups.update(
            identity, group_uuid, name=field(body, "name"),
            notice=field(body, "notice"))
        return envelope.success(request, group_json(group, identity))

    @app.route("/group/<group_uuid>", methods=["DELETE"])
    async def delete_group(self, request, group_uuid):
        identity = await self._identity(request)
        await self._groups.delete(identity, group_uuid)
        return envelope.success(request)
