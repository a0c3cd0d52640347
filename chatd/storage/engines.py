"""
Database engines: what differs between SQLite and MySQL/MariaDB.

Store code writes SQL once, with C{?} placeholders; an engine converts it to
its driver's parameter style, sets up each new connection, opens
transactions, and tells which errors are worth retrying.
"""

import functools
import os
import sqlite3
import threading

from twisted.enterprise import adbapi

# MySQL error numbers: deadlock, lock wait timeout, and lost connections.
_MYSQL_DEADLOCKS = frozenset({1205, 1213})
_MYSQL_LOST_CONNECTION = frozenset({2006, 2013, 2014, 2055})


# The nice value of background threads: a thread at 10 gets about a tenth
# of the CPU share of one at 0 when both want the core.
BACKGROUND_NICE = 10


def lower_thread_priority():
    """
    Lower the calling thread's CPU priority to L{BACKGROUND_NICE} (Linux
    sets it per thread); elsewhere, or if refused, leave it.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError):
        pass


class _SqliteConnection(sqlite3.Connection):
    """
    A connection that remembers its C{synchronous} setting (see
    L{SqliteEngine.begin}); it opens with C{FULL}. Its transactions take
    the write lock as they open.
    """

    durable = True
    begin_statement = "BEGIN IMMEDIATE"


class _SqliteSearchConnection(_SqliteConnection):
    """
    The search index's connection (L{SqliteEngine.search_pool}): it reads
    the chat database it attaches and writes only its own file, so its
    transactions take a write lock on that file alone, when they first
    write (C{BEGIN IMMEDIATE} would lock every attached database).
    """

    begin_statement = "BEGIN"


_SQLITE_CONNECT = dict(check_same_thread=False, isolation_level=None, timeout=30,
                       factory=_SqliteConnection)

# The search index's own file (see L{SqliteEngine.search_path}), made on
# connecting; deleting the file makes the indexer build it again.
_SQLITE_SEARCH_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS main.message_search"
    " USING fts5(terms, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TABLE IF NOT EXISTS main.search_progress ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), indexed_through INTEGER NOT NULL,"
    " queue_through INTEGER NOT NULL, chat_database TEXT)",
    "INSERT OR IGNORE INTO main.search_progress VALUES (1, 0, 0, NULL)",
)


def _search_file_matches(connection, identity):
    """
    Whether the search file was built from the attached chat database (of
    C{identity}) as it is: not ahead of it (a restored backup is behind
    the index built from its later self), and not behind the queue entries
    deleted as taken (a search file put back from a copy would never index
    them).
    """
    [trimmed] = connection.execute("SELECT through FROM chat.search_queue_trimmed").fetchone()
    indexed, queued, built_from = connection.execute(
        "SELECT indexed_through, queue_through, chat_database"
        " FROM main.search_progress").fetchone()
    sequences = dict(connection.execute(
        "SELECT name, seq FROM chat.sqlite_sequence"
        " WHERE name IN ('messages', 'search_pending')").fetchall())
    return (built_from == identity and indexed <= sequences.get("messages", 0)
            and trimmed <= queued <= sequences.get("search_pending", 0))


def _match_search_file(connection):
    """
    Empty a search file built from another database, or from another
    state of this one, and mark it as this database's: the indexer then
    builds it again from the messages.
    """
    [identity] = connection.execute("SELECT token FROM chat.database_identity").fetchone()
    if _search_file_matches(connection, identity):
        return
    connection.execute("BEGIN")
    connection.execute("DELETE FROM main.message_search")
    connection.execute("UPDATE main.search_progress SET indexed_through = 0,"
                       " queue_through = 0, chat_database = ?", (identity,))
    connection.execute("COMMIT")


# Pages the write-ahead log holds before the connection that stores
# messages copies them into the database file itself: SQLite's automatic
# checkpoint, at its default, and with background checkpoints (see
# SqliteEngine), which leave it only what they have not copied yet.
WRITER_CHECKPOINT_PAGES = 1000
BACKGROUND_WRITER_CHECKPOINT_PAGES = 4000


class SqliteEngine:
    """
    The embedded default: one connection, WAL journal, foreign keys on;
    the search index in a file of its own, with a connection of its own.

    @param checkpoint_interval: seconds between background checkpoints
        (L{checkpoint_txn} on the search connection, which
        L{chatd.service.DatabaseService} has made); 0 for none. With them,
        the connection that stores messages copies the log into the
        database file only when it holds
        L{BACKGROUND_WRITER_CHECKPOINT_PAGES} (the few pages left, with
        nothing committed meanwhile, so that its next write starts the log
        over); without, every L{WRITER_CHECKPOINT_PAGES}, holding up the
        messages behind it.
    """

    name = "sqlite"
    # Searches run on the search connection: only it attaches the index.
    searches_on_search_pool = True
    # What a read that must hold its rows until commit ends with: nothing,
    # as write transactions run one at a time.
    for_update = ""

    def __init__(self, path, checkpoint_interval=0.0):
        self.path = path
        self.module = sqlite3
        self.checkpoint_interval = checkpoint_interval

    def describe(self):
        return f"SQLite database {self.path}"

    def connection_pool(self, reactor):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return self._one_connection_pool(reactor, self.path, _SqliteConnection,
                                         self._on_new_main_connection)

    def _one_connection_pool(self, reactor, path, factory, on_connect):
        return adbapi.ConnectionPool(
            "sqlite3",
            path,
            **dict(_SQLITE_CONNECT, factory=factory),
            cp_min=1,
            cp_max=1,
            cp_openfun=on_connect,
            cp_reactor=reactor,
        )

    def connect(self):
        """
        A connection set up as the pool's are, for synchronous tools.
        """
        connection = sqlite3.connect(self.path, **_SQLITE_CONNECT)
        self._on_new_main_connection(connection)
        return connection

    @property
    def search_path(self):
        """
        The search index's file, beside the database: C{chat.sqlite3}
        has C{chat-search.sqlite3}.
        """
        base, extension = os.path.splitext(self.path)
        return f"{base}-search{extension}"

    def writer_pool(self, reactor):
        """
        None: the message writer shares the one connection.
        """
        return None

    def search_pool(self, reactor):
        """
        The search index's connection: it opens the index's own file
        (L{search_path}) and attaches the chat database as C{chat} to read
        messages, and its thread runs at a lower CPU priority (see
        L{lower_thread_priority}). The one connection that stores messages
        never waits behind the indexer's transactions, and the indexer
        takes the time the message path leaves.
        """
        return self._one_connection_pool(reactor, self.search_path, _SqliteSearchConnection,
                                         self._on_new_search_connection)

    def connect_search(self):
        """
        A search connection set up as the search pool's is (but at the
        caller's priority), for synchronous tools.
        """
        connection = sqlite3.connect(self.search_path,
                                     **dict(_SQLITE_CONNECT, factory=_SqliteSearchConnection))
        self._set_up_search(connection)
        return connection

    def _on_new_search_connection(self, connection):
        lower_thread_priority()
        self._set_up_search(connection)

    def _set_up_search(self, connection):
        self._on_new_connection(connection)
        connection.execute("ATTACH DATABASE ? AS chat", (self.path,))
        # Its checkpoints of the chat database (checkpoint_txn) sync the
        # pages they copy before the log can start over: not left to the
        # build's default level for an attached database.
        connection.execute("PRAGMA chat.synchronous=FULL")
        for statement in _SQLITE_SEARCH_SCHEMA:
            connection.execute(statement)
        _match_search_file(connection)

    def _on_new_main_connection(self, connection):
        self._on_new_connection(connection)
        pages = (BACKGROUND_WRITER_CHECKPOINT_PAGES if self.checkpoint_interval
                 else WRITER_CHECKPOINT_PAGES)
        connection.execute(f"PRAGMA wal_autocheckpoint={pages}")

    def _on_new_connection(self, connection):
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def checkpoint_txn(txn):
        """
        On the search connection, as the first statement of its
        transaction (a plain C{BEGIN} has read nothing yet; a checkpoint
        after a read is refused): copy what the chat database's log holds
        into its file, as far as readers allow, without waiting for or
        holding up its writer (C{PASSIVE}). Its syncs are this
        connection's, not the writer's.

        @return: the pages in the log, and how many of them are copied.
        """
        txn.execute("PRAGMA chat.wal_checkpoint(PASSIVE)")
        _, logged, copied = txn.fetchone()
        return logged, copied

    def begin(self, cursor, durable=True, consistent=False):
        """
        Open a write transaction. One that is not C{durable} commits
        without waiting for the disk (C{synchronous=NORMAL}): with a WAL,
        a crash may lose it whole, never in part, and the next durable
        commit's sync of the log covers it too. Every transaction reads
        one snapshot, C{consistent} or not.
        """
        connection = cursor.connection
        if durable != connection.durable:
            cursor.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
            connection.durable = durable
        cursor.execute(connection.begin_statement)

    def convert(self, sql):
        return sql

    def execute_values(self, cursor, head, rows, tail):
        """
        Run C{head}, a VALUES list of C{rows}, then C{tail}, with the
        values bound as parameters.
        """
        width = len(rows[0])
        row = "(" + ", ".join("?" * width) + ")"
        cursor.execute(head + ", ".join(row for _ in rows) + tail,
                       [value for values in rows for value in values])

    def is_retryable(self, error):
        return False

    def is_duplicate(self, error):
        return isinstance(error, self.module.IntegrityError) and "UNIQUE" in str(error)


class _SelfCommittedConnection(adbapi.Connection):
    """
    A pooled autocommit connection: each statement commits itself, so
    there is nothing left to commit after an interaction (no C{COMMIT}
    round trip). Only for work that never opens a transaction.
    """

    def commit(self):
        pass


class _SelfCommittingPool(adbapi.ConnectionPool):
    connectionFactory = _SelfCommittedConnection


class MysqlEngine:
    """
    MySQL or MariaDB through pymysql: utf8mb4, InnoDB, strict mode.
    """

    name = "mysql"
    for_update = " FOR UPDATE"
    searches_on_search_pool = False
    # InnoDB checkpoints its own redo log.
    checkpoint_interval = 0

    def __init__(self, host, port, user, password, database, pool_size=5):
        import pymysql

        self.module = pymysql
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.pool_size = pool_size

    def describe(self):
        return f"MySQL database {self.database} on {self.host}:{self.port}"

    def connection_pool(self, reactor):
        return self._pool(adbapi.ConnectionPool, reactor, self.pool_size, autocommit=False)

    def writer_pool(self, reactor):
        """
        The message writer's own connection: autocommit, so that a batch
        stored by one statement is committed by it, in one round trip.
        """
        return self._pool(_SelfCommittingPool, reactor, 1, autocommit=True)

    def search_pool(self, reactor):
        """
        The search indexer's own connection, whose thread runs at a lower
        CPU priority (see L{lower_thread_priority}): its driver work takes
        only the time the message path leaves. Searches themselves use the
        transaction pool.
        """
        return self._pool(adbapi.ConnectionPool, reactor, 1, autocommit=False,
                          on_connect=lower_thread_priority)

    def _pool(self, pool_class, reactor, size, autocommit, on_connect=None):
        def open_connection(connection):
            if on_connect is not None:
                on_connect()
            self._on_new_connection(connection)

        return pool_class(
            "pymysql",
            **self._connect_args(autocommit),
            cp_min=1,
            cp_max=size,
            cp_reconnect=True,
            cp_noisy=False,
            cp_openfun=open_connection,
            cp_reactor=reactor,
        )

    def connect(self):
        """
        A connection set up as the transaction pool's are, for synchronous
        tools.
        """
        connection = self.module.connect(**self._connect_args(autocommit=False))
        self._on_new_connection(connection)
        return connection

    connect_search = connect

    def _connect_args(self, autocommit):
        return dict(host=self.host, port=self.port, user=self.user,
                    password=self.password, database=self.database,
                    charset="utf8mb4", autocommit=autocommit, connect_timeout=10)

    def _on_new_connection(self, connection):
        with connection.cursor() as cursor:
            cursor.execute(
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,"
                "NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'")
            cursor.execute(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cursor.execute("SET SESSION default_storage_engine = InnoDB")
        connection.commit()

    def begin(self, cursor, durable=True, consistent=False):
        """
        The transaction starts with its first statement (autocommit is
        off). A C{consistent} one reads one snapshot throughout: REPEATABLE
        READ, for this transaction only, where the session's READ
        COMMITTED gives each statement a snapshot of its own.
        """
        if consistent:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def convert(sql):
        return sql.replace("%", "%%").replace("?", "%s")

    def execute_values(self, cursor, head, rows, tail):
        """
        Run C{head}, a VALUES list of C{rows} (L{values_sql}), then
        C{tail}. A batch's statement is mostly values, and pymysql's
        general path (a lookup by type and a call chain per value) took
        three times as long (C{python -m bench.micro}).
        """
        # No arguments: pymysql leaves the statement as it is.
        cursor.execute(head + self.values_sql(rows) + tail)

    def values_sql(self, rows):
        """
        C{rows} of values (str, int or None only) as the literal rows of a
        VALUES list, strings escaped by pymysql's own function (backslash
        escapes: the session's C{sql_mode}, set on connecting, leaves them
        on).
        """
        escape = self.module.converters.escape_string
        literals = []
        for values in rows:
            row = []
            for value in values:
                kind = value.__class__
                if kind is str:
                    row.append("'" + escape(value) + "'")
                elif kind is int:
                    row.append(str(value))
                elif value is None:
                    row.append("NULL")
                else:
                    raise TypeError(f"no literal for {kind.__name__} values")
            literals.append("(" + ", ".join(row) + ")")
        return ", ".join(literals)

    def _code(self, error):
        if isinstance(error, self.module.MySQLError) and error.args:
            return error.args[0]
        return None

    def is_retryable(self, error):
        if isinstance(error, adbapi.ConnectionLost):
            return True
        code = self._code(error)
        return code in _MYSQL_DEADLOCKS or code in _MYSQL_LOST_CONNECTION

    def is_duplicate(self, error):
        return self._code(error) == 1062


def create_engine(kind, parameters, password="", pool_size=5, checkpoint_interval=0.0):
    """
    Make the engine for a parsed database URL (see
    L{chatd.config.parse_database_url}).

    @param checkpoint_interval: seconds between background checkpoints of a
        SQLite database's log (see L{SqliteEngine}).
    """
    if kind == "sqlite":
        return SqliteEngine(parameters["path"], checkpoint_interval)
    return MysqlEngine(
        host=parameters["host"],
        port=parameters["port"],
        user=parameters["user"],
        password=parameters["password"] or password,
        database=parameters["database"],
        pool_size=pool_size,
    )
