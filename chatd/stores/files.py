"""
Records of stored files (avatars, attachments): SQL only. The bytes live
on disk; see L{chatd.files.FileStore}.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class FileRecord:
    id: int
    name: str
    owner_id: int | None
    media_type: str
    size: int
    sha256: str
    created_at: int


_COLUMNS = "id, name, owner_id, media_type, size, sha256, created_at"


# Names per statement when checking many files at once.
_NAMES_PER_CHECK = 500


def forget_unused_files_txn(txn, names):
    """
    Delete the records of those of the files C{names} that no user has as
    avatar and no message points to.

    @return: the names whose records were deleted (the caller removes
        their bytes).
    """
    names = sorted(set(names))
    forgotten = []
    for start in range(0, len(names), _NAMES_PER_CHECK):
        chunk = names[start:start + _NAMES_PER_CHECK]
        marks = ", ".join("?" * len(chunk))
        txn.execute(f"SELECT url FROM messages WHERE url IN ({marks})"
                    f" UNION SELECT avatar FROM users WHERE avatar IN ({marks})",
                    (*chunk, *chunk))
        used = {row[0] for row in txn.fetchall()}
        for name in chunk:
            if name not in used:
                txn.execute("DELETE FROM files WHERE name = ?", (name,))
                if txn.rowcount:
                    forgotten.append(name)
    return forgotten


def _record_from_row(row):
    return FileRecord(
        id=int(row[0]), name=row[1],
        owner_id=None if row[2] is None else int(row[2]),
        media_type=row[3], size=int(row[4]), sha256=row[5],
        created_at=int(row[6]))


class FileRecordStore:
    def __init__(self, database):
        self._database = database

    async def add(self, name, owner_id, media_type, size, sha256, now):
        return await self._database.run(
            "add_file", self._add_txn, name, owner_id, media_type, size,
            sha256, now)

    def _add_txn(self, txn, name, owner_id, media_type, size, sha256, now):
        txn.execute(
            "INSERT INTO files (name, owner_id, media_type, size, sha256,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, owner_id, media_type, size, sha256, now))
        return self._get_txn(txn, name)

    async def get(self, name):
        return await self._database.run("get_file", self._get_txn, name)

    def _get_txn(self, txn, name):
        txn.execute(f"SELECT {_COLUMNS} FROM files WHERE name = ?", (name,))
        row = txn.fetchone()
        return _record_from_row(row) if row else None

    async def forget_if_unused(self, name):
        """
        Delete the record of a file that no user has as avatar and no
        message points to. Return True if it was deleted.
        """
        return await self._database.run(
            "forget_unused_file", self._forget_txn, name)

    def _forget_txn(self, txn, name):
        return bool(forget_unused_files_txn(txn, [name]))
