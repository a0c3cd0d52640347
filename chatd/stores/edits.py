"""
Recalling and editing stored messages: SQL only.

A recall empties a message's content and url, sets C{recalled_at}, drops it
from the search index, and deletes the record of its attachment unless
something else (another message, an avatar) still uses that file. An edit
replaces the content, sets C{edited_at}, and queues the message to be
indexed again.
"""

from dataclasses import dataclass

from chatd.stores import search
from chatd.stores.files import forget_unused_files_txn


@dataclass(frozen=True)
class MessageFacts:
    """
    What the recall and edit rules need to know about a message.
    """

    id: int
    conversation: str
    sender_id: int
    message_type: int
    recipient_id: int
    content_type: int
    url: str
    created_at: int
    edited_at: int | None
    recalled_at: int | None


def facts_txn(txn, message_id):
    txn.execute(
        "SELECT id, conversation, sender_id, message_type, recipient_id,"
        " content_type, url, created_at, edited_at, recalled_at"
        " FROM messages WHERE id = ?", (message_id,))
    row = txn.fetchone()
    if row is None:
        return None
    return MessageFacts(
        id=int(row[0]), conversation=row[1], sender_id=int(row[2]),
        message_type=int(row[3]), recipient_id=int(row[4]),
        content_type=int(row[5]), url=row[6], created_at=int(row[7]),
        edited_at=None if row[8] is None else int(row[8]),
        recalled_at=None if row[9] is None else int(row[9]))


def recall_txn(txn, message_id, now):
    """
    Recall a message not recalled yet.

    @return: C{(recalled, orphan)}: whether it was recalled now, and the
        name of an attachment file no longer used by anything (its record
        is deleted; the caller removes the bytes), or None.
    """
    facts = facts_txn(txn, message_id)
    if facts is None or facts.recalled_at is not None:
        return False, None
    txn.execute(
        "UPDATE messages SET content = '', url = '', file_id = NULL,"
        " recalled_at = ? WHERE id = ? AND recalled_at IS NULL",
        (now, message_id))
    if txn.rowcount == 0:
        return False, None
    search.reindex_txn(txn, message_id)
    orphans = forget_unused_files_txn(txn, [facts.url]) if facts.url else []
    return True, orphans[0] if orphans else None


def edit_txn(txn, message_id, content, now):
    """
    Replace the text of a message that is not recalled.

    @return: whether it was changed.
    """
    txn.execute(
        "UPDATE messages SET content = ?, edited_at = ?"
        " WHERE id = ? AND recalled_at IS NULL", (content, now, message_id))
    if txn.rowcount == 0:
        return False
    search.reindex_txn(txn, message_id)
    return True


class EditStore:
    def __init__(self, database):
        self._database = database

    async def facts(self, message_id):
        """
        The L{MessageFacts} of a message, or None.
        """
        return await self._database.run("message_facts", facts_txn, message_id)

    async def recall(self, message_id, now):
        """
        See L{recall_txn}.
        """
        return await self._database.run(
            "recall_message", recall_txn, message_id, now)

    async def edit(self, message_id, content, now):
        """
        See L{edit_txn}.
        """
        return await self._database.run(
            "edit_message", edit_txn, message_id, content, now)
