"""
Tests for the benchmark tool's own logic: the lean WebSocket client's
framing, loss accounting, and the profile summary.
"""

import os
import struct

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from bench import profile
from bench.cli import (
    _count_covered,
    _median_report,
    _percentile,
    _run_figures,
    run_order,
    wait_until_idle,
)
from bench.rawws import RawWebSocketClient, encode_frame
from bench.worker import RatePacer, Worker, _ranges
from chatd.protocol.message_pb2 import Message


def _unmask(frame):
    length = frame[1] & 0x7F
    offset = 2
    if length == 126:
        length = struct.unpack_from("!H", frame, 2)[0]
        offset = 4
    key = frame[offset:offset + 4]
    body = frame[offset + 4:offset + 4 + length]
    return bytes(b ^ key[i % 4] for i, b in enumerate(body))


class RawWebSocketTests(SynchronousTestCase):
    def client(self):
        events = []
        client = RawWebSocketClient(
            "127.0.0.1:1", "/socket.io?user=u", lambda c: events.append("open"),
            lambda c, payload: events.append(payload),
            lambda c, reason: events.append(("closed", reason)))
        transport = StringTransport()
        client.makeConnection(transport)
        return client, transport, events

    def test_frames_are_masked(self):
        for size in (0, 5, 125, 126, 70000):
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            frame = encode_frame(payload)
            self.assertEqual(frame[0], 0x82)
            self.assertTrue(frame[1] & 0x80)
            if size < 65536:
                self.assertEqual(_unmask(frame), payload)

    def test_handshake_then_frames_in_pieces(self):
        client, transport, events = self.client()
        self.assertIn(b"GET /socket.io?user=u HTTP/1.1", transport.value())
        self.assertIn(b"Sec-WebSocket-Version: 13", transport.value())
        data = (b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
                + b"\x82\x03abc" + b"\x82\x7e\x01\x00" + b"x" * 256)
        for i in range(len(data)):
            client.dataReceived(data[i:i + 1])
        self.assertEqual(events, ["open", b"abc", b"x" * 256])

    def test_ping_answered(self):
        client, transport, events = self.client()
        client.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        transport.clear()
        client.dataReceived(b"\x89\x02hi")
        pong = transport.value()
        self.assertEqual(pong[0], 0x8A)
        self.assertEqual(_unmask(pong), b"hi")

    def test_refused_upgrade(self):
        client, transport, events = self.client()
        client.dataReceived(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
        self.assertEqual(events, [("closed", "HTTP/1.1 401 Unauthorized")])


class AccountingTests(SynchronousTestCase):
    def test_ranges(self):
        self.assertEqual(_ranges({5, 1, 2, 3, 7, 8}), [[1, 3], [5, 5], [7, 8]])
        self.assertEqual(_ranges(set()), [])

    def test_count_covered(self):
        runs = [[1, 3], [5, 5], [7, 8]]
        self.assertEqual(_count_covered({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, runs), 6)
        self.assertEqual(_count_covered({1, 2}, []), 0)

    def test_percentile_and_median(self):
        self.assertEqual(_percentile(list(range(100)), 0.99), 99)
        self.assertIsNone(_percentile([], 0.5))
        report = _median_report([{"a": 1, "b": "x"}, {"a": 3, "b": "y"}, {"a": 2, "b": "z"}])
        self.assertEqual(report, {"a": 2, "b": "z"})

    def test_failures_are_totals(self):
        """
        A loss, duplicate, reordering or error in any one run shows in the
        report, which a median of three runs would hide.
        """
        runs = [{"lost": 0, "duplicates": 0, "reordered": 0, "errors": {}, "acked": 10},
                {"lost": 2, "duplicates": 1, "reordered": 0, "errors": {"E1": 1}, "acked": 20},
                {"lost": 0, "duplicates": 0, "reordered": 3, "errors": {"E1": 2, "E2": 1},
                 "acked": 30}]
        self.assertEqual(_median_report(runs), {
            "lost": 2, "duplicates": 1, "reordered": 3, "errors": {"E1": 3, "E2": 1},
            "acked": 20})
        self.assertEqual(_median_report([{"login_failures": 1}, {"login_failures": 0},
                                         {"login_failures": 0}]), {"login_failures": 1})

    def test_servers_take_turns(self):
        """
        Repeated runs go round the servers, so that no server's runs all
        fall in one spell of a shared host's noise.
        """
        self.assertEqual(run_order(["sqlite", "mysql", "baseline"], 2),
                         ["sqlite", "mysql", "baseline", "sqlite", "mysql", "baseline"])
        self.assertEqual(run_order(["sqlite"], 3), ["sqlite"] * 3)

    def test_run_figures_leave_out_attachments(self):
        run = {"delivery_p99_ms": 2.5, "profile": "/tmp/p", "trace": {}, "cprofile": "/tmp/c"}
        self.assertEqual(_run_figures(run), {"delivery_p99_ms": 2.5})


class RatePacerTests(SynchronousTestCase):
    def test_ticks_on_time(self):
        # Times in 256ths of a second are exact in binary floating point.
        pacer = RatePacer(6400, started=0.0)
        self.assertEqual([pacer.due(i / 256) for i in range(1, 5)], [25] * 4)

    def test_late_ticks_are_made_up(self):
        """
        A tick that comes three ticks late sends what the skipped ticks
        owed, so the messages sent follow the time elapsed.
        """
        pacer = RatePacer(6400, started=0.0)
        self.assertEqual(pacer.due(1 / 256), 25)
        self.assertEqual(pacer.due(5 / 256), 100)
        self.assertEqual(pacer.due(6 / 256), 25)

    def test_fractions_carry_over(self):
        pacer = RatePacer(150, started=0.0)
        sent = sum(pacer.due(0.005 * i) for i in range(1, 201))
        self.assertEqual(sent, 150)


class WarmUpTests(SynchronousTestCase):
    def test_warm_up_left_out_of_the_figures(self):
        """
        A message sent during the warm-up is checked for order but leaves
        no figure: not its send, ack or latency; one sent after counts.
        """

        class Protocol:
            def send(self, payload):
                pass

        sender = {"key": "s", "to": "r", "uuid": "u", "message_type": 1,
                  "protocol": Protocol()}
        receiver = {"index": 0}
        worker = Worker({"mode": "rate"}, pipe=None)

        def exchange(seq):
            worker._send(sender)
            sent_at = worker._in_flight[f"s:{seq}"][1]
            worker.received(sender, Message(type="ack", clientMsgId=f"s:{seq}"))
            worker.received(receiver, Message(content=f"b:s:{seq}:{sent_at}"))

        exchange(0)
        worker._begin_window()
        exchange(1)
        stats = worker.stats
        self.assertEqual((stats.sent, stats.acked), (1, 1))
        self.assertEqual((len(stats.ack_latency_us), len(stats.delivery_latency_us)), (1, 1))
        self.assertEqual(stats.acked_seqs["s"], [0, 1])
        # A late copy of the warm-up's message is still a duplicate.
        worker.received(receiver, Message(content="b:s:0:0"))
        self.assertEqual(stats.duplicates, 1)


class SettleTests(SynchronousTestCase):
    def test_waits_for_a_quiet_interval(self):
        """
        Measuring starts after the first interval in which the server used
        under 5% of its core: here the third.
        """
        clock = Clock()
        readings = iter([0.0, 0.2, 0.3, 0.305])
        waited = wait_until_idle(lambda: next(readings), clock.advance, clock.seconds)
        self.assertAlmostEqual(waited, 0.6)

    def test_bounded(self):
        """
        A server that never goes quiet is waited for 10 seconds and at
        most one more interval.
        """
        clock = Clock()
        busy = iter(range(1000))
        waited = wait_until_idle(lambda: next(busy) * 0.2, clock.advance, clock.seconds)
        self.assertGreaterEqual(waited, 10.0)
        self.assertLessEqual(waited, 10.2 + 1e-9)


class TraceTests(SynchronousTestCase):
    def test_install_records_messages_and_collections(self):
        """
        Once installed, the trace records each message from submit to the
        hand-out of its result, and each garbage collection.
        """
        import gc

        from twisted.enterprise.adbapi import ConnectionPool

        from bench import trace
        from chatd.batching import BatchWriter
        from chatd.storage.database import Database
        from tests.test_messages_store import FakeStore

        self.patch(BatchWriter, "submit", BatchWriter.submit)
        self.patch(Database, "_run", Database._run)
        self.patch(ConnectionPool, "runInteraction", ConnectionPool.runInteraction)
        callbacks = list(gc.callbacks)
        self.addCleanup(gc.callbacks.__setitem__, slice(None), callbacks)
        record = {"messages": [], "transactions": [], "phases": [], "collections": []}
        trace.install(record)
        store = FakeStore()
        writer = BatchWriter(store, Clock())
        writer.submit("m1")
        writer._clock.advance(0)
        self.assertEqual(record["messages"], [])
        store.commit()
        self.assertEqual(len(record["messages"]), 1)
        gc.collect()
        self.assertEqual(record["collections"][-1][2], 2)

    def test_summarise_the_window(self):
        """
        Only what began within the window counts.
        """
        import json

        from bench import trace

        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({"messages": [[0.5, 0.1], [1.5, 0.002], [2.5, 0.3]],
                       "transactions": [[1.2, 0.001, "insert_messages"],
                                        [3.0, 0.5, "insert_messages"]],
                       "phases": [[1.3, 0.0001, 0.0005, 0.0002, "insert_batch_txn"],
                                  [2.2, 0.1, 0.1, 0.1, "insert_batch_txn"]],
                       "collections": [[1.1, 0.004, 2], [0.2, 1.0, 2]]}, f)
        summary = trace.summarise(path, 1.0, 2.0)
        self.assertEqual(summary["message_stored_ms"],
                         {"count": 1, "p50_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0})
        self.assertEqual(summary["transactions"]["insert_messages"]["count"], 1)
        self.assertEqual(summary["collections"]["2"]["max_ms"], 4.0)
        phases = summary["phases"]["insert_batch_txn"]
        self.assertEqual([phases[p]["max_ms"] for p in ("to_thread", "in_thread", "to_loop")],
                         [0.1, 0.5, 0.2])


class TracePhaseTests(TestCase):
    async def test_install_records_transaction_phases(self):
        """
        Each transaction's time is split into waiting for the pool's thread,
        running in it, and waiting for the event loop, under the name of
        the function the transaction ran.
        """
        from twisted.enterprise.adbapi import ConnectionPool

        from bench import trace
        from chatd.storage.database import Database, _ping_txn
        from tests.helpers import make_database

        self.patch(Database, "_run", Database._run)
        self.patch(ConnectionPool, "runInteraction", ConnectionPool.runInteraction)
        record = {"messages": [], "transactions": [], "phases": [], "collections": []}
        trace.install(record)
        database = make_database(self)
        await database.run("ping", _ping_txn)
        [(started, to_thread, in_thread, to_loop, function)] = record["phases"]
        [(txn_started, seconds, description)] = record["transactions"]
        self.assertEqual((function, description), ("_ping_txn", "ping"))
        self.assertGreaterEqual(started, txn_started)
        for phase in (to_thread, in_thread, to_loop):
            self.assertGreaterEqual(phase, 0)
        self.assertLessEqual(to_thread + in_thread + to_loop, seconds)


class ProfileSummaryTests(SynchronousTestCase):
    def test_summarise(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("run (/x/base.py:1);send (/y/messaging.py:5);execute (/z/database.py:9) 6\n")
            f.write("run (/x/base.py:1);send (/y/messaging.py:5) 4\n")
        own, inclusive = profile.summarise(path)
        self.assertEqual(own, [(60.0, "execute (database.py)"), (40.0, "send (messaging.py)")])
        self.assertEqual(inclusive[0], (100.0, "send (messaging.py)"))
        self.assertNotIn("run (base.py)", [name for _, name in inclusive])

    def test_summarise_frame_name_with_newline(self):
        """
        A sample that a frame name holding a newline split over two lines
        counts once, under its last frame.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("run (/x/base.py:1);def __init__(self, name):\n"
                    "    pass (/y/t.py:3);send (/y/messaging.py:5) 3\n")
            f.write("run (/x/base.py:1) 1\n")
        own, _ = profile.summarise(path)
        self.assertEqual(own, [(75.0, "send (messaging.py)"), (25.0, "run (base.py)")])


class CProfileSummaryTests(SynchronousTestCase):
    def test_summarise_cprofile(self):
        import cProfile

        def busy():
            return sum(i * i for i in range(20000))

        profiler = cProfile.Profile()
        profiler.runcall(busy)
        path = self.mktemp()
        profiler.dump_stats(path)
        summary = profile.summarise_cprofile(path, top=3)
        self.assertEqual(len(summary), 3)
        self.assertTrue(all(0 <= percent <= 100 for percent, _ in summary))
        self.assertEqual([p for p, _ in summary], sorted((p for p, _ in summary), reverse=True))
        self.assertTrue(any("test_bench.py" in name for _, name in summary), summary)

    def test_twistd_profiles_chatd_only(self):
        from bench.server import Server

        server = Server("sqlite", cprofile="/tmp/x.pstats")
        self.addCleanup(server.stop)
        self.assertIn("--profile=/tmp/x.pstats", server._command())
        baseline = Server("baseline", cprofile="/tmp/x.pstats")
        self.addCleanup(baseline.stop)
        self.assertNotIn("--profile=/tmp/x.pstats", baseline._command())
        self.assertIsNone(baseline.cprofile)


class CpuTests(SynchronousTestCase):
    def test_event_loop_thread_within_the_process(self):
        """
        The main thread's CPU time (the server's event loop) is read from
        its own /proc entry and is part of the whole process's: another
        thread's time counts in the whole only.
        """
        import threading
        import time

        from bench.server import process_cpu_split

        pid = os.getpid()
        sum(i * i for i in range(300000))
        other = []

        def busy():
            start = time.thread_time()
            while time.thread_time() - start < 0.3:
                sum(i * i for i in range(1000))
            other.append(time.thread_time() - start)

        loop_before, whole_before = sum(process_cpu_split(pid, pid)), sum(process_cpu_split(pid))
        thread = threading.Thread(target=busy)
        thread.start()
        thread.join()
        loop = sum(process_cpu_split(pid, pid))
        whole = sum(process_cpu_split(pid))
        self.assertGreater(loop, 0)
        self.assertLessEqual(loop, whole)
        # Four readings, each of user and kernel time in whole ticks: the
        # difference can fall short by up to two ticks per reading pair.
        tick = 1 / os.sysconf("SC_CLK_TCK")
        self.assertGreaterEqual((whole - whole_before) - (loop - loop_before),
                                other[0] - 4 * tick)

    def test_user_and_kernel_time(self):
        """
        A process's CPU time is its user time plus its kernel time, each
        as the kernel counts it, and system calls add to the latter.
        """
        from bench.server import process_cpu_split

        pid = os.getpid()
        _, kernel_before = process_cpu_split(pid)
        for _ in range(200000):
            os.getppid()
            os.stat(".")
        user, kernel = process_cpu_split(pid)
        self.assertGreater(kernel, kernel_before)
        self.assertGreater(user, 0)
        times = os.times()
        tick = 1 / os.sysconf("SC_CLK_TCK")
        # trial's assertAlmostEqual takes no delta (it compares to seven
        # places whatever delta says), so the bounds are spelled out.
        self.assertLessEqual(abs(user - times.user), 2 * tick)
        self.assertLessEqual(abs(kernel - times.system), 2 * tick)
        self.assertLessEqual(abs(user + kernel - times.user - times.system), 0.05)


class SummaryTests(SynchronousTestCase):
    def test_figures(self):
        """
        A run's figures: deliveries, losses and latencies from the workers,
        the server's CPU split, and instructions per acked message.
        """
        from bench.cli import _summarise

        connections = [{"uuid": "s", "role": "sender", "key": "k"},
                       {"uuid": "r", "role": "receiver"}]
        stats = [{"seconds": 2.0, "acked_seqs": {"k": [1, 2, 3, 4]},
                  "received": {}, "delivery_latency_us": [], "ack_latency_us": [1000] * 4,
                  "acked": 4, "acked_in_window": 3, "sent": 4, "errors": {},
                  "duplicates": 0, "reordered": 0, "cpu_seconds": 0.5},
                 {"seconds": 2.0, "acked_seqs": {}, "received": {(1, 0): {"k": [[1, 3]]}},
                  "delivery_latency_us": [2000, 3000, 4000], "ack_latency_us": [],
                  "acked": 0, "acked_in_window": 0, "sent": 0, "errors": {"x": 1},
                  "duplicates": 0,
                  "reordered": 1, "cpu_seconds": 0.5}]
        figures = _summarise(stats, [("r", "k")], connections, (1.0, 0.5, 1.2), 8000)
        self.assertEqual((figures["sent_per_second"], figures["acked_per_second"]), (2.0, 2.0))
        self.assertEqual(figures["lost"], 1)
        self.assertEqual(figures["delivery_p50_ms"], 3.0)
        self.assertEqual((figures["server_cpu_percent"], figures["server_kernel_cpu_percent"],
                          figures["server_loop_cpu_percent"]), (75.0, 25.0, 60.0))
        self.assertEqual(figures["generator_cpu_percent"], 50.0)
        # 1.5 s of the server's CPU shared by the 3 messages acked in time.
        self.assertEqual(figures["server_cpu_us_per_acked"], 500000.0)
        self.assertEqual(figures["server_instructions_per_acked"], 2000)
        self.assertNotIn("server_instructions",
                         _summarise(stats, [], connections, (1.0, 0.5, 1.2)))

    def test_ratios(self):
        from bench.cli import _add_ratios

        report = {"servers": {
            "sqlite": {"acked_per_second": 50.0, "server_instructions_per_acked": 300},
            "baseline": {"acked_per_second": 100.0, "server_instructions_per_acked": 200}}}
        _add_ratios(report)
        sqlite = report["servers"]["sqlite"]
        self.assertEqual(sqlite["acked_per_second_vs_baseline"], 0.5)
        self.assertEqual(sqlite["server_instructions_per_acked_vs_baseline"], 1.5)
        self.assertNotIn("acked_per_second_vs_baseline", report["servers"]["baseline"])


class SettingsTests(SynchronousTestCase):
    def test_parse_setting(self):
        from bench.server import parse_setting

        self.assertEqual(parse_setting("websocket.batch_delay=0.002"),
                         ("websocket", "batch_delay", 0.002))
        self.assertEqual(parse_setting("database.url=sqlite:///x"),
                         ("database", "url", "sqlite:///x"))
        self.assertRaises(ValueError, parse_setting, "batch_delay=1")

    def test_config_is_valid_toml_for_chatd(self):
        import tomllib

        from bench.server import _bench_settings, _toml
        from chatd.config import config_from_dict

        settings = _bench_settings(1234, "/tmp/d", "sqlite:///x.db", 10)
        settings["websocket"]["batch_delay"] = 0.002
        config = config_from_dict(tomllib.loads(_toml(settings)))
        self.assertEqual(config.websocket.batch_delay, 0.002)
        self.assertEqual(config.server.listen, ("tcp:1234:interface=127.0.0.1:backlog=4096",))


class EndToEndTests(SynchronousTestCase):
    def test_pairs_and_rate(self):
        """
        A short run of the tool itself against a chatd on SQLite and the
        baseline, over loopback: every message acked and delivered once, in
        order, and CPU figures read over the measured seconds only (one
        core each, so at most 100% and a tick or two).
        """
        import json
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        traces = os.path.abspath(self.mktemp())
        for scenario, extra in (("pairs", ["--window", "2"]),
                                ("rate", ["--rate", "200", "--trace", traces])):
            output = subprocess.run(
                [sys.executable, "-m", "bench.cli", scenario, "--servers", "sqlite,baseline",
                 "--pairs", "3", "--seconds", "1", "--repeat", "1", "--json", *extra],
                cwd=root, capture_output=True, text=True, timeout=300, check=True).stdout
            for server, figures in json.loads(output)["servers"].items():
                self.assertGreater(figures["acked"], 0, (scenario, server))
                self.assertEqual((figures["sent"], figures["delivered"]),
                                 (figures["acked"], figures["acked"]), (scenario, server))
                self.assertEqual((figures["lost"], figures["duplicates"], figures["reordered"]),
                                 (0, 0, 0), (scenario, server))
                self.assertLessEqual(figures["server_cpu_percent"], 102, (scenario, server))
                self.assertLessEqual(figures["acked_in_window"], figures["acked"])
                [run] = figures["runs"]
                self.assertEqual(run["delivery_p99_ms"], figures["delivery_p99_ms"])
                self.assertNotIn("trace", run)
                if scenario == "rate" and server == "sqlite":
                    [traced] = figures["trace"]
                    self.assertGreater(traced["message_stored_ms"]["count"], 150)
                    self.assertIn("insert_messages", traced["transactions"])
                self.assertGreater(figures["server_cpu_us_per_acked"], 0, (scenario, server))
                if scenario == "rate":
                    # The offered rate holds: 200 a second for the second.
                    self.assertTrue(198 <= figures["sent"] <= 202, figures["sent"])


    def test_group_and_conns(self):
        """
        A group of five, two senders: every message reaches the other four
        members once, in order; and idle connections are counted with the
        server's memory.
        """
        import json
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

        def run(*args):
            output = subprocess.run(
                [sys.executable, "-m", "bench.cli", *args, "--servers", "sqlite,baseline",
                 "--repeat", "1", "--json"],
                cwd=root, capture_output=True, text=True, timeout=300, check=True).stdout
            return json.loads(output)["servers"]

        for server, figures in run("group", "--members", "5", "--senders", "2",
                                   "--window", "2", "--seconds", "1").items():
            self.assertGreater(figures["acked"], 0, server)
            self.assertEqual(figures["delivered"], 4 * figures["acked"], server)
            self.assertEqual((figures["lost"], figures["duplicates"], figures["reordered"]),
                             (0, 0, 0), server)
        for server, figures in run("conns", "--count", "50").items():
            self.assertEqual(figures["connections"], 50, server)
            self.assertGreater(figures["rss_mb_per_1000"], 0, server)

    def test_rest(self):
        """
        The rest scenario signs in and reads history pages of a
        conversation it filled first.
        """
        import json
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        output = subprocess.run(
            [sys.executable, "-m", "bench.cli", "rest", "--servers", "sqlite",
             "--seconds", "1", "--repeat", "1", "--json"],
            cwd=root, capture_output=True, text=True, timeout=300, check=True).stdout
        figures = json.loads(output)["servers"]["sqlite"]
        self.assertGreater(figures["messages_in_conversation"], 100)
        self.assertGreater(figures["logins_per_second"], 0)
        self.assertGreater(figures["history_pages_per_second"], 0)
        self.assertEqual((figures["login_failures"], figures["history_failures"]), (0, 0))


class CallgrindTests(SynchronousTestCase):
    def test_instructions_between_zero_and_dump(self):
        """
        The count read from a dump is what the process ran since it was
        zeroed: ten times the work, about ten times the instructions.
        """
        import select
        import subprocess
        import sys

        child = (
            "import select, sys\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    if not select.select([sys.stdin], [], [], 0.01)[0]:\n"
            "        continue\n"
            "    n = int(sys.stdin.readline())\n"
            "    sum(i * i for i in range(n))\n"
            "    print('done', flush=True)\n")
        output = os.path.abspath(self.mktemp())
        command = profile.callgrind_command([sys.executable, "-c", child], output)
        if command is None:
            # An optional tool of the benchmark's; .ci/run installs it.
            raise SkipTest("valgrind is not installed")
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.assertTrue(select.select([process.stdout], [], [], 120)[0])
        self.assertEqual(process.stdout.readline(), "ready\n")

        def count(n):
            profile.callgrind_zero(process.pid)
            process.stdin.write(f"{n}\n")
            process.stdin.flush()
            self.assertTrue(select.select([process.stdout], [], [], 120)[0])
            self.assertEqual(process.stdout.readline(), "done\n")
            return profile.callgrind_dump(process.pid, output)

        small, large = count(20000), count(200000)
        self.assertGreater(small, 0)
        self.assertTrue(5 * small < large < 20 * small, (small, large))


class MicroTests(SynchronousTestCase):
    def test_report(self):
        from bench.micro import measure

        report = measure(repeat=1, number=100)
        self.assertEqual(sorted(report["values of 256 message rows"]),
                         ["chatd literals", "pymysql mogrify"])
        self.assertTrue(all(us > 0 for ways in report.values() for us in ways.values()))
