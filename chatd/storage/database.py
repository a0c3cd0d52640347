"""
The database handle every store uses: transactions in the adbapi thread
pool, bounded retries, and a clean close that waits for work in flight.

Functions run by L{Database.run} are called C{something_txn}: they run in a
database thread, get a L{Transaction}, must not touch the reactor, and may
be run more than once when a transaction is retried.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

log = Logger()


class Transaction:
    """
    A cursor inside one transaction, taking SQL with C{?} placeholders.

    @ivar retry: True when an earlier attempt of the same work failed on
        a lost connection or a deadlock: it may have been done (an
        autocommit statement whose reply was lost).
    """

    def __init__(self, engine, cursor, retry=False):
        self.engine = engine
        self._cursor = cursor
        self.retry = retry

    def execute(self, sql, args=()):
        self._cursor.execute(self.engine.convert(sql), tuple(args))
        return self._cursor

    def execute_values(self, head, rows, tail=""):
        """
        Run C{head} (ending in C{VALUES}), the rows of values C{rows}
        (str, int or None), then C{tail}; none of them take placeholders.
        """
        self.engine.execute_values(self._cursor, head, rows, tail)
        return self._cursor

    def executemany(self, sql, rows):
        self._cursor.executemany(self.engine.convert(sql), list(rows))
        return self._cursor

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    @property
    def lastrowid(self):
        return self._cursor.lastrowid

    @property
    def rowcount(self):
        return self._cursor.rowcount


class Database:
    """
    An engine plus its connection pools.

    @ivar engine: the L{chatd.storage.engines} engine.
    @param writer_pool: the pool L{run_writes} uses, if not C{pool}.
    @param search_pool: the pool L{run_background} uses, and L{run_search}
        where the engine searches there, if not C{pool}.
    """

    def __init__(self, engine, pool, retries=3, writer_pool=None, search_pool=None):
        self.engine = engine
        self._pool = pool
        self._writer_pool = writer_pool
        self._search_pool = search_pool
        self._retries = retries
        self._in_flight = 0
        self._idle_waiters = []
        self._closed = False
        self._main_runs = 0
        self._checkpointed_runs = 0

    async def run(self, description, function, *args, **kwargs):
        """
        Run C{function(txn, *args, **kwargs)} in one transaction and return
        its result, retrying deadlocks and lost connections a bounded number
        of times.
        """
        return await self._run(self._pool, True, description, function, args, kwargs)

    async def run_consistent(self, description, function, *args, **kwargs):
        """
        Like L{run}, for reads whose statements must all see the database
        as of one moment (sync's cursor: a later statement must not see a
        message committed after an earlier one looked). MySQL runs it at
        REPEATABLE READ instead of the session's READ COMMITTED; a SQLite
        transaction always reads one snapshot.
        """
        return await self._run(self._pool, True, description, function, args, kwargs,
                               consistent=True)

    async def run_derived(self, description, function, *args, **kwargs):
        """
        Like L{run}, for work that can be done again from what is stored
        (the search index): on SQLite its commit does not wait for the
        disk. A crash may undo it whole; it never undoes a durable commit.
        """
        return await self._run(self._pool, False, description, function, args, kwargs)

    async def run_background(self, description, function, *args, **kwargs):
        """
        Like L{run}, for work nobody waits for (the search indexer's
        runs): on the engine's search connection if it has one, whose
        thread yields the core to the message path. Its commits are
        durable: on SQLite the queue entries it takes are deleted from the
        chat database afterwards, so the index must not lose the mark of
        having taken them.
        """
        return await self._run(self._search_pool or self._pool, True, description,
                               function, args, kwargs)

    async def run_search(self, description, function, *args, **kwargs):
        """
        Like L{run_background}, for work on the search index that someone
        waits for (a search, and what it indexes first): on the search
        connection where the engine keeps the index there (SQLite).
        """
        pool = self._search_pool if self.engine.searches_on_search_pool else None
        return await self._run(pool or self._pool, True, description,
                               function, args, kwargs)

    async def run_writes(self, description, function, *args, **kwargs):
        """
        Like L{run}, but on the engine's writer connection if it has one,
        where each statement commits by itself (MySQL: autocommit, so a
        single-statement write costs one round trip). C{function} must
        leave the data consistent after each of its statements, and be
        safe to run again after a lost connection.
        """
        return await self._run(self._writer_pool or self._pool, True, description,
                               function, args, kwargs)

    async def _run(self, pool, durable, description, function, args, kwargs,
                   consistent=False):
        if self._closed:
            raise RuntimeError(f"database closed; cannot run {description}")
        self._in_flight += 1
        try:
            for attempt in range(self._retries + 1):
                try:
                    return await pool.runInteraction(
                        self._transaction, durable, consistent, attempt > 0, function,
                        args, kwargs)
                except Exception as error:
                    if attempt == self._retries or not self.engine.is_retryable(error):
                        raise
                    log.warn(
                        "Retrying {description} after {error!r} (attempt {n})",
                        description=description, error=error, n=attempt + 1)
        finally:
            if pool is self._pool:
                # Counted once over: a checkpoint after this sees its pages.
                self._main_runs += 1
            self._in_flight -= 1
            if not self._in_flight:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)

    async def checkpoint(self):
        """
        Where the engine checkpoints its log in the background (SQLite,
        see L{chatd.storage.engines.SqliteEngine}), do so on the search
        connection, unless nothing finished on the main connection since
        the last checkpoint that succeeded.

        @return: the engine's figures (pages in the log, pages copied), or
            None if there was nothing to do.
        """
        if not self.engine.checkpoint_interval or self._search_pool is None:
            return None
        if self._main_runs == self._checkpointed_runs:
            return None
        previous, self._checkpointed_runs = self._checkpointed_runs, self._main_runs
        try:
            return await self.run_background("checkpoint", self.engine.checkpoint_txn)
        except Exception:
            self._checkpointed_runs = previous
            raise

    def _transaction(self, cursor, durable, consistent, retry, function, args, kwargs):
        self.engine.begin(cursor, durable, consistent)
        return function(Transaction(self.engine, cursor, retry), *args, **kwargs)

    def wait_idle(self):
        """
        A Deferred that fires once no transaction is in flight.
        """
        if not self._in_flight:
            return succeed(None)
        waiter = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    async def close(self):
        """
        Refuse new work, let work in flight finish, then close the pool.
        """
        if self._closed:
            return
        self._closed = True
        await self.wait_idle()
        self._pool.close()
        for pool in (self._writer_pool, self._search_pool):
            if pool is not None:
                pool.close()

    async def ping(self):
        """
        Raise unless the database answers a trivial query, on the message
        writer's and the search index's own connections too if it has
        them.
        """
        await self.run("ping", _ping_txn)
        if self._writer_pool is not None:
            await self.run_writes("ping", _ping_txn)
        if self._search_pool is not None:
            await self.run_background("ping", _ping_txn)


def _ping_txn(txn):
    txn.execute("SELECT 1")
    return txn.fetchone()
