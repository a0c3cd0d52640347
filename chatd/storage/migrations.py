"""
Schema versions and migrations.

Each engine has a folder C{schema/<engine>/} of numbered SQL files,
C{NNN_name.sql}; migration N takes the schema from version N-1 to N. The
table C{schema_version} holds the version a database is at. At start-up,
L{prepare_database} applies the missing migrations in order, each in its own
transaction (MySQL commits DDL as it goes, so there a failed migration must
be repaired by hand), and refuses a database newer than the code.
"""

import os
import re

from twisted.logger import Logger

log = Logger()

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schema")
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class SchemaTooNew(Exception):
    """
    The database was migrated by a newer chatd than this one.
    """


def migrations(engine_name):
    """
    The migrations of an engine: a list of C{(version, path)}, in order,
    numbered 1, 2, 3 ... with no gaps.
    """
    folder = os.path.join(SCHEMA_DIR, engine_name)
    found = []
    for name in os.listdir(folder):
        match = _MIGRATION_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    found.sort()
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {folder} are not numbered 1..N")
    return found


def latest_version(engine_name):
    return len(migrations(engine_name))


def split_statements(sql):
    """
    Split a migration file into statements: comments dropped, one statement
    per C{;} that ends a line.
    """
    lines = [line for line in sql.splitlines()
             if not line.lstrip().startswith("--")]
    statements = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [s.strip() for s in statements if s.strip()]


def _current_version_txn(txn):
    txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    txn.execute("SELECT version FROM schema_version")
    row = txn.fetchone()
    return row[0] if row else 0


def _apply_txn(txn, version, statements):
    for statement in statements:
        txn.execute(statement)
    txn.execute("DELETE FROM schema_version")
    txn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


async def schema_version(database):
    """
    The schema version of the database (0 for an empty one).
    """
    return await database.run("schema_version", _current_version_txn)


async def prepare_database(database, target=None):
    """
    Bring the database's schema up to C{target} (default: the newest).

    @raise SchemaTooNew: the database is newer than this code.
    @return: the version the database is now at.
    """
    engine_name = database.engine.name
    available = migrations(engine_name)
    newest = len(available)
    target = newest if target is None else target
    current = await schema_version(database)
    if current > newest:
        raise SchemaTooNew(
            f"{database.engine.describe()} has schema version {current}, but "
            f"this chatd knows versions up to {newest}: upgrade chatd or "
            f"use another database")
    for version, path in available[current:target]:
        with open(path, encoding="utf-8") as f:
            statements = split_statements(f.read())
        log.info("Applying schema migration {name}", name=os.path.basename(path))
        await database.run(f"migration {version}", _apply_txn, version, statements)
    return max(current, target)
