"""
chatd-bench: run a bounded load scenario against chatd (SQLite, MariaDB)
and the plain-Autobahn baseline, loopback only, and report medians.

    chatd-bench pairs --servers sqlite,mysql,baseline --pairs 50 --window 10 --seconds 10
    chatd-bench group --members 1000 --senders 4 --seconds 10
    chatd-bench rate --rate 5000 --pairs 50 --seconds 10
    chatd-bench conns --count 10000
    chatd-bench rest --seconds 10

Each run starts a fresh server pinned to one core (--server-cpu) and the
generator's worker processes on the others (--client-cpus), creates its
users through the REST API, measures, and stops the server. --repeat runs
each server that many times, the servers taking turns; the report gives
the median of each figure and each run's own.
"""

import argparse
import bisect
import json
import multiprocessing
import os
import statistics
import sys
import time

from bench import population, profile, trace
from bench.server import Server, parse_setting, raise_file_limit
from bench.worker import worker_main

SCENARIOS = ("pairs", "group", "rate", "conns", "rest")
BOUND_SECONDS = 120
BOUND_CONNECTIONS = 20000
# Before measuring, the server must have finished what the connections set
# off (chatd loads each one's contacts and tells their friends): a window
# of SETTLE_INTERVAL seconds in which it used under SETTLE_CPU of its core,
# waited for SETTLE_LIMIT seconds at most.
SETTLE_INTERVAL = 0.2
SETTLE_CPU = 0.05
SETTLE_LIMIT = 10.0


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _split(items, parts):
    return [items[i::parts] for i in range(parts)]


def _ws_address(server):
    return ("127.0.0.1", server.port)


class Run:
    """
    One scenario against one fresh server.
    """

    def __init__(self, args, kind):
        self.args = args
        self.kind = kind
        self.server = Server(kind, cpu=args.server_cpu,
                             mysql_url=args.mysql_url,
                             scrypt_log2_n=15 if args.scenario == "rest" else 10,
                             settings=args.settings,
                             cprofile=self._output(args.cprofile, "pstats"),
                             callgrind=self._output(args.callgrind, "callgrind"),
                             trace=self._output(args.trace, "json"))

    def _output(self, directory, extension):
        """
        A new file name in C{directory} for this run (None without one).
        """
        if not directory:
            return None
        os.makedirs(directory, exist_ok=True)
        return os.path.join(
            directory, f"{self.args.scenario}-{self.kind}-{time.time_ns()}.{extension}")

    def accounts(self, prefix, count):
        if self.kind == "baseline":
            return population.fake_accounts(prefix, count)
        return population.create_accounts(self.server.url, prefix, count)

    # Plans: the connections each worker opens and what they send.

    def plan_pairs(self):
        a = self.args
        accounts = self.accounts("pair", 2 * a.pairs)
        senders, receivers = accounts[0::2], accounts[1::2]
        if self.kind != "baseline":
            population.befriend(self.server.url, list(zip(senders, receivers, strict=True)))
        connections, expected = [], []
        for i, (s, r) in enumerate(zip(senders, receivers, strict=True)):
            key = f"p{i}"
            connections.append({"uuid": s.uuid, "token": s.token, "role": "sender",
                                "to": r.uuid, "message_type": 1, "key": key})
            connections.append({"uuid": r.uuid, "token": r.token, "role": "receiver"})
            expected.append((r.uuid, key))
        return connections, expected

    def plan_group(self):
        a = self.args
        members = self.accounts("member", a.members)
        if self.kind == "baseline":
            group = "bench-group"
        else:
            group = population.create_group(self.server.url, members[0], members)
        connections, expected = [], []
        sender_keys = {}
        for i, m in enumerate(members):
            spec = {"uuid": m.uuid, "token": m.token, "role": "receiver"}
            if self.kind == "baseline":
                spec["join"] = group
            if i < a.senders:
                key = f"g{i}"
                sender_keys[m.uuid] = key
                spec.update(role="sender", to=group, message_type=2, key=key)
            connections.append(spec)
        for m in members:
            for sender_uuid, key in sender_keys.items():
                if sender_uuid != m.uuid:
                    expected.append((m.uuid, key))
        return connections, expected

    def plan_conns(self):
        a = self.args
        users = min(a.count, 2000)
        accounts = self.accounts("idle", users)
        connections = [{"uuid": accounts[i % users].uuid, "token": accounts[i % users].token,
                        "role": "idle"} for i in range(a.count)]
        return connections, []

    # Running.

    def run(self):
        self.server.start()
        try:
            result = self._measure()
        finally:
            self.server.stop()
        if self.server.cprofile:
            result["cprofile"] = self.server.cprofile
        if self.server.trace:
            result["trace"] = trace.summarise(self.server.trace, *self._window)
        return result

    def _measure(self):
        a = self.args
        scenario = a.scenario
        if scenario == "rest":
            from bench.rest import measure_rest

            return measure_rest(self.server, a)
        planner = {"pairs": self.plan_pairs, "rate": self.plan_pairs,
                   "group": self.plan_group, "conns": self.plan_conns}[scenario]
        connections, expected = planner()
        rss_before = self.server.rss_bytes()
        workers = a.workers
        mode = {"pairs": "window", "group": "window", "rate": "rate", "conns": "idle"}[scenario]
        context = multiprocessing.get_context("fork")
        pipes, processes = [], []
        cpus = a.client_cpus or [None]
        for index, part in enumerate(_split(connections, workers)):
            parent_end, child_end = context.Pipe()
            plan = {"worker": index, "address": _ws_address(self.server),
                    "ws_path": "/socket.io",
                    "connections": part, "mode": mode,
                    "window": getattr(a, "window", 1), "rate": getattr(a, "rate", 0) / workers,
                    "seconds": 0 if scenario == "conns" else a.seconds,
                    "warmup": 0 if scenario == "conns" else a.warmup,
                    "tick": a.tick, "drain": 10}
            process = context.Process(target=worker_main,
                                      args=(plan, child_end, cpus[index % len(cpus)]))
            process.start()
            pipes.append(parent_end)
            processes.append(process)
        try:
            ready = [self._expect(pipe, "ready") for pipe in pipes]
            result = {"connections": sum(r["connections"] for r in ready),
                      "connect_seconds": max(r["connect_seconds"] for r in ready)}
            if scenario == "conns":
                time.sleep(2)
                rss = self.server.rss_bytes()
                result.update({
                    "server_rss_mb": rss / 2**20,
                    "rss_mb_per_1000": rss / 2**20 / (a.count / 1000),
                    "rss_growth_mb_per_1000": (rss - rss_before) / 2**20 / (a.count / 1000),
                    "connects_per_second": a.count / result["connect_seconds"],
                })
            result["settle_seconds"] = wait_until_idle(self.server.cpu_seconds)
            instructions = None
            for pipe in pipes:
                pipe.send("go")
            for pipe in pipes:
                self._expect(pipe, "warmed")
            window_start = time.monotonic()
            cpu_before = self.server.cpu_split()
            profiler = self._start_profiler()
            if self.server.callgrind:
                profile.callgrind_zero(self.server.process.pid)
            for pipe in pipes:
                self._expect(pipe, "measured")
            self._window = (window_start, time.monotonic())
            # The server's CPU over the measured seconds: a drain after an
            # overload would otherwise count against them.
            cpu = [after - before for after, before
                   in zip(self.server.cpu_split(), cpu_before, strict=True)]
            stats = [self._expect(pipe, "stats") for pipe in pipes]
            if self.server.callgrind:
                instructions = profile.callgrind_dump(
                    self.server.process.pid, self.server.callgrind)
            for pipe in pipes:
                pipe.send("stop")
            if profiler is not None:
                profiler.wait(60)
                result["profile"] = self._profile_path
        finally:
            for process in processes:
                process.join(30)
                if process.is_alive():
                    process.kill()
        if scenario != "conns":
            result.update(_summarise(stats, expected, connections, cpu, instructions))
        return result

    def _start_profiler(self):
        if not self.args.profile or self.args.scenario == "conns":
            return None
        self._profile_path = self._output(self.args.profile, "txt")
        return profile.start(self.server.process.pid, self.args.seconds, self._profile_path)

    def _expect(self, pipe, kind):
        if not pipe.poll(BOUND_SECONDS + 60):
            raise RuntimeError(f"worker sent no {kind} in time")
        got, payload = pipe.recv()
        if got == "error":
            raise RuntimeError(f"worker failed:\n{payload}")
        assert got == kind, (got, kind)
        return payload


def wait_until_idle(cpu_seconds, sleep=time.sleep, clock=time.monotonic):
    """
    Wait until a process whose CPU time C{cpu_seconds()} reads used under
    L{SETTLE_CPU} of a core over L{SETTLE_INTERVAL}, or L{SETTLE_LIMIT}
    seconds have passed; return how long that took.
    """
    started = clock()
    cpu = cpu_seconds()
    while clock() - started < SETTLE_LIMIT:
        sleep(SETTLE_INTERVAL)
        now = cpu_seconds()
        used, cpu = now - cpu, now
        if used < SETTLE_CPU * SETTLE_INTERVAL:
            break
    return clock() - started


def _summarise(stats, expected, connections, server_cpu, instructions=None):
    """
    The figures of a run: the workers' C{stats}, the C{expected} (receiver
    uuid, sender key) deliveries, the planned C{connections}, the server's
    (user, kernel, event loop) CPU seconds while measuring, and the
    instructions it ran then (under callgrind) or None.
    """
    user_cpu, kernel_cpu, loop_cpu = server_cpu
    seconds = max(s["seconds"] for s in stats) or 1
    acked_seqs = {}
    for s in stats:
        acked_seqs.update({k: set(v) for k, v in s["acked_seqs"].items()})
    received = {}
    for s in stats:
        received.update(s["received"])
    # Where each uuid's connections are: (worker, index) as the plan was split.
    places = {}
    for w, part in enumerate(_split(connections, len(stats))):
        for i, spec in enumerate(part):
            places.setdefault(spec["uuid"], []).append((w, i))
    lost = 0
    for uuid, key in expected:
        acked = acked_seqs.get(key, set())
        for place in places.get(uuid, []):
            lost += len(acked) - _count_covered(acked, received.get(place, {}).get(key, []))
    delivery = [x for s in stats for x in s["delivery_latency_us"]]
    ack = [x for s in stats for x in s["ack_latency_us"]]
    acked = sum(s["acked"] for s in stats)
    acked_in_window = sum(s["acked_in_window"] for s in stats)
    errors = {}
    for s in stats:
        for code, n in s["errors"].items():
            errors[code] = errors.get(code, 0) + n
    return {
        "seconds": seconds,
        "sent": sum(s["sent"] for s in stats),
        "sent_per_second": sum(s["sent"] for s in stats) / seconds,
        "acked": acked,
        "acked_per_second": acked / seconds,
        "delivered": len(delivery),
        "delivered_per_second": len(delivery) / seconds,
        "delivery_p50_ms": _ms(_percentile(delivery, 0.5)),
        "delivery_p99_ms": _ms(_percentile(delivery, 0.99)),
        "delivery_max_ms": _ms(max(delivery) if delivery else None),
        "ack_p50_ms": _ms(_percentile(ack, 0.5)),
        "ack_p99_ms": _ms(_percentile(ack, 0.99)),
        "lost": lost,
        "duplicates": sum(s["duplicates"] for s in stats),
        "reordered": sum(s["reordered"] for s in stats),
        "errors": errors,
        "server_cpu_percent": 100 * (user_cpu + kernel_cpu) / seconds,
        "server_kernel_cpu_percent": 100 * kernel_cpu / seconds,
        "server_loop_cpu_percent": 100 * loop_cpu / seconds,
        # The server's CPU per message acked in the measured seconds (the
        # CPU is read at their end): what one message costs at this load.
        "acked_in_window": acked_in_window,
        "server_cpu_us_per_acked": (round(1e6 * (user_cpu + kernel_cpu) / acked_in_window, 1)
                                    if acked_in_window else None),
        "generator_cpu_percent": 100 * sum(s["cpu_seconds"] for s in stats) / seconds,
        **({} if instructions is None else {
            "server_instructions": instructions,
            "server_instructions_per_acked": round(instructions / acked) if acked else None,
        }),
    }


def _count_covered(numbers, runs):
    """
    How many of C{numbers} fall in the sorted C{[first, last]} C{runs}.
    """
    starts = [first for first, _ in runs]
    count = 0
    for n in numbers:
        i = bisect.bisect_right(starts, n) - 1
        if i >= 0 and n <= runs[i][1]:
            count += 1
    return count


def _ms(us):
    return None if us is None else round(us / 1000, 3)


#: Failures counted over every run, not medians: one run's loss must show.
SUMMED_OVER_RUNS = ("lost", "duplicates", "reordered", "login_failures", "history_failures")


def _median_report(results):
    """
    The median of each numeric figure over repeated runs; failures (lost,
    duplicated and reordered messages, error frames, failed requests) are
    the totals of all the runs.
    """
    report = {}
    for key in results[0]:
        values = [r[key] for r in results if r.get(key) is not None]
        if key in SUMMED_OVER_RUNS:
            report[key] = sum(values)
        elif key == "errors":
            report[key] = _summed_counts(values)
        elif values and all(isinstance(v, (int, float)) for v in values):
            report[key] = statistics.median(values)
        else:
            report[key] = values[-1] if values else None
    return report


def _summed_counts(counts):
    """
    Several runs' counts by name, added up.
    """
    total = {}
    for run in counts:
        for name, n in run.items():
            total[name] = total.get(name, 0) + n
    return total


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="chatd-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--servers", default="sqlite,baseline",
                        help="comma-separated: sqlite, mysql, baseline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of the same load before the measured ones,"
                        " left out of every figure but the loss, duplicate and"
                        " reordering checks")
    parser.add_argument("--tick", type=float, default=0.001,
                        help="rate: seconds between the generator's sends, each"
                        " sending what the offered rate owes by then (until the"
                        " seventh round 0.005: bursts of 25 messages at 5,000/s)")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpus", default="1",
                        help="comma-separated cores for the generator's workers")
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306/chatd_bench")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="a chatd configuration setting for the run; repeatable")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample the server with py-spy into DIR and summarise")
    parser.add_argument("--callgrind", metavar="DIR",
                        help="run the server under valgrind's callgrind, dumps into"
                        " DIR, and report the instructions it ran per acked message:"
                        " a figure the shared host's load does not move (the server"
                        " runs about 50 times slower: use a low --rate)")
    parser.add_argument("--trace", metavar="DIR",
                        help="record chatd's timings into DIR (bench.trace) and report"
                        " the measured window's: messages until stored, database"
                        " transactions, garbage collections")
    parser.add_argument("--cprofile", metavar="DIR",
                        help="run chatd's event loop under cProfile, statistics into"
                        " DIR, and summarise (it slows the server: its figures are"
                        " not the run's)")
    args = parser.parse_args(argv)
    args.client_cpus = [int(c) for c in args.client_cpus.split(",") if c != ""]
    try:
        args.settings = [parse_setting(text) for text in args.settings]
    except ValueError as e:
        parser.error(str(e))
    if not 0 < args.seconds <= BOUND_SECONDS:
        parser.error(f"--seconds must be in (0, {BOUND_SECONDS}]")
    if not 0 <= args.warmup <= BOUND_SECONDS:
        parser.error(f"--warmup must be in [0, {BOUND_SECONDS}]")
    if not 0.0002 <= args.tick <= 1:
        parser.error("--tick must be in [0.0002, 1]")
    if not 0 < args.count <= BOUND_CONNECTIONS:
        parser.error(f"--count must be in (0, {BOUND_CONNECTIONS}]")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be 1 to 10")
    return args


def run_order(kinds, repeat):
    """
    The runs to make, as server kinds: the servers take turns, round by
    round, so that a noisy spell of a shared host falls on all of them
    rather than on one server's runs.
    """
    return [kind for _ in range(repeat) for kind in kinds]


def _run_figures(result):
    """
    A run's own figures for the report, without its bulky attachments.
    """
    return {key: value for key, value in result.items()
            if key not in ("profile", "trace", "cprofile")}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_file_limit()
    report = {"scenario": args.scenario, "command": "chatd-bench " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": _machine(), "servers": {}}
    kinds = [kind for kind in args.servers.split(",")
             if not (kind == "baseline" and args.scenario == "rest")]
    results = {kind: [] for kind in kinds}
    for kind in run_order(kinds, args.repeat):
        results[kind].append(Run(args, kind).run())
        if not args.json:
            print(f"{kind}: {json.dumps(results[kind][-1])}", file=sys.stderr)
    for kind in kinds:
        runs = results[kind]
        figures = report["servers"][kind] = _median_report(runs)
        figures["runs"] = [_run_figures(r) for r in runs]
        if args.profile and runs[-1].get("profile"):
            own, inclusive = profile.summarise(runs[-1]["profile"])
            figures["profile_self"] = own
            figures["profile_inclusive"] = inclusive
        if runs[-1].get("trace"):
            figures["trace"] = [r["trace"] for r in runs]
        if runs[-1].get("cprofile"):
            figures["cprofile_self"] = profile.summarise_cprofile(runs[-1]["cprofile"])
    _add_ratios(report)
    print(json.dumps(report, indent=2))


def _add_ratios(report):
    baseline = report["servers"].get("baseline")
    if not baseline:
        return
    for kind, figures in report["servers"].items():
        if kind == "baseline":
            continue
        for key in ("delivered_per_second", "acked_per_second",
                    "server_instructions_per_acked"):
            if figures.get(key) and baseline.get(key):
                figures[f"{key}_vs_baseline"] = round(figures[key] / baseline[key], 3)


def _machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0]}


if __name__ == "__main__":
    main()
