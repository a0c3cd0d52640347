"""
Read positions and the conversation list: SQL only.

A read position is the id of the newest message a user has read in a
conversation (C{conversation_reads}); it only moves forward. A message is
unread for a user when it is newer than their position and someone else
sent it. The conversation list is one statement per page: the caller's
friends and groups, each with its last message (an index lookup on
C{messages (conversation, id)}), ordered newest first, then the unread
counts and names for that page only.
"""

from dataclasses import dataclass

from chatd.errors import NotFound
from chatd.stores import ID_MAX


@dataclass(frozen=True)
class ReadPosition:
    conversation: str
    last_read_id: int
    unread: int


@dataclass(frozen=True)
class ConversationSummary:
    """
    One line of the conversation list.

    @ivar kind: 1 one-to-one, 2 group.
    @ivar target_id: the friend's user id, or the group's id.
    @ivar uuid: the friend's or the group's uuid; C{name} likewise.
    @ivar last_id: the last message's id (0: no messages yet); the
        C{last_*} fields are that message's (None without one).
    @ivar peer_read_id: how far the friend has read (one-to-one only).
    """

    conversation: str
    kind: int
    target_id: int
    uuid: str
    name: str
    avatar: str
    last_id: int
    last_read_id: int
    unread: int
    peer_read_id: int
    last_sender_uuid: str | None
    last_sender_username: str | None
    last_content_type: int | None
    last_content: str | None
    last_url: str | None
    last_created_at: int | None
    last_edited_at: int | None
    last_recalled_at: int | None

    @property
    def cursor(self):
        """
        The C{before} cursor for the page after this line.
        """
        return f"{self.last_id}~{self.conversation}"


def parse_cursor(cursor):
    """
    @return: C{(last_id, conversation)} from L{ConversationSummary.cursor}.
    @raise ValueError: not one.
    """
    last_id, _, conversation = cursor.partition("~")
    if not conversation or conversation[:2] not in ("d:", "g:"):
        raise ValueError(cursor)
    last_id = int(last_id)
    if not 0 <= last_id <= ID_MAX:
        raise ValueError(cursor)
    return last_id, conversation


def _unread_txn(txn, user_id, conversation, last_read_id):
    txn.execute(
        "SELECT COUNT(*) FROM messages WHERE conversation = ? AND id > ?"
        " AND sender_id <> ?", (conversation, last_read_id, user_id))
    return int(txn.fetchone()[0])


def read_position_txn(txn, user_id, conversation):
    txn.execute(
        "SELECT last_read_id FROM conversation_reads"
        " WHERE user_id = ? AND conversation = ?", (user_id, conversation))
    row = txn.fetchone()
    last_read_id = int(row[0]) if row else 0
    return ReadPosition(conversation, last_read_id,
                        _unread_txn(txn, user_id, conversation, last_read_id))


def mark_read_txn(txn, user_id, conversation, up_to_id, now):
    """
    Move C{user_id}'s read position in C{conversation} up to message
    C{up_to_id} (None: the newest message); a position never moves back.

    @raise NotFound: C{up_to_id} is not a message of the conversation.
    @return: the L{ReadPosition} after the change.
    """
    if up_to_id is None:
        txn.execute("SELECT MAX(id) FROM messages WHERE conversation = ?",
                    (conversation,))
        row = txn.fetchone()
        up_to_id = int(row[0]) if row and row[0] is not None else 0
    else:
        txn.execute("SELECT 1 FROM messages WHERE id = ? AND conversation = ?",
                    (up_to_id, conversation))
        if txn.fetchone() is None:
            raise NotFound("no such message in this conversation")
    if up_to_id:
        if txn.engine.name == "sqlite":
            txn.execute(
                "INSERT INTO conversation_reads (user_id, conversation,"
                " last_read_id, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, conversation) DO UPDATE SET"
                " last_read_id = MAX(last_read_id, excluded.last_read_id),"
                " updated_at = excluded.updated_at",
                (user_id, conversation, up_to_id, now))
        else:
            txn.execute(
                "INSERT INTO conversation_reads (user_id, conversation,"
                " last_read_id, updated_at) VALUES (?, ?, ?, ?)"
                " ON DUPLICATE KEY UPDATE"
                " last_read_id = GREATEST(last_read_id, VALUES(last_read_id)),"
                " updated_at = VALUES(updated_at)",
                (user_id, conversation, up_to_id, now))
    return read_position_txn(txn, user_id, conversation)


def _direct_key(engine_name):
    if engine_name == "sqlite":
        return ("'d:' || MIN(f.user_id, f.friend_id) || ':'"
                " || MAX(f.user_id, f.friend_id)")
    return ("CONCAT('d:', LEAST(f.user_id, f.friend_id), ':',"
            " GREATEST(f.user_id, f.friend_id))")


def _group_key(engine_name):
    if engine_name == "sqlite":
        return "'g:' || gm.group_id"
    return "CONCAT('g:', gm.group_id)"


def conversations_txn(txn, user_id, before, limit):
    """
    A page of C{user_id}'s conversations (friends and groups), the one with
    the newest message first; those without messages last. C{before} is a
    C{(last_id, conversation)} cursor, or None for the first page.

    @return: a list of L{ConversationSummary}.
    """
    name = txn.engine.name
    cursor_sql, cursor_args = "", []
    if before is not None:
        cursor_sql = (" WHERE c.last_id < ? OR (c.last_id = ?"
                      " AND c.conversation < ?)")
        cursor_args = [before[0], before[0], before[1]]
    args = [user_id, user_id, user_id] + cursor_args + [limit, user_id]
    txn.execute(
        "SELECT p.conversation, p.kind, p.target_id, p.last_id,"
        " COALESCE(rd.last_read_id, 0),"
        " (SELECT COUNT(*) FROM messages u WHERE u.conversation ="
        " p.conversation AND u.id > COALESCE(rd.last_read_id, 0)"
        " AND u.sender_id <> ?),"
        " COALESCE(pr.last_read_id, 0),"
        " COALESCE(pu.uuid, g.uuid, ''), COALESCE(pu.username, g.name, ''),"
        " COALESCE(pu.avatar, ''),"
        " s.uuid, s.username, m.content_type, m.content, m.url, m.created_at,"
        " m.edited_at, m.recalled_at"
        " FROM (SELECT c.conversation, c.kind, c.target_id, c.last_id FROM ("
        f"SELECT {_direct_key(name)} AS conversation, 1 AS kind,"
        " f.friend_id AS target_id, COALESCE((SELECT MAX(x.id) FROM messages x"
        f" WHERE x.conversation = {_direct_key(name)}), 0) AS last_id"
        " FROM friendships f WHERE f.user_id = ?"
        " UNION ALL"
        f" SELECT {_group_key(name)} AS conversation, 2 AS kind,"
        " gm.group_id AS target_id, COALESCE((SELECT MAX(x.id) FROM messages x"
        f" WHERE x.conversation = {_group_key(name)}), 0) AS last_id"
        " FROM group_members gm WHERE gm.user_id = ?"
        f") c{cursor_sql} ORDER BY c.last_id DESC, c.conversation DESC"
        " LIMIT ?) p"
        " LEFT JOIN conversation_reads rd ON rd.user_id = ?"
        " AND rd.conversation = p.conversation"
        " LEFT JOIN conversation_reads pr ON p.kind = 1"
        " AND pr.user_id = p.target_id AND pr.conversation = p.conversation"
        " LEFT JOIN users pu ON p.kind = 1 AND pu.id = p.target_id"
        " LEFT JOIN chat_groups g ON p.kind = 2 AND g.id = p.target_id"
        " LEFT JOIN messages m ON m.id = p.last_id"
        " LEFT JOIN users s ON s.id = m.sender_id"
        " ORDER BY p.last_id DESC, p.conversation DESC",
        args)
    result = []
    for row in txn.fetchall():
        def opt(value):
            return None if value is None else int(value)
        result.append(ConversationSummary(
            conversation=row[0], kind=int(row[1]), target_id=int(row[2]),
            last_id=int(row[3]), last_read_id=int(row[4]), unread=int(row[5]),
            peer_read_id=int(row[6]), uuid=row[7], name=row[8],
            avatar=row[9], last_sender_uuid=row[10],
            last_sender_username=row[11], last_content_type=opt(row[12]),
            last_content=row[13], last_url=row[14],
            last_created_at=opt(row[15]), last_edited_at=opt(row[16]),
            last_recalled_at=opt(row[17])))
    return result


class ReadStore:
    def __init__(self, database):
        self._database = database

    async def mark_read(self, user_id, conversation, up_to_id, now):
        """
        See L{mark_read_txn}.
        """
        return await self._database.run(
            "mark_read", mark_read_txn, user_id, conversation, up_to_id, now)

    async def position(self, user_id, conversation):
        """
        A user's L{ReadPosition} in a conversation.
        """
        return await self._database.run(
            "read_position", read_position_txn, user_id, conversation)

    async def conversations(self, user_id, before=None, limit=20):
        """
        See L{conversations_txn}.
        """
        return await self._database.run(
            "conversations", conversations_txn, user_id, before, limit)
