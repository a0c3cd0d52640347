"""
Last-seen times and who may see whose presence: SQL only. Who is online
right now is the Hub's (in memory); the time a user's last device went
away is kept here.
"""


def set_last_seen_txn(txn, user_id, when):
    if txn.engine.name == "sqlite":
        txn.execute(
            "INSERT INTO user_presence (user_id, last_seen_at) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET"
            " last_seen_at = MAX(last_seen_at, excluded.last_seen_at)",
            (user_id, when))
    else:
        txn.execute(
            "INSERT INTO user_presence (user_id, last_seen_at) VALUES (?, ?)"
            " ON DUPLICATE KEY UPDATE"
            " last_seen_at = GREATEST(last_seen_at, VALUES(last_seen_at))",
            (user_id, when))


def last_seen_txn(txn, user_ids):
    if not user_ids:
        return {}
    txn.execute(
        "SELECT user_id, last_seen_at FROM user_presence WHERE user_id IN ("
        + ", ".join("?" for _ in user_ids) + ")", list(user_ids))
    return {int(row[0]): int(row[1]) for row in txn.fetchall()}


def contacts_txn(txn, user_id):
    """
    The ids of C{user_id}'s friends and fellow group members.
    """
    txn.execute(
        "SELECT friend_id FROM friendships WHERE user_id = ?"
        " UNION SELECT b.user_id FROM group_members a"
        " JOIN group_members b ON b.group_id = a.group_id"
        " WHERE a.user_id = ? AND b.user_id <> ?", (user_id, user_id, user_id))
    return {int(row[0]) for row in txn.fetchall()}


class PresenceStore:
    def __init__(self, database):
        self._database = database

    async def set_last_seen(self, user_id, when):
        await self._database.run(
            "set_last_seen", set_last_seen_txn, user_id, when)

    async def last_seen(self, user_ids):
        """
        C{{user id: last seen}} for those of C{user_ids} ever seen.
        """
        return await self._database.run(
            "last_seen", last_seen_txn, sorted(set(user_ids)))

    async def contacts(self, user_id):
        return await self._database.run("contacts", contacts_txn, user_id)
