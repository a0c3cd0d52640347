"""
Chat messages: SQL only.

A message's C{conversation} is C{d:<low user id>:<high user id>} for
one-to-one messages and C{g:<group id>} for group messages (see
L{conversation_key}); a conversation's history is one range scan of the
index C{(conversation, id)}. C{(sender_id, client_msg_id)} is unique, which
is what makes resends idempotent.
"""

from dataclasses import dataclass
from typing import NamedTuple

ONE_TO_ONE = 1
GROUP = 2


def conversation_key(message_type, sender_id, recipient_id):
    """
    The C{conversation} of a message from C{sender_id} to C{recipient_id}
    (a user id for one-to-one messages, a group id for group messages).
    """
    if message_type == GROUP:
        return f"g:{recipient_id}"
    if sender_id < recipient_id:
        return f"d:{sender_id}:{recipient_id}"
    return f"d:{recipient_id}:{sender_id}"


class NewMessage(NamedTuple):
    """
    A message to store; the server assigns its id and time. (Tuples, as
    L{Stored}: one of each is made per message on the hot path.)

    @ivar client_msg_id: the sender's id for it, or None.
    @ivar recipient_id: a user id (one-to-one) or a group id (group).
    """

    sender_id: int
    client_msg_id: str | None
    message_type: int
    recipient_id: int
    content_type: int
    content: str
    url: str = ""

    @property
    def conversation(self):
        return conversation_key(self.message_type, self.sender_id,
                                self.recipient_id)


class Stored(NamedTuple):
    """
    Where a L{NewMessage} ended up.

    @ivar duplicate: True if the sender had already stored a message with
        this client message id; C{id} and C{created_at} are then that
        message's.
    """

    id: int
    created_at: int
    duplicate: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """
    A stored message with the names its frames need.

    @ivar recipient_uuid: the recipient user's uuid, or the group's uuid.
    @ivar recipient_username: the recipient user's name ("" for groups).
    @ivar edited_at: when its text was last edited, or None.
    @ivar recalled_at: when it was recalled (content and url are then
        empty), or None.
    """

    id: int
    conversation: str
    sender_id: int
    client_msg_id: str | None
    message_type: int
    recipient_id: int
    content_type: int
    content: str
    url: str
    created_at: int
    sender_uuid: str
    sender_username: str
    sender_avatar: str
    recipient_uuid: str
    recipient_username: str
    edited_at: int | None = None
    recalled_at: int | None = None


_STORED_COLUMNS = (
    "m.id, m.conversation, m.sender_id, m.client_msg_id, m.message_type,"
    " m.recipient_id, m.content_type, m.content, m.url, m.created_at,"
    " s.uuid, s.username, s.avatar,"
    " COALESCE(r.uuid, g.uuid, ''), COALESCE(r.username, ''),"
    " m.edited_at, m.recalled_at")

_STORED_FROM = (
    " FROM messages m JOIN users s ON s.id = m.sender_id"
    " LEFT JOIN users r ON m.message_type = 1 AND r.id = m.recipient_id"
    " LEFT JOIN chat_groups g ON m.message_type = 2 AND g.id = m.recipient_id")


def _stored_from_row(row):
    return StoredMessage(
        id=int(row[0]), conversation=row[1], sender_id=int(row[2]),
        client_msg_id=row[3], message_type=int(row[4]),
        recipient_id=int(row[5]), content_type=int(row[6]), content=row[7],
        url=row[8], created_at=int(row[9]), sender_uuid=row[10],
        sender_username=row[11], sender_avatar=row[12],
        recipient_uuid=row[13], recipient_username=row[14],
        edited_at=None if row[15] is None else int(row[15]),
        recalled_at=None if row[16] is None else int(row[16]))


# The most messages in a batch (websocket.batch_size): rows per MySQL
# INSERT, or client id pairs per lookup. (SQLite allows 32,766 parameters
# in a statement.)
MAX_BATCH = 512
_CHUNK = MAX_BATCH
# An INSERT's most bytes, well under MySQL's default max_allowed_packet
# (16 MB in MariaDB 10.11, 64 MB in MySQL 8).
STATEMENT_BYTES = 4 * 1024 * 1024
# Conversations per statement in sync (SQLite allows 500 SELECTs in a
# compound statement).
_SOURCES = 100
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def client_ids_query(pairs):
    """
    The SQL and arguments that find the stored messages among C{pairs} of
    (sender id, client message id): one lookup in the unique index each.
    (Not C{(sender_id, client_msg_id) IN (...)}: SQLite answers a
    row-value IN list by scanning the whole table.)
    """
    terms = " OR ".join("(sender_id = ? AND client_msg_id = ?)" for _ in pairs)
    return (
        "SELECT sender_id, client_msg_id, id, created_at FROM messages"
        f" WHERE {terms}", [value for pair in pairs for value in pair])


def insert_batch_txn(txn, messages, created_at, new_participants, floor_id=0):
    """
    Store C{messages} (L{NewMessage}s) at time C{created_at}, in order; a
    message whose sender already stored its client message id (earlier, or
    earlier in this batch) is not stored again.

    It may run where each statement commits by itself (see
    L{MessageStore.insert_batch}): the participants are noted first, so
    sync finds a message as soon as it is visible, and the messages are
    then one statement, stored whole or not at all. On MySQL, where each
    statement is a round trip, the insert is tried first: resends are
    rare, and the unique index on C{(sender_id, client_msg_id)} tells when
    one was among them; only then are the stored ones looked up and left
    out. SQLite looks them up first: in process that costs less than the
    savepoint a failed insert would need. So does a MySQL batch too large
    for one statement: a later statement's failure would leave the rows of
    the earlier ones in the transaction.

    @param new_participants: the (user id, conversation) pairs of the
        batch (L{participants}) to make sure of in C{user_conversations}.
    @param floor_id: the highest message id the caller stored before this
        batch: on a retry, a stored copy above it, at C{created_at}, was
        stored by this batch's lost attempt (L{_unstored_txn}).

    @return: a L{Stored} for each message, in the same order.
    """
    _record_participants_txn(txn, sorted(new_participants))
    first_copy = {}
    new = []
    for index, message in enumerate(messages):
        if message.client_msg_id:
            key = (message.sender_id, message.client_msg_id)
            if key in first_copy:
                # A resend within the batch: stored once, by the first copy.
                continue
            first_copy[key] = index
        new.append((index, message))
    results = [None] * len(messages)
    rows = dict(zip((index for index, _ in new),
                    _rows_txn(txn, [m for _, m in new], created_at), strict=True))
    if txn.engine.name == "sqlite" or not _fits_one_statement([m for _, m in new]):
        new = _unstored_txn(txn, new, results, created_at, floor_id)
        ids = _insert_txn(txn, new, rows)
    else:
        try:
            ids = _insert_txn(txn, new, rows)
        except Exception as error:
            if not txn.engine.is_duplicate(error):
                raise
            new = _unstored_txn(txn, new, results, created_at, floor_id)
            ids = _insert_txn(txn, new, rows)
    for (index, _), message_id in zip(new, ids, strict=True):
        results[index] = Stored(message_id, created_at)
    for index, message in enumerate(messages):
        if results[index] is None:
            first = results[first_copy[(message.sender_id, message.client_msg_id)]]
            results[index] = Stored(first.id, first.created_at, duplicate=True)
    return results


def _unstored_txn(txn, new, results, created_at, floor_id):
    """
    The (index, message) pairs of C{new} whose client message id is not
    stored yet; the L{Stored} of each other one goes in C{results} at its
    index: a duplicate, unless this is a retry and it was stored at
    C{created_at} with an id above C{floor_id}. Then it is this batch's
    message, stored by the attempt whose reply was lost, and it still has
    to be delivered.
    """
    pairs = sorted({(m.sender_id, m.client_msg_id) for _, m in new if m.client_msg_id})
    known = {}
    for start in range(0, len(pairs), _CHUNK):
        txn.execute(*client_ids_query(pairs[start:start + _CHUNK]))
        for sender_id, client_msg_id, message_id, when in txn.fetchall():
            ours = txn.retry and int(when) == created_at and int(message_id) > floor_id
            known[(int(sender_id), client_msg_id)] = Stored(
                int(message_id), int(when), duplicate=not ours)
    unstored = []
    for index, message in new:
        stored = known.get((message.sender_id, message.client_msg_id))
        if stored is None:
            unstored.append((index, message))
        else:
            results[index] = stored
    return unstored


def _rows_txn(txn, messages, created_at):
    """
    The rows that store C{messages} at C{created_at}.
    """
    file_ids = _file_ids_txn(txn, [m.url for m in messages if m.url])
    return [(m.conversation, m.sender_id, m.client_msg_id or None,
             m.message_type, m.recipient_id, m.content_type, m.content, m.url,
             file_ids.get(m.url), created_at) for m in messages]


def _insert_txn(txn, new, rows):
    """
    Insert the (index, message) pairs C{new}, whose rows C{rows} holds by
    index; their ids, in order.
    """
    if not new:
        return []
    ordered = [rows[index] for index, _ in new]
    if txn.engine.name == "sqlite":
        return _insert_rows_sqlite_txn(txn, ordered)
    ids = []
    for start, end in _statement_slices([m for _, m in new]):
        txn.execute_values(_INSERT, ordered[start:end], " RETURNING id")
        # One statement numbers its rows in order, whatever order RETURNING
        # lists them in.
        ids.extend(sorted(int(row[0]) for row in txn.fetchall()))
    return ids


_INSERT = (
    "INSERT INTO messages (conversation, sender_id, client_msg_id,"
    " message_type, recipient_id, content_type, content, url, file_id,"
    " created_at) VALUES ")


def _file_ids_txn(txn, urls):
    """
    The id of the stored file each of C{urls} names (None if none), by url:
    the database matches the names, as its collation compares them.
    """
    urls = sorted(set(urls))
    found = {}
    for start in range(0, len(urls), _SOURCES):
        chunk = urls[start:start + _SOURCES]
        txn.execute(" UNION ALL ".join(
            "SELECT ?, (SELECT id FROM files WHERE name = ?)" for _ in chunk),
            [value for url in chunk for value in (url, url)])
        found.update((url, None if file_id is None else int(file_id))
                     for url, file_id in txn.fetchall())
    return found


def _insert_rows_sqlite_txn(txn, rows):
    """
    Insert message C{rows}; their ids, in order. One statement, prepared
    once, run per row: SQLite's only writer is this transaction, so the
    rows get consecutive ids ending at the last one inserted.
    """
    txn.executemany(_INSERT + _ROW, rows)
    txn.execute("SELECT last_insert_rowid()")
    last = int(txn.fetchone()[0])
    return list(range(last - len(rows) + 1, last + 1))


def _statement_slices(messages):
    """
    The (start, end) slices of C{messages} that MySQL INSERTs take: at
    most C{_CHUNK} rows and C{STATEMENT_BYTES} each.
    """
    slices, start, size = [], 0, 0
    for end, message in enumerate(messages):
        message_size = _message_bytes(message)
        if end > start and (end - start == _CHUNK or size + message_size > STATEMENT_BYTES):
            slices.append((start, end))
            start, size = end, 0
        size += message_size
    if start < len(messages):
        slices.append((start, len(messages)))
    return slices


def _message_bytes(message):
    # At most: four bytes a character, each escaped to two, the longest
    # conversation and client id, and the numbers.
    return 8 * (len(message.content) + len(message.url) + 48 + 64) + 100


def _fits_one_statement(messages):
    return len(_statement_slices(messages)) <= 1


def one_statement(messages):
    """
    Whether MySQL stores C{messages} in one INSERT, and a retry after a
    lost reply can tell what that INSERT stored: each has a client id, and
    together they fit one statement.
    """
    return (all(m.client_msg_id for m in messages)
            and _fits_one_statement(messages))


def participants(messages):
    """
    The (user id, conversation) pairs of the one-to-one C{messages}.
    """
    pairs = set()
    for m in messages:
        if m.message_type == ONE_TO_ONE:
            conversation = m.conversation
            pairs.add((m.sender_id, conversation))
            pairs.add((m.recipient_id, conversation))
    return pairs


def _record_participants_txn(txn, pairs):
    """
    Note that users take part in one-to-one conversations (for
    L{since_txn}): C{pairs} of (user id, conversation), each written once
    ever. A pair whose message turned out to be a resend, or was not
    stored, is noted all the same: its conversation is only read for
    nothing.
    """
    if txn.engine.name == "sqlite":
        ignore = " ON CONFLICT (user_id, conversation) DO NOTHING"
    else:
        ignore = " ON DUPLICATE KEY UPDATE user_id = user_id"
    for start in range(0, len(pairs), _CHUNK):
        txn.execute_values(
            "INSERT INTO user_conversations (user_id, conversation) VALUES ",
            pairs[start:start + _CHUNK], ignore)


def since_txn(txn, user_id, group_ids, after_id, limit):
    """
    The messages C{user_id} may see with an id above C{after_id}: those of
    its one-to-one conversations (sent or received, from
    C{user_conversations}) and of C{group_ids}, in id order, at most
    C{limit}.

    Each conversation is its own range scan of C{messages_conversation},
    limited on its own, in statements of C{_SOURCES} conversations; once
    C{limit} ids are in hand, later statements only look below the highest
    of them. So however far behind the user is, a call reads at most
    C{limit} ids per conversation of the first statement and C{limit} per
    later statement, plus one index seek per conversation.

    Its statements must read one snapshot (L{Database.run_consistent}):
    a batch committed between two of them could otherwise show a message
    above one it hides, and the caller's cursor would pass over the latter.
    """
    txn.execute("SELECT conversation FROM user_conversations WHERE user_id = ?",
                (user_id,))
    conversations = sorted(row[0] for row in txn.fetchall())
    conversations += [f"g:{group_id}" for group_id in sorted(group_ids)]
    ids = []
    for start in range(0, len(conversations), _SOURCES):
        chunk = conversations[start:start + _SOURCES]
        below = " AND id < ?" if len(ids) == limit else ""
        bound = [ids[-1]] if below else []
        union = " UNION ALL ".join(
            f"SELECT id FROM (SELECT id FROM messages WHERE conversation = ?"
            f" AND id > ?{below} ORDER BY id LIMIT ?) AS s{n}"
            for n in range(len(chunk)))
        txn.execute(union, [value for conversation in chunk
                            for value in (conversation, after_id, *bound, limit)])
        ids = sorted(ids + [int(row[0]) for row in txn.fetchall()])[:limit]
    if not ids:
        return []
    txn.execute(
        f"SELECT {_STORED_COLUMNS}{_STORED_FROM}"
        f" WHERE m.id IN ({', '.join('?' for _ in ids)}) ORDER BY m.id", ids)
    return [_stored_from_row(row) for row in txn.fetchall()]


def conversation_page_txn(txn, conversation, before_id, limit):
    """
    Up to C{limit} messages of one conversation with an id below
    C{before_id} (None: the newest), newest first.
    """
    if before_id is None:
        page = ("SELECT id FROM messages WHERE conversation = ?"
                " ORDER BY id DESC LIMIT ?", [conversation, limit])
    else:
        page = ("SELECT id FROM messages WHERE conversation = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?", [conversation, before_id, limit])
    return _stored_page_txn(txn, page, "DESC")


def conversation_after_txn(txn, conversation, after_id, limit):
    """
    Up to C{limit} messages of one conversation with an id above
    C{after_id}, oldest first.
    """
    return _stored_page_txn(
        txn, ("SELECT id FROM messages WHERE conversation = ? AND id > ?"
              " ORDER BY id LIMIT ?", [conversation, after_id, limit]), "")


def _stored_page_txn(txn, page, order):
    """
    The L{StoredMessage}s whose ids C{page} (SQL and arguments) selects.

    The page is cut first, from the index alone, and only its rows are
    joined: with the joins in the same statement MariaDB read the whole
    conversation to sort it, whatever the LIMIT.
    """
    sql, args = page
    txn.execute(
        f"SELECT {_STORED_COLUMNS}{_STORED_FROM}"
        f" JOIN ({sql}) AS page ON page.id = m.id ORDER BY m.id {order}", args)
    return [_stored_from_row(row) for row in txn.fetchall()]


def count_by_client_id_txn(txn, sender_id, client_msg_id):
    txn.execute(
        "SELECT COUNT(*) FROM messages WHERE sender_id = ? AND client_msg_id = ?",
        (sender_id, client_msg_id))
    return int(txn.fetchone()[0])


class MessageStore:
    """
    @param known_participants_max: how many (user, conversation) pairs of
        C{user_conversations} to remember, so that a batch of messages in
        known conversations writes nothing there (not even a lookup).
    """

    def __init__(self, database, known_participants_max=20000):
        self._database = database
        self._known = set()
        self._known_max = known_participants_max
        self._floor_id = 0

    async def insert_batch(self, messages, created_at):
        """
        Store a batch of L{NewMessage}s; see L{insert_batch_txn}.

        A batch that L{one_statement} allows goes to the writer connection
        (L{Database.run_writes}: on MySQL one INSERT that commits itself).
        Any other is one transaction: a message without a client id could
        not be told from a copy of itself after a retry, had an INSERT
        committed without its reply.
        """
        messages = list(messages)
        pairs = participants(messages) - self._known
        run = (self._database.run_writes if one_statement(messages)
               else self._database.run)
        results = await run("insert_messages", insert_batch_txn, messages,
                            created_at, pairs, self._floor_id)
        # Committed: every pair of the batch is stored now.
        if len(self._known) > self._known_max:
            self._known.clear()
        self._known.update(pairs)
        self._floor_id = max([self._floor_id, *(r.id for r in results)])
        return results

    async def since(self, user_id, group_ids, after_id, limit):
        """
        See L{since_txn}.
        """
        return await self._database.run_consistent(
            "messages_since", since_txn, user_id, list(group_ids), after_id,
            limit)

    async def conversation_page(self, conversation, before_id=None, limit=50):
        """
        See L{conversation_page_txn}.
        """
        return await self._database.run(
            "conversation_page", conversation_page_txn, conversation,
            before_id, limit)

    async def conversation_after(self, conversation, after_id, limit=50):
        """
        See L{conversation_after_txn}.
        """
        return await self._database.run(
            "conversation_after", conversation_after_txn, conversation,
            after_id, limit)

    async def count_by_client_id(self, sender_id, client_msg_id):
        """
        How many messages a sender stored under a client message id (0 or 1).
        """
        return await self._database.run(
            "count_by_client_id", count_by_client_id_txn, sender_id,
            client_msg_id)
