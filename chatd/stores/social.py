"""
Friendships: SQL only. A friendship is mutual and stored as one row per
direction.
"""

from chatd.stores.users import USER_COLUMNS, user_from_row


class SocialStore:
    def __init__(self, database):
        self._database = database

    async def are_friends(self, user_id, other_id):
        return await self._database.run(
            "are_friends", self._are_friends_txn, user_id, other_id)

    def _are_friends_txn(self, txn, user_id, other_id):
        txn.execute(
            "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?",
            (user_id, other_id))
        return txn.fetchone() is not None

    async def friend_ids(self, user_id):
        return await self._database.run(
            "friend_ids", self._friend_ids_txn, user_id)

    def _friend_ids_txn(self, txn, user_id):
        txn.execute(
            "SELECT friend_id FROM friendships WHERE user_id = ?"
            " ORDER BY friend_id", (user_id,))
        return [int(row[0]) for row in txn.fetchall()]

    async def friends(self, user_id):
        """
        The friends of a user as L{User}s, oldest friendship first.
        """
        return await self._database.run(
            "friends", self._friends_txn, user_id)

    def _friends_txn(self, txn, user_id):
        columns = ", ".join("u." + c.strip() for c in USER_COLUMNS.split(","))
        txn.execute(
            f"SELECT {columns} FROM friendships f"
            " JOIN users u ON u.id = f.friend_id"
            " WHERE f.user_id = ? ORDER BY f.created_at, u.id", (user_id,))
        return [user_from_row(row) for row in txn.fetchall()]

    async def add(self, user_id, friend_id, now):
        """
        Make two users friends. Return False if they already were.
        """
        return await self._database.run(
            "add_friend", self._add_txn, user_id, friend_id, now)

    def _add_txn(self, txn, user_id, friend_id, now):
        if self._are_friends_txn(txn, user_id, friend_id):
            return False
        for a, b in ((user_id, friend_id), (friend_id, user_id)):
            txn.execute(
                "DELETE FROM friendships WHERE user_id = ? AND friend_id = ?",
                (a, b))
            txn.execute(
                "INSERT INTO friendships (user_id, friend_id, created_at)"
                " VALUES (?, ?, ?)", (a, b, now))
        return True

    async def remove(self, user_id, friend_id):
        """
        End a friendship. Return False if there was none.
        """
        return await self._database.run(
            "remove_friend", self._remove_txn, user_id, friend_id)

    def _remove_txn(self, txn, user_id, friend_id):
        txn.execute(
            "DELETE FROM friendships WHERE (user_id = ? AND friend_id = ?)"
            " OR (user_id = ? AND friend_id = ?)",
            (user_id, friend_id, friend_id, user_id))
        return txn.rowcount > 0
