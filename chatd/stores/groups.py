"""
Groups and their members: SQL only.
"""

from dataclasses import dataclass

from chatd.stores.files import forget_unused_files_txn
from chatd.stores.users import USER_COLUMNS, user_from_row


@dataclass(frozen=True)
class Group:
    id: int
    uuid: str
    owner_id: int
    name: str
    notice: str
    created_at: int


# What L{GroupStore.join} did.
JOINED, ALREADY_MEMBER, REMOVED = "joined", "already a member", "removed"

_GROUP_COLUMNS = "g.id, g.uuid, g.owner_id, g.name, g.notice, g.created_at"


def _group_from_row(row):
    return Group(id=int(row[0]), uuid=row[1], owner_id=int(row[2]),
                 name=row[3], notice=row[4], created_at=int(row[5]))


class GroupStore:
    def __init__(self, database):
        self._database = database

    async def get_by_uuid(self, uuid):
        return await self._database.run(
            "group_by_uuid", self._get_txn, "uuid", uuid)

    async def get_by_id(self, group_id):
        return await self._database.run(
            "group_by_id", self._get_txn, "id", group_id)

    async def get_by_name(self, name):
        """
        The oldest group with exactly this name, or None.
        """
        return await self._database.run(
            "group_by_name", self._get_txn, "name", name)

    def _get_txn(self, txn, column, value):
        txn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM chat_groups g WHERE g.{column} = ?"
            " ORDER BY g.id LIMIT 1", (value,))
        row = txn.fetchone()
        return _group_from_row(row) if row else None

    async def member_ids(self, group_id):
        return await self._database.run(
            "group_member_ids", self._member_ids_txn, group_id)

    def _member_ids_txn(self, txn, group_id):
        txn.execute(
            "SELECT user_id FROM group_members WHERE group_id = ?"
            " ORDER BY user_id", (group_id,))
        return [int(row[0]) for row in txn.fetchall()]

    async def members(self, group_id):
        """
        The members of a group as L{User}s, in the order they joined.
        """
        return await self._database.run(
            "group_members", self._members_txn, group_id)

    def _members_txn(self, txn, group_id):
        columns = ", ".join("u." + c.strip() for c in USER_COLUMNS.split(","))
        txn.execute(
            f"SELECT {columns} FROM group_members m"
            " JOIN users u ON u.id = m.user_id"
            " WHERE m.group_id = ? ORDER BY m.joined_at, u.id", (group_id,))
        return [user_from_row(row) for row in txn.fetchall()]

    async def is_member(self, group_id, user_id):
        return await self._database.run(
            "is_group_member", self._is_member_txn, group_id, user_id)

    def _is_member_txn(self, txn, group_id, user_id):
        txn.execute(
            "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
            (group_id, user_id))
        return txn.fetchone() is not None

    async def group_ids_of(self, user_id):
        return await self._database.run(
            "group_ids_of", self._group_ids_txn, user_id)

    def _group_ids_txn(self, txn, user_id):
        txn.execute(
            "SELECT group_id FROM group_members WHERE user_id = ?"
            " ORDER BY group_id", (user_id,))
        return [int(row[0]) for row in txn.fetchall()]

    async def groups_of(self, user_id):
        """
        The groups a user is a member of, oldest first.
        """
        return await self._database.run(
            "groups_of", self._groups_of_txn, user_id)

    def _groups_of_txn(self, txn, user_id):
        txn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM group_members m"
            " JOIN chat_groups g ON g.id = m.group_id"
            " WHERE m.user_id = ? ORDER BY g.id", (user_id,))
        return [_group_from_row(row) for row in txn.fetchall()]

    async def create(self, uuid, owner_id, name, notice, now):
        """
        Create a group; its owner is its first member.
        """
        return await self._database.run(
            "create_group", self._create_txn, uuid, owner_id, name, notice,
            now)

    def _create_txn(self, txn, uuid, owner_id, name, notice, now):
        txn.execute(
            "INSERT INTO chat_groups (uuid, owner_id, name, notice,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (uuid, owner_id, name, notice, now, now))
        group_id = txn.lastrowid
        txn.execute(
            "INSERT INTO group_members (group_id, user_id, joined_at)"
            " VALUES (?, ?, ?)", (group_id, owner_id, now))
        return self._get_txn(txn, "id", group_id)

    async def join(self, group_id, user_id, now):
        """
        Add a member, unless the owner removed them.

        @return: L{JOINED}, L{ALREADY_MEMBER} or L{REMOVED}.
        """
        return await self._database.run(
            "join_group", self._join_txn, group_id, user_id, now)

    def _join_txn(self, txn, group_id, user_id, now):
        if self._is_member_txn(txn, group_id, user_id):
            return ALREADY_MEMBER
        txn.execute("SELECT 1 FROM group_removals WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id))
        if txn.fetchone() is not None:
            return REMOVED
        txn.execute(
            "INSERT INTO group_members (group_id, user_id, joined_at)"
            " VALUES (?, ?, ?)", (group_id, user_id, now))
        return JOINED

    async def remove(self, group_id, user_id, now):
        """
        Remove a member for good: they cannot join again until
        L{lift_removal}. Return False if the user was not a member.
        """
        return await self._database.run(
            "remove_group_member", self._remove_txn, group_id, user_id, now)

    def _remove_txn(self, txn, group_id, user_id, now):
        if not self._leave_txn(txn, group_id, user_id):
            return False
        txn.execute("DELETE FROM group_removals WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id))
        txn.execute("INSERT INTO group_removals (group_id, user_id, removed_at)"
                    " VALUES (?, ?, ?)", (group_id, user_id, now))
        return True

    async def lift_removal(self, group_id, user_id):
        """
        Let a removed user join again. Return False if they were not removed.
        """
        return await self._database.run(
            "lift_group_removal", self._lift_txn, group_id, user_id)

    def _lift_txn(self, txn, group_id, user_id):
        txn.execute("DELETE FROM group_removals WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id))
        return txn.rowcount > 0

    async def leave(self, group_id, user_id):
        """
        Remove a member. Return False if the user was not one.
        """
        return await self._database.run(
            "leave_group", self._leave_txn, group_id, user_id)

    def _leave_txn(self, txn, group_id, user_id):
        txn.execute(
            "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
            (group_id, user_id))
        return txn.rowcount > 0

    async def update(self, group_id, now, name=None, notice=None):
        """
        Rename a group and/or change its notice; return the new L{Group}.
        """
        return await self._database.run(
            "update_group", self._update_txn, group_id, now, name, notice)

    def _update_txn(self, txn, group_id, now, name, notice):
        if name is not None:
            txn.execute("UPDATE chat_groups SET name = ?, updated_at = ?"
                        " WHERE id = ?", (name, now, group_id))
        if notice is not None:
            txn.execute("UPDATE chat_groups SET notice = ?, updated_at = ?"
                        " WHERE id = ?", (notice, now, group_id))
        return self._get_txn(txn, "id", group_id)

    async def delete(self, group_id):
        """
        Delete a group, its members and its messages, and the records of
        the files its messages carried that nothing else uses.

        @return: C{(member_ids, orphans)}: the ids of the members it had,
            and the names of the files whose records went (the caller
            removes their bytes).
        """
        return await self._database.run(
            "delete_group", self._delete_txn, group_id)

    def _delete_txn(self, txn, group_id):
        members = self._member_ids_txn(txn, group_id)
        conversation = f"g:{group_id}"
        txn.execute("SELECT DISTINCT url FROM messages WHERE conversation = ?"
                    " AND url <> ''", (conversation,))
        attached = [row[0] for row in txn.fetchall()]
        txn.execute("DELETE FROM messages WHERE conversation = ?", (conversation,))
        txn.execute("DELETE FROM group_members WHERE group_id = ?",
                    (group_id,))
        txn.execute("DELETE FROM group_removals WHERE group_id = ?", (group_id,))
        txn.execute("DELETE FROM chat_groups WHERE id = ?", (group_id,))
        return members, forget_unused_files_txn(txn, attached)
