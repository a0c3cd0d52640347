"""
The conversation frames of the WebSocket (docs/protocol.md has every
field):

  client -> server
    "read"      mark the conversation with C{to} read up to message C{id}
                (0: its newest message)
    "recall"    recall message C{id}
    "edit"      replace the text of message C{id} with C{content}
    "typing"    tell C{to} (a friend, or a group's other members) the
                sender is typing; C{content} "" or "stop"; never stored,
                rate-limited per sender (extra frames are dropped)
  server -> client
    "read"      C{from} read the conversation with C{to} up to C{id}: to
                the reader's devices (with C{unread}, to clear badges) and,
                one-to-one, to the other person's devices (a receipt)
    "recall"    message C{id} was recalled (C{recalled} true, C{createAt}
                the time), to every participant's devices
    "edit"      message C{id} now reads C{content} (C{editedAt}), likewise
    "typing"    relayed as messages are: C{from} the sender (the group's
                uuid for groups, C{to} then the sender's)
    "presence"  C{from} came online or went offline (C{online},
                C{lastSeen}), to their friends and fellow group members

Recall, edit and read go through the L{chatd.handlers.conversations}
handler, like their REST routes; this module turns the handler's events
into frames, so both paths notify the same way. Presence follows the Hub's
attach/detach: the first device of a user announces them online; when the
last one goes, they are announced offline only if no device comes back
within C{presence_debounce} seconds (a flapping connection stays quiet).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.auth.ratelimit import RateLimiter
from chatd.handlers import addressing
from chatd.handlers import conversations as conv
from chatd.protocol import frames
from chatd.protocol.frames import Message
from chatd.stores import now_ms

log = Logger()

READ = "read"
RECALL = "recall"
EDIT = "edit"
TYPING = "typing"
PRESENCE = "presence"

_FROM = "from"


def _message(**fields):
    sender = fields.pop("from_", "")
    frame = Message(**fields)
    setattr(frame, _FROM, sender)
    return frame


class ConversationFrames(Service):
    """
    @param hub: the L{chatd.hub.Hub}.
    @param conversations: the L{chatd.handlers.conversations.Conversations}.
    @param events: the L{chatd.events.Events} it publishes to.
    @param clock: an L{IReactorTime}.
    @param config: the L{chatd.config.MessagesConfig}.
    """

    def __init__(self, hub, conversations, events, clock, config):
        self._hub = hub
        self._conversations = conversations
        self._clock = clock
        self._debounce = config.presence_debounce
        self._typing = RateLimiter(
            clock, config.typing_burst, config.typing_per_second * 3600,
            "typing frames")
        self._offline_timers = {}
        events.subscribe(conv.RECALLED, self._recalled)
        events.subscribe(conv.EDITED, self._edited)
        events.subscribe(conv.READ, self._read)
        conversations.set_online_check(hub.is_connected)

    def install(self, factory):
        """
        Handle the client frames on C{factory}'s connections and follow
        the Hub's connections for presence.
        """
        factory.register_frame_handler(READ, self.handle_read)
        factory.register_frame_handler(RECALL, self.handle_recall)
        factory.register_frame_handler(EDIT, self.handle_edit)
        factory.register_frame_handler(TYPING, self.handle_typing)
        self._hub.add_observer(self._attached, self._detached)

    def stopService(self):
        super().stopService()
        timers, self._offline_timers = self._offline_timers, {}
        for call, _, _ in timers.values():
            if call.active():
                call.cancel()

    # Client frames.

    async def handle_read(self, connection, frame):
        await self._conversations.mark_read(
            connection.identity, frame.to, frame.id or None,
            username=connection.user.username)

    async def handle_recall(self, connection, frame):
        await self._conversations.recall(connection.identity, frame.id)

    async def handle_edit(self, connection, frame):
        await self._conversations.edit(connection.identity, frame.id,
                                       frame.content)

    async def handle_typing(self, connection, frame):
        user = connection.user
        if self._typing.retry_after(user.id):
            return
        self._typing.charge(user.id)
        out = _message(type=TYPING, from_=user.uuid, to=frame.to,
                       fromUsername=user.username, avatar=user.avatar,
                       messageType=frame.messageType or frames.ONE_TO_ONE,
                       content="stop" if frame.content == "stop" else "")
        addressee = await addressing.resolve(
            self._hub, user, frame.to, frame.messageType or frames.ONE_TO_ONE)
        targets = addressee.relay_targets(out, user)
        self._hub.deliver(targets, frames.encode(out))

    # Handler events to frames.

    def _recalled(self, change):
        frame = _message(type=RECALL, id=change.message_id, from_=change.from_uuid,
                         to=change.to_uuid, messageType=change.message_type,
                         fromUsername=change.sender_username, recalled=True,
                         createAt=change.at)
        self._hub.deliver(change.user_ids, frames.encode(frame))

    def _edited(self, change):
        frame = _message(type=EDIT, id=change.message_id, from_=change.from_uuid,
                         to=change.to_uuid, messageType=change.message_type,
                         fromUsername=change.sender_username,
                         content=change.content, editedAt=change.at)
        self._hub.deliver(change.user_ids, frames.encode(frame))

    def _read(self, receipt):
        mine = _message(type=READ, from_=receipt.reader_uuid,
                        fromUsername=receipt.reader_username,
                        to=receipt.target_uuid, id=receipt.last_read_id,
                        messageType=receipt.message_type,
                        unread=receipt.unread)
        self._hub.deliver([receipt.reader_id], frames.encode(mine))
        if receipt.peer_id is not None and receipt.peer_id != receipt.reader_id:
            theirs = _message(type=READ, from_=receipt.reader_uuid,
                              fromUsername=receipt.reader_username,
                              to=receipt.target_uuid, id=receipt.last_read_id,
                              messageType=frames.ONE_TO_ONE)
            self._hub.deliver([receipt.peer_id], frames.encode(theirs))

    # Presence.

    def _attached(self, connection):
        user = connection.user
        if len(self._hub.connections_of(user.id)) != 1:
            return
        pending = self._offline_timers.pop(user.id, None)
        if pending is not None:
            pending[0].cancel()
            return
        self._run(self._announce(user, True, 0))

    def _detached(self, connection):
        user = connection.user
        if self._hub.is_connected(user.id):
            return
        when = now_ms(self._clock)
        if not self.running:
            self._run(self._conversations.went_offline(user.id, when))
            return
        call = self._clock.callLater(self._debounce, self._offline, user.id)
        self._offline_timers[user.id] = (call, user, when)

    def _offline(self, user_id):
        _, user, when = self._offline_timers.pop(user_id)
        self._run(self._went_offline(user, when))

    async def _went_offline(self, user, when):
        await self._conversations.went_offline(user.id, when)
        await self._announce(user, False, when)

    async def _announce(self, user, online, last_seen):
        contacts = await self._conversations.contacts(user.id)
        frame = _message(type=PRESENCE, from_=user.uuid,
                         fromUsername=user.username, avatar=user.avatar,
                         online=online, lastSeen=last_seen,
                         content="online" if online else "offline")
        self._hub.deliver(contacts, frames.encode(frame))

    def _run(self, coroutine):
        d = Deferred.fromCoroutine(coroutine)
        d.addErrback(lambda failure: log.failure("Presence update failed",
                                                 failure))
        return d


def build_conversation_frames(config, hub, factory, parts, reactor):
    """
    The L{ConversationFrames} service over the shared parts, installed on
    C{factory}; put it in the service tree after the Hub.
    """
    frames_service = ConversationFrames(hub, parts.conversations, parts.events,
                                        reactor, config.messages)
    frames_service.install(factory)
    return frames_service
