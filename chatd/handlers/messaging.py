"""
Messaging: the rules for what a connected user may send, and what happens
to it.

  - The sender is always the authenticated user: a frame whose C{from}
    names anyone else is refused.
  - One-to-one messages go to friends; group messages to groups the sender
    is a member of. Routing facts come from the Hub's in-memory caches.
  - Attachments (a base64 data URL in C{content}, or bytes in C{file}) are
    stored through the L{chatd.files.FileStore} first; the message then
    carries their C{url}.
  - Messages (contentType 1-5) are stored through the group-commit
    L{chatd.batching.BatchWriter}; only once durable are they delivered
    and acknowledged. A resent client message id is acknowledged again but
    neither stored nor delivered twice.
  - Calls (type "webrtc", or contentType 6 and up) go to the relay
    handler (the call manager, L{chatd.calls}), never stored. A frame with
    no C{to} is a broadcast, for administrators only.
  - Sync replays what a user missed, in pages, then a "done" frame.

Connections (see L{chatd.hub}) also have C{send_frame(message)},
C{wait_writable()}, a Deferred that fires once their outgoing buffer has
room (or they are gone; then C{connected} is false), and C{going_away},
true once the server is stopping (a sync then stops).
"""

from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.logger import Logger

from chatd.auth.ratelimit import RateLimiter
from chatd.errors import BadRequest, ChatError, Forbidden, PayloadTooLarge
from chatd.handlers import addressing
from chatd.protocol import frames
from chatd.protocol.frames import Message, refuse
from chatd.stores.messages import NewMessage

log = Logger()

# Client message ids the server gives its own messages (the call log's).
RESERVED_CLIENT_ID_PREFIX = "call:"

_FROM = "from"


def _get_from(frame):
    return getattr(frame, _FROM)


def delivery_frame(sender, message_type, to_uuid, group_uuid, content_type,
                   content, url, message_id, created_at, client_msg_id,
                   recipient_username=""):
    """
    A message as its recipients get it, go-chat style: for a group, C{from}
    is the group's uuid and C{to} the sender's.
    """
    frame = Message(
        avatar=sender.avatar, fromUsername=sender.username,
        contentType=content_type, content=content, messageType=message_type,
        url=url, id=message_id, createAt=created_at,
        clientMsgId=client_msg_id or "", toUsername=recipient_username)
    if message_type == frames.GROUP:
        setattr(frame, _FROM, group_uuid)
        frame.to = sender.uuid
    else:
        setattr(frame, _FROM, sender.uuid)
        frame.to = to_uuid
    return frame


class _Sender:
    """
    A stand-in for a L{User} in frames built from stored rows.
    """

    def __init__(self, uuid, username, avatar):
        self.uuid, self.username, self.avatar = uuid, username, avatar


class Messaging:
    """
    @param hub: the L{chatd.hub.Hub}.
    @param writer: the L{chatd.batching.BatchWriter}.
    @param messages: the L{chatd.stores.messages.MessageStore} (for sync).
    @param files: the L{chatd.files.FileStore}.
    @param config: the L{chatd.config.WebsocketConfig}.
    @param clock: the clock of the per-user rate limits.
    """

    def __init__(self, hub, writer, messages, files, config, clock):
        self._hub = hub
        self._writer = writer
        self._messages = messages
        self._files = files
        self._config = config
        self._clock = clock
        self._message_limit = (
            RateLimiter(clock, config.messages_burst, config.messages_per_second * 3600,
                        "messages") if config.messages_per_second else None)
        # Each connection with a frame being prepared: a Deferred firing
        # once that frame is handed to the writer (the entry goes then).
        self._tails = {}
        self._relay_handler = None

    def set_relay_handler(self, handler):
        """
        Hand every relayed frame (type "webrtc", or contentType 6 and up,
        with a C{to}) to C{handler(connection, frame)}, a coroutine function,
        instead of relaying it plainly: the call manager's hook. The sender
        check has been made already.
        """
        self._relay_handler = handler

    def check_sender(self, connection, frame):
        """
        The protocol makes this check on every frame, before its handler.

        @raise Forbidden: the frame claims to be from someone else.
        """
        claimed = _get_from(frame)
        if claimed and claimed != connection.user.uuid:
            raise refuse(Forbidden, "from must be your own uuid; you cannot"
                         " send as someone else", "spoofed_from")

    # Messages.

    def send(self, connection, frame):
        """
        Handle a chat message frame (type ""): check, store, deliver, ack.
        Frames of one connection are stored in the order they arrived.

        @return: a Deferred that fires once the frame is handled (acked,
            or failed with the L{ChatError} that refuses it).
        """
        if frame.contentType >= 6:
            return ensureDeferred(self.relay(connection, frame))
        if not frame.to:
            return ensureDeferred(self.broadcast(connection, frame))
        try:
            # Nothing of this connection's being prepared: a text message
            # whose routing facts are cached is stored at once.
            prepared = (None if connection in self._tails
                        else self._prepare_cached(connection, frame))
        except ChatError as error:
            return fail(error)
        if prepared is not None:
            return self._store(connection, frame, prepared)
        return Deferred.fromCoroutine(self._send_in_order(connection, frame))

    async def _send_in_order(self, connection, frame):
        """
        L{send} for a frame that needs the database or the file store
        before it can be stored: later frames of the connection wait for
        it to be handed to the writer.
        """
        previous = self._tails.get(connection)
        mine = Deferred()
        self._tails[connection] = mine
        try:
            try:
                prepared = await self._prepare(connection, frame)
            finally:
                if previous is not None:
                    await previous
            stored = self._store(connection, frame, prepared)
        finally:
            if self._tails.get(connection) is mine:
                del self._tails[connection]
            # In the next turn: the frames waiting on one another would
            # otherwise resume each other inside one call stack, one level
            # per frame, until a long burst passes the recursion limit
            # and its chain stops.
            self._clock.callLater(0, mine.callback, None)
        await stored

    def _store(self, connection, frame, prepared):
        # Charged once the message passed every other check.
        try:
            if self._message_limit is not None:
                self._message_limit.take(connection.user.id, frame_code="rate_limited")
        except ChatError as error:
            d = fail(error)
        else:
            d = self._writer.submit(prepared.record)
            d.addCallback(self._stored, connection, frame, prepared)
        if prepared.saved_file is not None:
            d.addErrback(self._not_stored, connection.user.id, prepared.saved_file)
        return d

    def _stored(self, stored, connection, frame, prepared):
        if not stored.duplicate:
            self._deliver(connection, prepared, stored)
        else:
            # A resend stores nothing: it costs nothing, and the message
            # stored first has its own copy of the attachment.
            if self._message_limit is not None:
                self._message_limit.refund(connection.user.id)
            if prepared.saved_file is not None:
                self._discard(connection.user.id, prepared.saved_file)
        connection.send_frame(frames.ack_frame(
            frame.clientMsgId, stored.id, stored.created_at, frame.to,
            prepared.record.message_type))

    def _not_stored(self, failure, owner_id, saved_file):
        self._discard(owner_id, saved_file)
        return failure

    def _discard(self, owner_id, saved_file):
        """
        Delete a file saved for a message that did not store it, unless
        something uses it, and give its bytes back to the owner's budget.
        """
        self._files.refund(owner_id, saved_file.size)
        name = saved_file.name
        d = ensureDeferred(self._files.discard_if_unused(name))
        d.addErrback(lambda failure: log.failure(
            "Discarding the unused file {name} failed", failure, name=name))

    def _check(self, frame):
        """
        The frame's message type, once its fields are checked.
        """
        if frame.contentType not in frames.STORED_CONTENT_TYPES:
            raise refuse(BadRequest, f"unknown contentType {frame.contentType}",
                         "bad_content_type")
        client_msg_id = frame.clientMsgId
        # MySQL compares ids ignoring trailing spaces ("a " is "a"), SQLite
        # does not: such an id would mean different things on each.
        if (len(client_msg_id) > 64 or not client_msg_id.isascii()
                or client_msg_id.endswith(" ")):
            raise refuse(BadRequest, "clientMsgId: at most 64 ASCII characters,"
                         " not ending in a space", "bad_client_msg_id")
        if client_msg_id.startswith(RESERVED_CLIENT_ID_PREFIX):
            # The call log's: taken first, it would keep a call out of
            # the history.
            raise refuse(BadRequest, "clientMsgId: ids starting with"
                         f" {RESERVED_CLIENT_ID_PREFIX!r} are the server's",
                         "bad_client_msg_id")
        message_type = frame.messageType or frames.ONE_TO_ONE
        if message_type not in (frames.ONE_TO_ONE, frames.GROUP):
            raise refuse(BadRequest, f"unknown messageType {frame.messageType}",
                         "bad_message_type")
        return message_type

    def _prepare_cached(self, connection, frame):
        """
        L{_prepare} for a text message whose routing facts are in the Hub's
        caches; None for anything else.
        """
        if frame.contentType != frames.TEXT or frame.file:
            return None
        message_type = self._check(frame)
        user = connection.user
        addressee = addressing.resolve_cached(
            self._hub, user, frame.to, message_type, allow_self=True)
        if addressee is None:
            return None
        return self._prepared(user, frame, message_type, addressee,
                              frames.TEXT, self._text(frame), "")

    async def _prepare(self, connection, frame):
        user = connection.user
        message_type = self._check(frame)
        addressee = await addressing.resolve(
            self._hub, user, frame.to, message_type, allow_self=True)
        content_type, content, url, saved = await self._content(user, frame)
        prepared = self._prepared(user, frame, message_type, addressee,
                                  content_type, content, url)
        prepared.saved_file = saved
        return prepared

    def _prepared(self, user, frame, message_type, addressee, content_type,
                  content, url):
        recipient, group = addressee.peer, addressee.group
        if group is None:
            recipient_id, group_uuid = recipient.id, ""
            recipients = {user.id, recipient.id}
        else:
            recipient_id, group_uuid = group.id, group.uuid
            recipients = addressee.members
        record = NewMessage(
            sender_id=user.id, client_msg_id=frame.clientMsgId or None,
            message_type=message_type, recipient_id=recipient_id,
            content_type=content_type, content=content, url=url)
        return _Prepared(record, recipients, group_uuid, frame.to,
                         recipient.username if recipient else "")

    def _text(self, frame):
        """
        The text of a text message, checked.
        """
        content = frame.content
        self._check_length(content)
        if not content:
            raise refuse(BadRequest, "empty message", "empty")
        return content

    def _check_length(self, content):
        if len(content) > self._config.max_content_chars:
            raise refuse(PayloadTooLarge, "content is longer than"
                         f" {self._config.max_content_chars} characters",
                         "too_large")

    async def _content(self, user, frame):
        """
        The contentType, content and url to store, attachments saved, and
        the L{chatd.files.StoredFile} saved here for the url (or None).
        """
        content_type, content, url = frame.contentType, frame.content, frame.url
        if content_type == frames.FILE and not frame.file and ";base64," in content[:512]:
            # A file in the text: the upload limit applies, in base64.
            if len(content) > 512 + 4 * (self._files.max_bytes // 3 + 1):
                raise refuse(PayloadTooLarge, "the file is larger than"
                             f" {self._files.max_bytes} bytes", "too_large")
            data, _ = frames.decode_data_url(content)
            stored = await self._files.save(user.id, data, frame.fileSuffix)
            return frames.FILE, "", stored.name, stored
        self._check_length(content)
        if frame.file:
            stored = await self._files.save(user.id, frame.file, frame.fileSuffix)
            return frames.content_type_for(stored.media_type), "", stored.name, stored
        if content_type == frames.TEXT:
            return content_type, self._text(frame), "", None
        if not url:
            raise refuse(BadRequest, "an attachment needs file bytes, a data"
                         " URL or the url of a stored file", "no_attachment")
        await self._files.find(url)
        return content_type, content, url, None

    def _deliver(self, connection, prepared, stored):
        record = prepared.record
        frame = delivery_frame(
            connection.user, record.message_type, prepared.to,
            prepared.group_uuid, record.content_type, record.content,
            record.url, stored.id, stored.created_at, record.client_msg_id,
            prepared.recipient_username)
        self._hub.deliver(prepared.recipients, frames.encode(frame),
                          exclude=connection)

    # Relays, never stored.

    async def relay(self, connection, frame):
        """
        Call signalling and media (type "webrtc", or contentType 6 and up):
        never stored; handed to the call manager (L{set_relay_handler}),
        which relays them only within a call.
        """
        if not frame.to:
            return await self.broadcast(connection, frame)
        if self._relay_handler is None:
            raise refuse(BadRequest, "calls are not available", "unsupported")
        return await self._relay_handler(connection, frame)

    async def broadcast(self, connection, frame):
        """
        A frame with no C{to}: go-chat sends it to everyone connected; chatd
        lets only administrators do that.
        """
        user = connection.user
        if not user.is_admin:
            raise refuse(Forbidden, "only administrators may broadcast (a"
                         " message needs a to)", "not_admin")
        out = Message()
        out.CopyFrom(frame)
        out.avatar, out.fromUsername = user.avatar, user.username
        setattr(out, _FROM, user.uuid)
        self._hub.deliver(self._hub.connected_user_ids(), frames.encode(out),
                          exclude=connection)

    # Catch-up.

    async def sync(self, connection, frame):
        """
        Replay the user's messages after C{sinceId}, oldest first, in pages
        of C{sync_page_size}, waiting for the connection's buffer to drain
        between pages; then a "done" frame with the last id replayed.
        """
        user = connection.user
        last = max(frame.sinceId, 0)
        wanted = self._config.sync_max_messages
        if frame.limit > 0:
            wanted = min(wanted, frame.limit)
        page_size = self._config.sync_page_size
        group_ids = await self._hub.group_ids_of(user.id)
        sent = 0
        more = False
        while True:
            if sent >= wanted:
                more = bool(await self._messages.since(user.id, group_ids,
                                                       last, 1))
                break
            page = await self._messages.since(
                user.id, group_ids, last, min(page_size, wanted - sent))
            if not connection.connected or connection.going_away:
                return
            for message in page:
                connection.send_frame(self._replay_frame(message))
                last = message.id
            sent += len(page)
            if len(page) < min(page_size, wanted - sent + len(page)):
                break
            await connection.wait_writable()
            if not connection.connected or connection.going_away:
                return
        connection.send_frame(frames.sync_done_frame(last, more))

    def _replay_frame(self, message):
        sender = _Sender(message.sender_uuid, message.sender_username,
                         message.sender_avatar)
        frame = delivery_frame(
            sender, message.message_type, message.recipient_uuid,
            message.recipient_uuid, message.content_type, message.content,
            message.url, message.id, message.created_at,
            message.client_msg_id, message.recipient_username)
        frame.editedAt = message.edited_at or 0
        frame.recalled = message.recalled_at is not None
        return frame


class _Prepared:
    # The attachment saved for this message (a StoredFile), if any.
    saved_file = None

    def __init__(self, record, recipients, group_uuid, to, recipient_username):
        self.record = record
        self.recipients = recipients
        self.group_uuid = group_uuid
        self.to = to
        self.recipient_username = recipient_username
