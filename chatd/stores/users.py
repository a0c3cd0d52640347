"""
User accounts: SQL only.
"""

from dataclasses import dataclass

from chatd.errors import Conflict


@dataclass(frozen=True)
class User:
    id: int
    uuid: str
    username: str
    nickname: str
    email: str
    avatar: str
    is_admin: bool
    created_at: int


@dataclass(frozen=True)
class Credentials:
    """
    What login and token checks need besides the public L{User}.
    """

    user: User
    password_hash: str
    tokens_valid_after: int


USER_COLUMNS = ("id, uuid, username, nickname, email, avatar, is_admin,"
                " created_at")


def user_from_row(row):
    return User(
        id=int(row[0]), uuid=row[1], username=row[2], nickname=row[3],
        email=row[4], avatar=row[5], is_admin=bool(row[6]),
        created_at=int(row[7]))


class UserStore:
    def __init__(self, database):
        self._database = database

    async def get_by_id(self, user_id):
        return await self._database.run(
            "user_by_id", self._get_txn, "id", user_id)

    async def get_by_uuid(self, uuid):
        return await self._database.run(
            "user_by_uuid", self._get_txn, "uuid", uuid)

    async def get_by_name(self, username):
        return await self._database.run(
            "user_by_name", self._get_txn, "username", username)

    async def get_many(self, user_ids):
        """
        The users with these ids, in no particular order.
        """
        if not user_ids:
            return []
        return await self._database.run(
            "users_by_ids", self._get_many_txn, sorted(set(user_ids)))

    def _get_txn(self, txn, column, value):
        txn.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE {column} = ?", (value,))
        row = txn.fetchone()
        return user_from_row(row) if row else None

    def _get_many_txn(self, txn, user_ids):
        marks = ", ".join("?" for _ in user_ids)
        txn.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE id IN ({marks})", user_ids)
        return [user_from_row(row) for row in txn.fetchall()]

    async def create(self, uuid, username, password_hash, nickname="",
                     email="", created_at=0, is_admin=False):
        """
        Add a user.

        @raise Conflict: the user name is taken.
        """
        try:
            return await self._database.run(
                "create_user", self._create_txn, uuid, username,
                password_hash, nickname, email, created_at, is_admin)
        except Exception as error:
            if self._database.engine.is_duplicate(error):
                raise Conflict(f"the user name {username!r} is taken")
            raise

    def _create_txn(self, txn, uuid, username, password_hash, nickname, email,
                    created_at, is_admin):
        txn.execute(
            "INSERT INTO users (uuid, username, nickname, email,"
            " password_hash, is_admin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uuid, username, nickname, email, password_hash, int(is_admin),
             created_at, created_at))
        return self._get_txn(txn, "id", txn.lastrowid)

    async def credentials(self, column, value):
        """
        The L{Credentials} of the user whose C{column} ("id", "uuid" or
        "username") is C{value}, or None.
        """
        if column not in ("id", "uuid", "username"):
            raise ValueError(column)
        return await self._database.run(
            "user_credentials", self._credentials_txn, column, value)

    def _credentials_txn(self, txn, column, value):
        txn.execute(
            f"SELECT {USER_COLUMNS}, password_hash, tokens_valid_after"
            f" FROM users WHERE {column} = ?", (value,))
        row = txn.fetchone()
        if row is None:
            return None
        return Credentials(user_from_row(row), row[8], int(row[9]))

    async def update_profile(self, user_id, now, **fields):
        """
        Change some of nickname, email, username; return the new L{User}.

        @raise Conflict: the new user name is taken.
        """
        allowed = {"nickname", "email", "username"}
        if not set(fields) <= allowed:
            raise ValueError(set(fields) - allowed)
        try:
            return await self._database.run(
                "update_profile", self._update_txn, user_id, now, fields)
        except Exception as error:
            if self._database.engine.is_duplicate(error):
                raise Conflict(
                    f"the user name {fields.get('username')!r} is taken")
            raise

    def _update_txn(self, txn, user_id, now, fields):
        if fields:
            names = sorted(fields)
            assignments = ", ".join(f"{name} = ?" for name in names)
            txn.execute(
                f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?",
                [fields[name] for name in names] + [now, user_id])
        return self._get_txn(txn, "id", user_id)

    async def set_password(self, user_id, password_hash, now):
        """
        Store a new password hash and revoke every token issued before
        C{now} (milliseconds).
        """
        await self._database.run(
            "set_password", self._set_password_txn, user_id, password_hash,
            now)

    def _set_password_txn(self, txn, user_id, password_hash, now):
        txn.execute(
            "UPDATE users SET password_hash = ?, tokens_valid_after = ?,"
            " updated_at = ? WHERE id = ?",
            (password_hash, now, now, user_id))

    async def set_avatar(self, user_id, avatar, now):
        await self._database.run(
            "set_avatar", self._set_avatar_txn, user_id, avatar, now)

    def _set_avatar_txn(self, txn, user_id, avatar, now):
        txn.execute(
            "UPDATE users SET avatar = ?, updated_at = ? WHERE id = ?",
            (avatar, now, user_id))
