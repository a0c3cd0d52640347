"""
Conversations: the rules for reading history, the conversation list, read
positions, search, recall, edit and presence. Used by the REST API and the
WebSocket alike.

  - A conversation is named by the uuid of the other person (one-to-one)
    or of the group. Only its participants may read, search or mark it
    read: the two people, or the group's current members.
  - A sender may recall a message within C{recall_window} seconds and edit
    a text message within C{edit_window}; a group's owner may recall any
    message of the group at any time. Nobody else may touch a message.
  - Presence and last-seen times are shown to the user themself, their
    friends and fellow group members.

Changes are announced through L{chatd.events.Events} once committed
(L{RECALLED}, L{EDITED}, L{READ}); the WebSocket side turns them into
frames for every connected device concerned.
"""

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import events as event_names
from chatd.errors import BadRequest, Conflict, Forbidden, NotFound
from chatd.handlers import validation
from chatd.stores import now_ms
from chatd.stores.messages import GROUP, ONE_TO_ONE, conversation_key
from chatd.stores.reads import parse_cursor
from chatd.stores.search import parse_query

log = Logger()

# Events (see chatd.events), with their keyword arguments.
RECALLED = "message_recalled"  # change: a L{MessageChange}
EDITED = "message_edited"  # change: a L{MessageChange}
READ = "conversation_read"  # receipt: a L{ReadReceipt}

MAX_CONVERSATIONS_PAGE = 100
MAX_SEARCH_PAGE = 100
MAX_PRESENCE_USERS = 200
TEXT = 1


@dataclass(frozen=True)
class Target:
    """
    A conversation as seen by one participant.

    @ivar kind: 1 one-to-one, 2 group.
    @ivar peer: the other L{User} (one-to-one), or None.
    @ivar group: the L{Group} (group), or None.
    """

    kind: int
    conversation: str
    uuid: str
    peer: object = None
    group: object = None


@dataclass(frozen=True)
class MessageChange:
    """
    A recalled or edited message, addressed as its deliveries were: for a
    group, C{from_uuid} is the group's uuid and C{to_uuid} the sender's.

    @ivar user_ids: the participants, whose devices are told.
    """

    message_id: int
    message_type: int
    from_uuid: str
    to_uuid: str
    sender_username: str
    user_ids: frozenset
    content: str
    at: int
    by_uuid: str


@dataclass(frozen=True)
class ReadReceipt:
    """
    A user's read position moved.

    @ivar peer_id: the other person of a one-to-one conversation that
        has messages (told with a receipt), or None: a group, or nothing
        said yet (a stranger's receipts would be unasked-for frames).
    """

    reader_id: int
    reader_uuid: str
    reader_username: str
    message_type: int
    target_uuid: str
    peer_id: int | None
    last_read_id: int
    unread: int


class Conversations:
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param group_store: a L{chatd.stores.groups.GroupStore}.
    @param history: the L{chatd.handlers.history.History} handler.
    @param reads: a L{chatd.stores.reads.ReadStore}.
    @param search: a L{chatd.stores.search.SearchStore}.
    @param edits: a L{chatd.stores.edits.EditStore}.
    @param presence: a L{chatd.stores.presence.PresenceStore}.
    @param files: the L{chatd.files.FileStore} (attachments of recalls).
    @param events: the L{chatd.events.Events} changes are published to.
    @param clock: an L{IReactorTime}.
    @param config: the L{chatd.config.MessagesConfig}.
    @param max_content_chars: the longest text an edit may set.
    """

    def __init__(self, users, group_store, history, reads, search, edits,
                 presence, files, events, clock, config,
                 max_content_chars=2500):
        self._users = users
        self._groups = group_store
        self._history = history
        self._reads = reads
        self._search = search
        self._edits = edits
        self._presence = presence
        self._files = files
        self._events = events
        self._clock = clock
        self._config = config
        self._max_content_chars = max_content_chars
        self._is_online = lambda user_id: False
        events.subscribe(event_names.MEMBER_JOINED, self._member_joined)

    def _member_joined(self, group_id, user_id, **_):
        """
        A new member starts with the group read up to now: what was said
        before they joined is not unread (and never has to be counted).
        """
        d = Deferred.fromCoroutine(self._reads.mark_read(
            user_id, conversation_key(GROUP, user_id, group_id), None,
            now_ms(self._clock)))
        d.addErrback(lambda failure: log.failure(
            "Setting the read position of a new member failed", failure))

    def set_online_check(self, is_online):
        """
        Use C{is_online(user_id)} (the Hub's) to tell who is connected.
        """
        self._is_online = is_online

    # Who may read what.

    async def target(self, identity, uuid):
        """
        The conversation of the caller with the user or group C{uuid}.

        @raise NotFound: no such user or group.
        @raise Forbidden: a group the caller is not a member of.
        """
        if not uuid or not isinstance(uuid, str):
            raise BadRequest("uuid: required")
        peer = await self._users.get_by_uuid(uuid)
        if peer is not None:
            return Target(ONE_TO_ONE, conversation_key(
                ONE_TO_ONE, identity.user_id, peer.id), uuid, peer=peer)
        group = await self._groups.get_by_uuid(uuid)
        if group is None:
            raise NotFound("no such user or group")
        if not await self._groups.is_member(group.id, identity.user_id):
            raise Forbidden("only members of the group may do this")
        return Target(GROUP, conversation_key(GROUP, identity.user_id,
                                              group.id), uuid, group=group)

    async def _participants(self, facts):
        if facts.message_type == GROUP:
            return frozenset(await self._groups.member_ids(facts.recipient_id))
        return frozenset({facts.sender_id, facts.recipient_id})

    async def _message(self, identity, message_id):
        """
        A message the caller takes part in, and its participants.
        """
        validation.message_id(message_id)
        facts = await self._edits.facts(message_id)
        if facts is None:
            raise NotFound("no such message")
        participants = await self._participants(facts)
        if identity.user_id not in participants:
            raise Forbidden("only the participants of a conversation may do"
                            " this")
        return facts, participants

    # History, the list, read positions.

    async def history(self, identity, uuid, before=None, after=None,
                      limit=50):
        """
        A page of a conversation, oldest first (see
        L{chatd.handlers.history.History.page}).

        @return: C{(target, messages)}; the messages are
            L{chatd.stores.messages.StoredMessage}s, with their
            C{edited_at} and C{recalled_at}.
        """
        target = await self.target(identity, uuid)
        if target.kind == ONE_TO_ONE:
            page = await self._history.page(
                identity, identity.uuid, ONE_TO_ONE,
                friend_username=target.peer.username, before=before,
                after=after, limit=limit)
        else:
            page = await self._history.page(
                identity, target.uuid, GROUP, before=before, after=after,
                limit=limit)
        return target, page

    async def list(self, identity, before=None, limit=20):
        """
        A page of the caller's conversations, newest first; C{before} is
        the C{cursor} of the last one of the previous page.
        """
        if not 1 <= limit <= MAX_CONVERSATIONS_PAGE:
            raise BadRequest(
                f"limit: must be between 1 and {MAX_CONVERSATIONS_PAGE}")
        position = None
        if before:
            try:
                position = parse_cursor(before)
            except ValueError:
                raise BadRequest("before: not a cursor from a previous page")
        return await self._reads.conversations(identity.user_id, position,
                                               limit)

    async def mark_read(self, identity, uuid, up_to_id=None,
                        username=""):
        """
        Mark the conversation with C{uuid} read up to message C{up_to_id}
        (None: its newest message).

        @return: the L{chatd.stores.reads.ReadPosition}.
        """
        if up_to_id is not None:
            validation.message_id(up_to_id)
        target = await self.target(identity, uuid)
        position = await self._reads.mark_read(
            identity.user_id, target.conversation, up_to_id,
            now_ms(self._clock))
        self._events.publish(READ, receipt=ReadReceipt(
            reader_id=identity.user_id, reader_uuid=identity.uuid,
            reader_username=username or getattr(identity, "username", ""),
            message_type=target.kind, target_uuid=target.uuid,
            peer_id=(target.peer.id if target.peer and position.last_read_id
                     else None),
            last_read_id=position.last_read_id, unread=position.unread))
        return position

    # Search.

    async def search(self, identity, text, uuid=None, before=None, limit=20):
        """
        Messages the caller may read matching C{text}, newest first; only
        in the conversation with C{uuid} if given; below message id
        C{before} if given.
        """
        if not 1 <= limit <= MAX_SEARCH_PAGE:
            raise BadRequest(f"limit: must be between 1 and {MAX_SEARCH_PAGE}")
        query = parse_query(text)
        conversation = None
        group_ids = []
        if uuid:
            conversation = (await self.target(identity, uuid)).conversation
        else:
            group_ids = await self._groups.group_ids_of(identity.user_id)
        return await self._search.search(identity.user_id, group_ids, query,
                                         conversation, before, limit)

    # Recall and edit.

    async def recall(self, identity, message_id):
        """
        Recall a message: the sender within the recall window, or the
        owner of its group at any time.

        @return: the L{MessageChange}.
        """
        facts, participants = await self._message(identity, message_id)
        group = None
        if facts.message_type == GROUP:
            group = await self._groups.get_by_id(facts.recipient_id)
        owner = group is not None and group.owner_id == identity.user_id
        now = now_ms(self._clock)
        if facts.recalled_at is not None:
            raise Conflict("this message was already recalled")
        if not owner:
            if facts.sender_id != identity.user_id:
                raise Forbidden("you may only recall your own messages")
            self._check_window(facts, now, self._config.recall_window,
                               "recalled")
        recalled, orphan = await self._edits.recall(facts.id, now)
        if not recalled:
            raise Conflict("this message was already recalled")
        if orphan:
            await self._files.remove_bytes(self._files.path_of(orphan))
        change = await self._change(facts, participants, "", now, identity)
        self._events.publish(RECALLED, change=change)
        return change

    async def edit(self, identity, message_id, content):
        """
        Replace the text of one's own text message within the edit window.

        @return: the L{MessageChange}.
        """
        if not isinstance(content, str) or not content.strip():
            raise BadRequest("content: the new text is required")
        if len(content) > self._max_content_chars:
            raise BadRequest(
                f"content: at most {self._max_content_chars} characters")
        facts, participants = await self._message(identity, message_id)
        if facts.sender_id != identity.user_id:
            raise Forbidden("you may only edit your own messages")
        if facts.recalled_at is not None:
            raise Conflict("this message was recalled")
        if facts.content_type != TEXT:
            raise BadRequest("only text messages can be edited")
        now = now_ms(self._clock)
        self._check_window(facts, now, self._config.edit_window, "edited")
        if not await self._edits.edit(facts.id, content, now):
            raise Conflict("this message was recalled")
        change = await self._change(facts, participants, content, now,
                                    identity)
        self._events.publish(EDITED, change=change)
        return change

    def _check_window(self, facts, now, window, done):
        if now - facts.created_at > window * 1000:
            raise Forbidden(f"a message can only be {done} within"
                            f" {window:g} seconds of sending it")

    async def _change(self, facts, participants, content, now, identity):
        sender = await self._users.get_by_id(facts.sender_id)
        if facts.message_type == GROUP:
            group = await self._groups.get_by_id(facts.recipient_id)
            from_uuid, to_uuid = group.uuid, sender.uuid
        else:
            recipient = await self._users.get_by_id(facts.recipient_id)
            from_uuid, to_uuid = sender.uuid, recipient.uuid
        return MessageChange(
            message_id=facts.id, message_type=facts.message_type,
            from_uuid=from_uuid, to_uuid=to_uuid,
            sender_username=sender.username, user_ids=participants,
            content=content, at=now, by_uuid=identity.uuid)

    # Presence.

    async def presence(self, identity, uuids):
        """
        Whether each of C{uuids} is online and when they were last seen;
        only the caller, friends and fellow group members are shown.

        @return: a list of C{(user, online, last_seen)}, last_seen in
            milliseconds (None: never seen, or online now).
        """
        uuids = [u for u in dict.fromkeys(uuids or []) if u]
        if not uuids:
            raise BadRequest("uuids: give at least one user uuid")
        if len(uuids) > MAX_PRESENCE_USERS:
            raise BadRequest(f"uuids: at most {MAX_PRESENCE_USERS}")
        users = []
        for uuid in uuids:
            user = await self._users.get_by_uuid(uuid)
            if user is None:
                raise NotFound("no such user")
            users.append(user)
        others = [u.id for u in users if u.id != identity.user_id]
        visible = set(await self._presence.contacts(identity.user_id))
        hidden = [i for i in others if i not in visible]
        if hidden:
            raise Forbidden("you may only see the presence of friends and"
                            " fellow group members")
        seen = await self._presence.last_seen([u.id for u in users])
        result = []
        for user in users:
            online = self._is_online(user.id)
            result.append((user, online, None if online else seen.get(user.id)))
        return result

    async def went_offline(self, user_id, when):
        """
        Record that a user's last device went away at C{when} (ms).
        """
        await self._presence.set_last_seen(user_id, when)

    async def contacts(self, user_id):
        """
        The ids of a user's friends and fellow group members.
        """
        return await self._presence.contacts(user_id)


def build_conversations(config, database, reactor, parts):
    """
    The L{Conversations} handler over the shared parts.
    """
    from chatd.stores.edits import EditStore
    from chatd.stores.presence import PresenceStore
    from chatd.stores.reads import ReadStore
    from chatd.stores.search import SearchStore

    return Conversations(
        parts.users, parts.group_store, parts.history, ReadStore(database),
        SearchStore(database), EditStore(database), PresenceStore(database),
        parts.files, parts.events, reactor, config.messages,
        max_content_chars=config.websocket.max_content_chars)
