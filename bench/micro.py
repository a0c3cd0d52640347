"""
Micro-benchmarks: single hot functions of the message path, timed in
this process (no server), each next to the way it replaced.

    python -m bench.micro [--repeat 5]

- C{terms}: tokenizing a message for search, ASCII shortcut against the
  general path (NFKC, case folding, CJK runs), per message.
- C{values}: writing 256 message rows as a MySQL VALUES list, chatd's
  literal writer against pymysql's general path (C{Cursor.mogrify}, as
  C{Cursor.execute} formats its arguments: a lookup by type and a call
  chain per value), per batch.

It prints JSON: the best of C{--repeat} timings of each, in microseconds.
"""

import argparse
import json
import timeit

from chatd.storage.engines import MysqlEngine
from chatd.stores.search import _terms, terms

TEXTS = {
    "benchmark message": "17:123456:1796052544.391980",
    "English sentence": "hey, are we still meeting at 5pm tomorrow? let me know",
}


def message_rows(count=256):
    """
    Rows as the message writer inserts them.
    """
    return [(f"d:{n}:{n + 50}", n, f"c{n}", 1, n + 50, 1,
             f"{n}:{n * 7}:1796052544.391980 it's", "", None, 1796052544391)
            for n in range(count)]


def pymysql_values_sql(rows):
    """
    The same VALUES list as pymysql formats statement arguments
    (C{Cursor.mogrify}), on a connection object that never connects.
    """
    import pymysql

    connection = pymysql.connections.Connection(
        defer_connect=True, host="127.0.0.1", charset="utf8mb4")
    # What a session with chatd's sql_mode reports: backslash escapes on.
    connection.server_status = 0
    cursor = connection.cursor()
    placeholders = ", ".join("(" + ", ".join("%s" for _ in rows[0]) + ")" for _ in rows)
    arguments = [value for row in rows for value in row]
    return lambda: cursor.mogrify(placeholders, arguments)


def _best(function, number, repeat):
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def measure(repeat=5, number=2000):
    """
    The timings, in microseconds: C{{name: {way: us}}}.
    """
    report = {}
    for label, text in TEXTS.items():
        report[f"terms of a {label}"] = {
            "ascii shortcut": _best(lambda t=text: terms(t), number, repeat),
            "general path": _best(lambda t=text: _terms(t), number, repeat)}
    engine = MysqlEngine("127.0.0.1", 3306, "x", "", "x")
    rows = message_rows()
    batches = max(1, number // 100)
    report["values of 256 message rows"] = {
        "chatd literals": _best(lambda: engine.values_sql(rows), batches, repeat),
        "pymysql mogrify": _best(pymysql_values_sql(rows), batches, repeat)}
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.micro")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps({name: {way: round(us, 2) for way, us in ways.items()}
                      for name, ways in measure(args.repeat).items()}, indent=2))


if __name__ == "__main__":
    main()
