"""
A load-generator process: its own reactor, many WebSocket clients.

The parent hands a worker a plan (which connections to open and what each
one sends), then talks to it over a pipe: the worker says C{ready} once
every connection is open, the parent says C{go}, the worker runs the
scenario for the planned seconds and says C{measured} (the parent reads
the server's CPU use then), drains, and sends back its statistics; then
the parent says C{stop}.

A message's content is C{"b:<sender key>:<sequence>:<monotonic ns>"}, so a
receiver in any process can tell latency, loss, duplicates and reordering
(CLOCK_MONOTONIC is one clock for every process of the machine).
"""

import itertools
import math
import os
import time
from collections import defaultdict

from twisted.internet import reactor, task, threads
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.protocol import ClientFactory

from bench.rawws import RawWebSocketClient
from chatd.protocol.message_pb2 import Message

_HANDSHAKES_AT_ONCE = 200


class RatePacer:
    """
    How many messages a fixed offered rate owes at each tick. What is owed
    follows the time elapsed, not the ticks counted, so ticks a busy
    generator runs late or skips are made up at the next one and the
    offered rate holds.
    """

    def __init__(self, rate, started):
        self._rate = rate
        self._started = started
        self._sent = 0

    def due(self, now):
        owed = int(self._rate * (now - self._started)) - self._sent
        self._sent += owed
        return owed


class _Stats:
    def __init__(self):
        self.sent = 0
        self.acked = 0
        self.errors = defaultdict(int)
        self.ack_latency_us = []
        self.delivery_latency_us = []
        self.acked_seqs = defaultdict(list)
        # receiver index -> sender key -> set of sequence numbers
        self.received = defaultdict(lambda: defaultdict(set))
        self.duplicates = 0
        self.reordered = 0


class Worker:
    def __init__(self, plan, pipe):
        self.plan = plan
        self.pipe = pipe
        self.stats = _Stats()
        self.protocols = []
        self.closed = 0
        self._in_flight = {}
        self._next_seq = defaultdict(int)
        self._last_seen = {}
        self._sending = False
        # Nothing counts until the warm-up is over (L{_begin_window}).
        self._window_start_ns = math.inf
        self._cpu_at_window_start = 0.0

    async def run(self):
        started = time.monotonic()
        await self._connect_all()
        self.pipe.send(("ready", {"connect_seconds": time.monotonic() - started,
                                  "connections": len(self.protocols)}))
        command = await threads.deferToThread(self.pipe.recv)
        if command == "go":
            cpu_at_end, acked_in_window = await self._run_scenario()
            self.pipe.send(("stats", self._report(cpu_at_end - self._cpu_at_window_start,
                                                  acked_in_window)))
            await threads.deferToThread(self.pipe.recv)
        for protocol in self.protocols:
            protocol.transport.abortConnection()

    async def _connect_all(self):
        semaphore = DeferredSemaphore(_HANDSHAKES_AT_ONCE)
        await gatherResults([semaphore.run(self._connect, index, spec)
                             for index, spec in enumerate(self.plan["connections"])])

    def _connect(self, index, spec):
        path = f"{self.plan['ws_path']}?user={spec['uuid']}"
        if spec.get("token"):
            path += f"&token={spec['token']}"
        spec["index"] = index
        opened = Deferred()

        def on_open(protocol):
            opened.callback(protocol)

        def on_message(protocol, payload):
            frame = Message()
            frame.ParseFromString(payload)
            self.received(spec, frame)

        def on_close(protocol, reason):
            if not opened.called:
                opened.errback(RuntimeError(f"connection {index} failed: {reason}"))
            else:
                self.closed += 1

        host, port = self.plan["address"]
        factory = ClientFactory.forProtocol(
            lambda: RawWebSocketClient(f"{host}:{port}", path, on_open, on_message, on_close))
        reactor.connectTCP(host, port, factory, timeout=60)
        opened.addCallback(self._opened, spec)
        return opened

    def _opened(self, protocol, spec):
        spec["protocol"] = protocol
        self.protocols.append(protocol)
        if spec.get("join"):
            protocol.send(Message(type="join", to=spec["join"]).SerializeToString())

    # Sending.

    def _send(self, spec):
        key = spec["key"]
        seq = self._next_seq[key]
        self._next_seq[key] = seq + 1
        now = time.monotonic_ns()
        client_id = f"{key}:{seq}"
        frame = Message(to=spec["to"], content=f"b:{key}:{seq}:{now}", contentType=1,
                        messageType=spec["message_type"], clientMsgId=client_id)
        frame.__setattr__("from", spec["uuid"])
        self._in_flight[client_id] = (spec, now)
        spec["in_flight"] = spec.get("in_flight", 0) + 1
        if now >= self._window_start_ns:
            self.stats.sent += 1
        spec["protocol"].send(frame.SerializeToString())

    async def _run_scenario(self):
        senders = [s for s in self.plan["connections"] if s.get("role") == "sender"]
        seconds = self.plan["seconds"]
        self._sending = True
        if self.plan["mode"] == "window":
            for spec in senders:
                for _ in range(self.plan["window"]):
                    self._send(spec)
        elif self.plan["mode"] == "rate" and senders:
            self._start_rate(senders)
        if self.plan.get("warmup"):
            await task.deferLater(reactor, self.plan["warmup"], lambda: None)
        self._begin_window()
        self.pipe.send(("warmed", None))
        await task.deferLater(reactor, seconds, lambda: None)
        self._sending = False
        if getattr(self, "_rate_loop", None):
            self._rate_loop.stop()
        self._measured_seconds = seconds
        # CPU figures cover the measured seconds, not the drain after them,
        # and so does the count of acks they are shared by.
        cpu_at_end, acked_in_window = _cpu_seconds(), self.stats.acked
        self.pipe.send(("measured", None))
        deadline = time.monotonic() + self.plan.get("drain", 5)
        while time.monotonic() < deadline and self._in_flight:
            await task.deferLater(reactor, 0.05, lambda: None)
        # Let the last deliveries land.
        await task.deferLater(reactor, 0.5, lambda: None)
        return cpu_at_end, acked_in_window

    def _begin_window(self):
        """
        The warm-up is over: from now on count what is sent, and the
        latencies and acks of what is sent. Losses, duplicates and
        reorderings are still checked for every message, warm-up's too.
        """
        self._window_start_ns = time.monotonic_ns()
        self._cpu_at_window_start = _cpu_seconds()
        self.stats.errors.clear()

    def _start_rate(self, senders):
        pacer = RatePacer(self.plan["rate"], time.monotonic())
        senders_in_turn = itertools.cycle(senders)

        def send_some():
            for _ in range(pacer.due(time.monotonic())):
                self._send(next(senders_in_turn))

        self._rate_loop = task.LoopingCall(send_some)
        self._rate_loop.start(self.plan["tick"], now=False)

    # Receiving.

    def received(self, spec, frame):
        now = time.monotonic_ns()
        if frame.type == "ack":
            sent = self._in_flight.pop(frame.clientMsgId, None)
            if sent is None:
                return
            sender, sent_at = sent
            if sent_at >= self._window_start_ns:
                self.stats.acked += 1
                self.stats.ack_latency_us.append((now - sent_at) // 1000)
            key, seq = frame.clientMsgId.rsplit(":", 1)
            self.stats.acked_seqs[key].append(int(seq))
            sender["in_flight"] -= 1
            if self._sending and self.plan["mode"] == "window":
                self._send(sender)
        elif frame.type == "error":
            self.stats.errors[frame.errorCode or "error"] += 1
            sent = self._in_flight.pop(frame.clientMsgId, None)
            if sent and self._sending and self.plan["mode"] == "window":
                sent[0]["in_flight"] -= 1
                self._send(sent[0])
        elif frame.type == "" and frame.content.startswith("b:"):
            _, key, seq, sent_at = frame.content.split(":")
            seq = int(seq)
            seen = self.stats.received[spec["index"]][key]
            if seq in seen:
                self.stats.duplicates += 1
                return
            seen.add(seq)
            last = self._last_seen.get((spec["index"], key), -1)
            if seq < last:
                self.stats.reordered += 1
            else:
                self._last_seen[(spec["index"], key)] = seq
            sent_at = int(sent_at)
            if sent_at >= self._window_start_ns:
                self.stats.delivery_latency_us.append((now - sent_at) // 1000)

    def _report(self, cpu_seconds, acked_in_window):
        s = self.stats
        return {
            "sent": s.sent,
            "acked": s.acked,
            "acked_in_window": acked_in_window,
            "errors": dict(s.errors),
            "ack_latency_us": s.ack_latency_us,
            "delivery_latency_us": s.delivery_latency_us,
            "acked_seqs": dict(s.acked_seqs),
            "received": {(self.plan["worker"], index): {key: _ranges(seqs)
                                                         for key, seqs in by_key.items()}
                         for index, by_key in s.received.items()},
            "duplicates": s.duplicates,
            "reordered": s.reordered,
            "closed": self.closed,
            "cpu_seconds": cpu_seconds,
            "seconds": getattr(self, "_measured_seconds", 0),
        }


def _ranges(numbers):
    """
    A set of integers as sorted C{[first, last]} runs.
    """
    runs = []
    for n in sorted(numbers):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def worker_main(plan, pipe, cpu=None):
    """
    The entry point of a worker process.
    """
    from bench.server import raise_file_limit

    raise_file_limit()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    worker = Worker(plan, pipe)
    d = Deferred.fromCoroutine(worker.run())

    def failed(failure):
        pipe.send(("error", failure.getTraceback()))

    d.addErrback(failed)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
