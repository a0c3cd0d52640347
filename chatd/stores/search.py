"""
Full-text search over messages: SQL only, plus the tokenizer both engines
share.

Terms (L{terms}): text is NFKC-normalised and case-folded, then split into
runs of letters and digits. A run of Latin (or any non-CJK) letters is one
term, a word. A run of Chinese, Japanese or Korean characters, which have no
spaces between words, gives its overlapping bigrams plus its last character
alone ("你好世界" gives 你好, 好世, 世界, 界), so that any substring of two
or more characters is found through its bigrams, and a single character
through the terms that start with it.

The index: SQLite keeps the terms of each message in the FTS5 table
C{message_search} (rowid = message id), in a file of its own that only the
search connection opens (L{chatd.storage.engines.SqliteEngine.search_pool});
MariaDB/MySQL keep one row per (term, message) in C{search_terms} (MariaDB
has no n-gram FULLTEXT parser: see docs/search.md for the measurement).
L{catch_up_txn} indexes the messages above the last id indexed
(C{search_progress}) and those queued in C{search_pending} (edits, recalls
and deletes queue a message), before each search (a bounded amount) and
whenever the indexer service (L{chatd.indexer}) runs, so the message write
path does no search work at all. On MySQL the catch-up deletes what it
took from the queue, and an edit drops the message's terms at once; on
SQLite the catch-up only reads the queue past the last entry it took
(C{queue_through}, kept with the index), so it never writes the chat
database, and L{trim_queue_txn} deletes what it has read. Reading new
messages by id relies on ids becoming visible in order: one writer stores
messages, one transaction at a time (L{chatd.batching}).

A query matches a message when every query term is among the message's
terms (a single CJK character: a term starting with it); a CJK run of three
or more characters must also occur as written in the content (the bigrams
alone could come from different places).
"""

import re
import unicodedata
from dataclasses import dataclass

from chatd.errors import BadRequest
from chatd.stores.messages import _STORED_COLUMNS, _STORED_FROM, _stored_from_row

MAX_TERM_CHARS = 64
MAX_QUERY_TERMS = 16
# Messages indexed per catch-up transaction.
INDEX_BATCH = 500
# At most this many batches are indexed before a search; the rest is left
# to the indexer service (chatd.indexer), so a search never waits long.
SEARCH_CATCH_UP_ROUNDS = 4

_RUNS = re.compile(r"[^\W_]+")
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_SEGMENTS = re.compile(f"([{_CJK}]+)|([^{_CJK}]+)")


def _normal(text):
    return unicodedata.normalize("NFKC", text).casefold()


def _segments(text):
    """
    The (is_cjk, run) pieces of normalised text.
    """
    for run in _RUNS.findall(_normal(text)):
        for cjk, other in _SEGMENTS.findall(run):
            if cjk:
                yield True, cjk
            else:
                yield False, other[:MAX_TERM_CHARS]


def terms(text):
    """
    The index terms of a message's text, without repeats, in order.
    """
    if text.isascii():
        # ASCII is its own NFKC form, and holds no CJK: each run is a word.
        return list(dict.fromkeys(
            run[:MAX_TERM_CHARS] for run in _RUNS.findall(text.lower())))
    return _terms(text)


def _terms(text):
    found = {}
    for cjk, run in _segments(text):
        if not cjk:
            found[run] = None
            continue
        for i in range(len(run) - 1):
            found[run[i:i + 2]] = None
        found[run[-1]] = None
    return list(found)


@dataclass(frozen=True)
class Query:
    """
    A parsed search query.

    @ivar exact: terms a message must have.
    @ivar prefixes: single CJK characters some term must start with.
    @ivar phrases: CJK runs the content must contain as written.
    """

    exact: tuple
    prefixes: tuple
    phrases: tuple


def parse_query(text):
    """
    @raise BadRequest: nothing searchable in C{text}, or too many terms.
    """
    exact, prefixes, phrases = {}, {}, {}
    for cjk, run in _segments(text or ""):
        if not cjk:
            exact[run] = None
        elif len(run) == 1:
            prefixes[run] = None
        else:
            for i in range(len(run) - 1):
                exact[run[i:i + 2]] = None
            if len(run) > 2:
                phrases[run] = None
    exact = tuple(t for t in exact if t not in prefixes)
    if not exact and not prefixes:
        raise BadRequest("q: give a word or some characters to search for")
    if len(exact) + len(prefixes) > MAX_QUERY_TERMS:
        raise BadRequest(f"q: at most {MAX_QUERY_TERMS} terms")
    return Query(exact, tuple(prefixes), tuple(phrases))


# Indexing.


def _add_sqlite_txn(txn, rows):
    # One FTS row per message: an edited message indexed from the queue
    # may be among the new ones in the same catch-up.
    txn.executemany("DELETE FROM message_search WHERE rowid = ?",
                    [(message_id,) for message_id, _ in rows])
    txn.executemany(
        "INSERT INTO message_search (rowid, terms) VALUES (?, ?)",
        [(message_id, " ".join(terms(content)))
         for message_id, content in rows if content])


def _add_mysql_txn(txn, rows, replace):
    if replace and rows:
        txn.execute(
            "DELETE FROM search_terms WHERE message_id IN ("
            + ", ".join("?" for _ in rows) + ")",
            [message_id for message_id, _ in rows])
    pairs = [(term, message_id) for message_id, content in rows
             for term in terms(content)]
    for start in range(0, len(pairs), 1000):
        txn.execute_values("INSERT IGNORE INTO search_terms (term, message_id) VALUES ",
                           pairs[start:start + 1000])


def _add_txn(txn, rows, replace):
    """
    Index C{rows} of (message id, text); an empty text indexes nothing.
    With C{replace}, first drop what the index holds for those messages
    (SQLite always does).
    """
    if txn.engine.name == "sqlite":
        _add_sqlite_txn(txn, rows)
    else:
        _add_mysql_txn(txn, rows, replace)


def _searchable(found):
    # (id, content, recalled_at) rows as (id, text): a recalled message,
    # or one no longer stored, has no text to index.
    return [(int(message_id), content if recalled is None and content else "")
            for message_id, content, recalled in found]


def _index_queued_txn(txn, batch):
    """
    Index again up to C{batch} messages of the queue (edited messages).
    On MySQL the queue and the messages are read with locks, so an edit
    committing meanwhile waits, and its re-queue is not deleted unread.

    @return: how many were taken off the queue.
    """
    if txn.engine.name == "sqlite":
        return _index_queued_sqlite_txn(txn, batch)
    txn.execute(
        "SELECT p.message_id, m.content, m.recalled_at"
        " FROM search_pending p LEFT JOIN messages m ON m.id = p.message_id"
        " ORDER BY p.message_id LIMIT ?" + txn.engine.for_update, (batch,))
    queued = txn.fetchall()
    if not queued:
        return 0
    _add_txn(txn, _searchable(queued), replace=True)
    ids = [int(row[0]) for row in queued]
    txn.execute(
        "DELETE FROM search_pending WHERE message_id IN ("
        + ", ".join("?" for _ in ids) + ")", ids)
    return len(queued)


def _index_queued_sqlite_txn(txn, batch):
    # The queue entries past the last one taken, each indexed from the
    # message as it is now (a message queued twice, once).
    through = queue_through_txn(txn)
    txn.execute(
        "SELECT p.seq, p.message_id, m.content, m.recalled_at"
        " FROM search_pending p LEFT JOIN messages m ON m.id = p.message_id"
        " WHERE p.seq > ? ORDER BY p.seq LIMIT ?", (through, batch))
    queued = txn.fetchall()
    if not queued:
        return 0
    latest = dict(_searchable([row[1:] for row in queued]))
    _add_txn(txn, list(latest.items()), replace=True)
    txn.execute("UPDATE search_progress SET queue_through = ? WHERE id = 1",
                (int(queued[-1][0]),))
    return len(queued)


def trim_queue_txn(txn, through):
    """
    On SQLite, delete the queue entries the index has taken (up to
    C{through}, read from the index's file by L{queue_through_txn}).
    """
    txn.execute("DELETE FROM search_pending WHERE seq <= ?", (through,))
    txn.execute("UPDATE search_queue_trimmed SET through = ? WHERE through < ?",
                (through, through))


def queue_through_txn(txn):
    """
    On SQLite, the last queue entry the index has taken (MySQL's catch-up
    deletes what it takes instead).
    """
    txn.execute("SELECT queue_through FROM search_progress WHERE id = 1")
    return int(txn.fetchone()[0])


def _index_new_txn(txn, batch):
    """
    Index up to C{batch} messages above the last id indexed. On MySQL the
    progress row is read with a lock: two catch-ups take turns instead of
    indexing the same messages.

    @return: how many messages were read.
    """
    txn.execute("SELECT indexed_through FROM search_progress WHERE id = 1"
                + txn.engine.for_update)
    through = int(txn.fetchone()[0])
    txn.execute(
        "SELECT id, content, recalled_at FROM messages WHERE id > ?"
        " ORDER BY id LIMIT ?", (through, batch))
    found = txn.fetchall()
    if not found:
        return 0
    _add_txn(txn, [row for row in _searchable(found) if row[1]], replace=False)
    txn.execute("UPDATE search_progress SET indexed_through = ? WHERE id = 1",
                (int(found[-1][0]),))
    return len(found)


def catch_up_txn(txn, batch=INDEX_BATCH, rounds=None):
    """
    Index what the index lacks, C{batch} messages at a time, until nothing
    is left (or C{rounds} batches are done): in each batch the queued
    (edited) messages first, then the new ones.

    @return: how many messages were indexed.
    """
    done = 0
    while rounds is None or rounds > 0:
        count = _index_queued_txn(txn, batch)
        if count < batch:
            count += _index_new_txn(txn, batch - count)
        done += count
        if rounds is not None:
            rounds -= 1
        if count < batch:
            break
    return done


def reindex_txn(txn, message_id):
    """
    Index a message again after its text changed (an edit, or a recall,
    which leaves no text), in the change's own transaction. On MySQL its
    terms go now, and the queue has the next catch-up index it under
    locks, so terms a catch-up read by id just before the change committed
    do not stay behind. On SQLite the index is not this connection's to
    write: the message is queued, and the next catch-up (every search runs
    one first) replaces its terms. Until then a search may still find it
    by an old word, with its new text; a recalled message it never shows.
    """
    if txn.engine.name == "sqlite":
        txn.execute("INSERT INTO search_pending (message_id) VALUES (?)", (message_id,))
        return
    txn.execute("DELETE FROM search_pending WHERE message_id = ?", (message_id,))
    txn.execute("DELETE FROM search_terms WHERE message_id = ?", (message_id,))
    txn.execute("INSERT INTO search_pending (message_id) VALUES (?)", (message_id,))


# Searching.


def _like_pattern(phrase):
    escaped = phrase.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def _fts_query(query):
    parts = [f'"{term}"' for term in query.exact]
    parts += [f'"{prefix}" *' for prefix in query.prefixes]
    return " AND ".join(parts)


def _candidates_sqlite(query):
    """
    How SQLite finds the matching messages: C{(from, conditions, args,
    order)}; C{from} joins them to C{messages m}.
    """
    return (" FROM (SELECT rowid AS id FROM message_search"
            " WHERE message_search MATCH ?) hit"
            " JOIN messages m ON m.id = hit.id", [], [_fts_query(query)],
            "m.id")


def _candidates_mysql(query):
    """
    The same for MySQL. The first exact term drives: its postings are
    read newest first through the primary key C{(term, message_id)}, so
    a page stops as soon as it is full; the other terms are checked per
    candidate through the same key. Without an exact term (a single CJK
    character), the postings of the terms starting with it are merged.
    """
    conditions, args = [], []
    others = [("=", t) for t in query.exact[1:]]
    if query.exact:
        source = " FROM search_terms t0 JOIN messages m ON m.id = t0.message_id"
        conditions.append("t0.term = ?")
        args.append(query.exact[0])
        others += [("LIKE", _like_pattern(p)[1:]) for p in query.prefixes]
        order = "t0.message_id"
    else:
        source = (" FROM (SELECT DISTINCT message_id FROM search_terms"
                  " WHERE term LIKE ? ESCAPE '!') t0"
                  " JOIN messages m ON m.id = t0.message_id")
        args.append(_like_pattern(query.prefixes[0])[1:])
        others += [("LIKE", _like_pattern(p)[1:]) for p in query.prefixes[1:]]
        order = "m.id"
    for i, (op, value) in enumerate(others, 1):
        escape = " ESCAPE '!'" if op == "LIKE" else ""
        conditions.append(
            f"EXISTS (SELECT 1 FROM search_terms t{i}"
            f" WHERE t{i}.message_id = t0.message_id"
            f" AND t{i}.term {op} ?{escape})")
        args.append(value)
    return source, conditions, args, order


def search_txn(txn, user_id, group_ids, query, conversation, before_id,
               limit):
    """
    Messages C{user_id} may read that match C{query} (a L{Query}), newest
    first: its one-to-one messages and those of C{group_ids}, or only
    those of C{conversation} if given (the caller checked it may read it);
    below message id C{before_id} if given; at most C{limit}.

    @return: a list of L{chatd.stores.messages.StoredMessage}.
    """
    if txn.engine.name == "sqlite":
        source, where, args, order = _candidates_sqlite(query)
    else:
        source, where, args, order = _candidates_mysql(query)
    where.append("m.recalled_at IS NULL")
    if conversation is not None:
        where.append("m.conversation = ?")
        args.append(conversation)
    else:
        readable = ("(m.message_type = 1 AND (m.sender_id = ?"
                    " OR m.recipient_id = ?))")
        args.extend([user_id, user_id])
        if group_ids:
            readable = (f"({readable} OR (m.message_type = 2 AND"
                        " m.conversation IN ("
                        + ", ".join("?" for _ in group_ids) + ")))")
            args.extend(f"g:{g}" for g in sorted(group_ids))
        where.append(readable)
    if before_id is not None:
        where.append(f"{order} < ?")
        args.append(before_id)
    for phrase in query.phrases:
        where.append("m.content LIKE ? ESCAPE '!'")
        args.append(_like_pattern(phrase))
    from_clause = _STORED_FROM.replace(" FROM messages m", source, 1)
    txn.execute(
        f"SELECT {_STORED_COLUMNS}{from_clause}"
        f" WHERE {' AND '.join(where)} ORDER BY {order} DESC LIMIT ?",
        args + [limit])
    return [_stored_from_row(row) for row in txn.fetchall()]


class SearchStore:
    def __init__(self, database):
        self._database = database
        self._trimmed_through = 0

    async def search(self, user_id, group_ids, query, conversation=None,
                     before_id=None, limit=20):
        """
        See L{search_txn}. What the index lacks is indexed first (a
        bounded amount), in a transaction of its own: on MySQL the search
        query then holds none of the indexer's locks.
        """
        if await self.catch_up(rounds=SEARCH_CATCH_UP_ROUNDS):
            # With the indexer service off, searches keep the queue short.
            await self.trim_queue()
        return await self._database.run_search(
            "search_messages", search_txn, user_id, list(group_ids), query,
            conversation, before_id, limit)

    async def catch_up(self, batch=INDEX_BATCH, rounds=4):
        """
        Index up to C{batch * rounds} messages the index lacks; see
        L{catch_up_txn}.
        """
        return await self._database.run_search(
            "search_catch_up", catch_up_txn, batch, rounds)

    async def catch_up_in_background(self, batch=INDEX_BATCH, rounds=4):
        """
        L{catch_up} for the indexer service: on the database's search
        connection, if it has one (its thread yields to the message path).
        """
        return await self._database.run_background(
            "search_background_catch_up", catch_up_txn, batch, rounds)

    async def trim_queue(self):
        """
        Delete the queue entries the index has taken (SQLite; on MySQL the
        catch-up deletes them itself).
        """
        if self._database.engine.name != "sqlite":
            return
        through = await self._database.run_search("search_queue_through", queue_through_txn)
        if through > self._trimmed_through:
            await self._database.run_derived("search_trim_queue", trim_queue_txn, through)
            self._trimmed_through = through
