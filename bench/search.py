"""
The cost of chatd's message search, and the MariaDB alternatives it was
chosen over (docs/search.md has the figures and the commands).

    python -m bench.search --database sqlite --messages 100000
    python -m bench.search --database mysql://root@127.0.0.1:3306/chatd_bench \\
        --messages 100000 --fulltext

It fills a fresh database (a temporary SQLite file, or the named MySQL
database, dropped and created again) with synthetic messages, a mix of
English and Chinese/Japanese text, between 200 users in one-to-one
conversations; then measures indexing (chatd.stores.search.catch_up_txn)
and search (chatd.stores.search.search_txn, the query GET /api/v1/search runs
after its catch-up)
for a few kinds of query. With --fulltext (MySQL only), it also builds
InnoDB's FULLTEXT index on messages.content and runs the same queries with
MATCH ... AGAINST, reporting how many of the expected messages it finds.
Single-threaded, synchronous, no server: it measures the SQL alone.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

from bench.server import recreate_mysql_database
from chatd.config import parse_database_url
from chatd.storage.database import Transaction
from chatd.storage.engines import create_engine
from chatd.storage.migrations import (
    _apply_txn,
    _current_version_txn,
    migrations,
    split_statements,
)
from chatd.stores.messages import ONE_TO_ONE, NewMessage, insert_batch_txn, participants
from chatd.stores.search import catch_up_txn, parse_query, search_txn

WORDS = ("lunch meeting project deadline coffee tomorrow weekend release "
         "server database message search python twisted budget report "
         "holiday flight hotel ticket review design").split()
CHINESE = "我们明天去东京吃饭会议项目报告咖啡周末服务器数据库消息搜索预算设计评审"
JAPANESE = "東京タワーへ行きましょう会議の資料を送ります明日はよろしくお願いします"
QUERIES = [
    ("latin word", "deadline"),
    ("two latin words", "coffee tomorrow"),
    ("rare latin word", "zanzibar"),
    ("chinese 2 chars", "东京"),
    ("chinese 4 chars", "服务器数"),
    ("japanese 3 chars", "タワー"),
    ("single cjk char", "咖"),
]


def _text(rng):
    kind = rng.random()
    if kind < 0.5:
        words = rng.choices(WORDS, k=rng.randint(3, 12))
        if rng.random() < 0.001:
            words.append("zanzibar")
        return " ".join(words)
    source = CHINESE if kind < 0.8 else JAPANESE
    start = rng.randrange(len(source) - 12)
    return source[start:start + rng.randint(4, 12)] + " " + rng.choice(WORDS)


class Bench:
    def __init__(self, url):
        if url == "sqlite":
            path = os.path.join(tempfile.mkdtemp(), "bench.sqlite3")
            url = "sqlite:///" + path
        kind, parameters = parse_database_url(url)
        if kind == "mysql":
            recreate_mysql_database(url)
        self.engine = create_engine(kind, parameters)
        self.connection = self.engine.connect()
        self.search_connection = None

    def run(self, function, *args, on=None):
        """
        Run C{function} in a transaction on C{on}, by default the chat
        database's connection; L{search} for the search index's.
        """
        connection = on or self.connection
        cursor = connection.cursor()
        self.engine.begin(cursor)
        try:
            result = function(Transaction(self.engine, cursor), *args)
        except BaseException:
            connection.rollback()
            raise
        if self.engine.name == "sqlite":
            cursor.execute("COMMIT")
        else:
            connection.commit()
        return result

    def search(self, function, *args):
        """
        Run C{function} on the search index's connection (SQLite keeps the
        index in a file of its own), opened once the schema is in place.
        """
        if self.search_connection is None:
            self.search_connection = self.engine.connect_search()
        return self.run(function, *args, on=self.search_connection)

    def migrate(self):
        self.run(_current_version_txn)
        for version, path in migrations(self.engine.name):
            with open(path, encoding="utf-8") as f:
                self.run(_apply_txn, version, split_statements(f.read()))

    def fill(self, count, users=200, seed=1):
        rng = random.Random(seed)

        def users_txn(txn):
            for i in range(users):
                txn.execute(
                    "INSERT INTO users (uuid, username, password_hash,"
                    " created_at, updated_at) VALUES (?, ?, '!', 1, 1)",
                    (f"00000000-0000-0000-0000-{i:012d}", f"user{i}"))
            txn.execute("SELECT id FROM users ORDER BY id")
            return [int(row[0]) for row in txn.fetchall()]

        ids = self.run(users_txn)
        for start in range(0, count, 1000):
            batch = []
            for _ in range(min(1000, count - start)):
                a, b = rng.sample(ids, 2)
                batch.append(NewMessage(a, None, ONE_TO_ONE, b, 1, _text(rng)))
            self.run(insert_batch_txn, batch, 1000, participants(batch))
        return ids


def _time(function, repeat):
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="sqlite",
                        help="sqlite, or a mysql:// URL of a scratch database")
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fulltext", action="store_true",
                        help="also measure InnoDB FULLTEXT (MySQL only)")
    args = parser.parse_args(argv)
    bench = Bench(args.database)
    bench.migrate()
    start = time.perf_counter()
    ids = bench.fill(args.messages)
    print(f"{bench.engine.name}: stored {args.messages} messages in"
          f" {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    indexed = bench.search(catch_up_txn)
    elapsed = time.perf_counter() - start
    print(f"indexed {indexed} messages in {elapsed:.1f} s"
          f" ({indexed / elapsed:.0f} messages/s)")
    # After a bulk load InnoDB purges and recomputes statistics in the
    # background; until it has, even a catch-up with nothing to do is slow.
    # Wait for that, as a server that indexes as it goes never sees such a
    # backlog.
    start = time.perf_counter()
    while time.perf_counter() - start < 120:
        ms, _ = _time(lambda: bench.search(catch_up_txn), 1)
        if ms < 5:
            break
        time.sleep(1)
    print(f"queue purged after {time.perf_counter() - start:.1f} s;"
          f" an empty catch-up takes {ms:.2f} ms")
    if bench.engine.name == "mysql":
        # Likewise, InnoDB recomputes table statistics in the background
        # after a bulk load; until then it may pick a poor plan.
        bench.run(lambda txn: txn.execute(
            "ANALYZE TABLE messages, search_terms").fetchall())
    user = ids[0]
    print(f"{'query':<18} {'text':<16} {'hits':>5} {'ms (median)':>12}"
          "   (the newest 20 that user 1 may read)")
    for label, text in QUERIES:
        query = parse_query(text)
        ms, found = _time(lambda query=query: bench.search(
            search_txn, user, [], query, None, None, 20), args.repeat)
        print(f"{label:<18} {text:<16} {len(found):>5} {ms:>12.2f}")
    if args.fulltext:
        _fulltext(bench, user, args.repeat)


def _fulltext(bench, user, repeat):
    if bench.engine.name != "mysql":
        sys.exit("--fulltext needs a mysql:// database")

    def build_txn(txn):
        txn.execute("ALTER TABLE messages ADD FULLTEXT INDEX messages_text"
                    " (content)")

    start = time.perf_counter()
    bench.run(build_txn)
    print(f"FULLTEXT index built in {time.perf_counter() - start:.1f} s")

    mine = " AND message_type = 1 AND (sender_id = ? OR recipient_id = ?)"

    def search_ft_txn(txn, text):
        txn.execute(
            "SELECT id FROM messages WHERE MATCH (content) AGAINST"
            f" (? IN BOOLEAN MODE){mine} ORDER BY id DESC LIMIT 20",
            (" ".join("+" + word for word in text.split()), user, user))
        return txn.fetchall()

    def count_like_txn(txn, text):
        condition = " AND ".join("content LIKE ?" for _ in text.split())
        txn.execute(f"SELECT COUNT(*) FROM messages WHERE {condition}{mine}",
                    [f"%{word}%" for word in text.split()] + [user, user])
        return int(txn.fetchone()[0])

    print(f"{'FULLTEXT query':<18} {'text':<16} {'hits':>5} {'ms (median)':>12}"
          f" {'should find':>12}")
    for label, text in QUERIES:
        ms, found = _time(lambda text=text: bench.run(search_ft_txn, text),
                          repeat)
        expected = bench.run(count_like_txn, text)
        print(f"{label:<18} {text:<16} {len(found):>5} {ms:>12.2f}"
              f" {min(expected, 20):>12}")


if __name__ == "__main__":
    main()
