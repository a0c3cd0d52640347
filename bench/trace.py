"""
Tracing chatd under test: where the slow messages' time went.

C{python -m bench.trace OUTPUT TWISTD-ARGS...} runs twistd (chatd) with a
few timings recorded, on CLOCK_MONOTONIC like the generator's:

  - each message from L{BatchWriter.submit} until its result is handed
    out (stored, or failed);
  - each transaction the database runs (L{Database._run}: description,
    start, seconds, including its wait for a pooled connection);
  - each transaction's three phases, by the function it runs: waiting
    for its pool's thread, in that thread (its statements and commit),
    and waiting for the event loop to take its result;
  - each garbage collection (generation, seconds), which holds every
    thread.

They are written to OUTPUT (JSON) when the reactor shuts down.
L{summarise} reduces them to the measured window's figures. Recording
costs a few microseconds a message, so a traced run's other figures are
not comparable with an untraced run's.
"""

import gc
import json
import sys
import time

_now = time.monotonic


def install(record):
    """
    Hook chatd's writer, database and the collector to fill C{record}.
    """
    from twisted.enterprise.adbapi import ConnectionPool
    from twisted.internet.threads import deferToThreadPool

    from chatd.batching import BatchWriter
    from chatd.storage.database import Database

    submit = BatchWriter.submit

    def timed_submit(self, message):
        started = _now()

        def handed_out(result):
            record["messages"].append((started, _now() - started))
            return result

        return submit(self, message).addBoth(handed_out)

    run = Database._run

    async def timed_run(self, pool, durable, description, *args, **kwargs):
        started = _now()
        try:
            return await run(self, pool, durable, description, *args, **kwargs)
        finally:
            record["transactions"].append((started, _now() - started, description))

    def phased_interaction(self, interaction, *args, **kwargs):
        # ConnectionPool.runInteraction, with the time each phase begins.
        # Database._run passes the function run in the transaction fourth.
        times = [_now()]

        def in_thread():
            times.append(_now())
            try:
                return self._runInteraction(interaction, *args, **kwargs)
            finally:
                times.append(_now())

        def back(result):
            if len(times) == 3:
                started, entered, left = times
                function = args[3] if len(args) > 3 else interaction
                record["phases"].append((started, entered - started, left - entered,
                                         _now() - left,
                                         getattr(function, "__name__", repr(function))))
            return result

        d = deferToThreadPool(self._reactor, self.threadpool, in_thread)
        return d.addBoth(back)

    collection = {}

    def collected(phase, info):
        if phase == "start":
            collection["started"] = _now()
        elif "started" in collection:
            started = collection.pop("started")
            record["collections"].append((started, _now() - started, info["generation"]))

    BatchWriter.submit = timed_submit
    Database._run = timed_run
    ConnectionPool.runInteraction = phased_interaction
    gc.callbacks.append(collected)


def main(argv):
    from twisted.internet import reactor
    from twisted.scripts.twistd import run

    output, twistd_args = argv[0], argv[1:]
    record = {"messages": [], "transactions": [], "phases": [], "collections": []}
    install(record)

    def write():
        with open(output, "w") as f:
            json.dump(record, f)

    reactor.addSystemEventTrigger("before", "shutdown", write)
    sys.argv = ["twistd", *twistd_args]
    run()


def _quantiles(seconds):
    seconds = sorted(seconds)
    if not seconds:
        return None

    def ms(fraction):
        return round(1000 * seconds[min(len(seconds) - 1, int(fraction * len(seconds)))], 2)

    return {"count": len(seconds), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1)}


def summarise(path, start, end):
    """
    The traced figures of the window from C{start} to C{end} (monotonic
    seconds): messages submitted in it, transactions and collections
    begun in it.
    """
    with open(path) as f:
        record = json.load(f)

    def within(events):
        return [event for event in events if start <= event[0] < end]

    by_description = {}
    for _, seconds, description in within(record["transactions"]):
        by_description.setdefault(description, []).append(seconds)
    phases = {}
    for _, *seconds, function in within(record.get("phases", [])):
        phases.setdefault(function, []).append(seconds)
    collections = within(record["collections"])
    return {
        "message_stored_ms": _quantiles([seconds for _, seconds in within(record["messages"])]),
        "transactions": {description: _quantiles(seconds)
                         for description, seconds in sorted(by_description.items())},
        "phases": {
            function: {phase: _quantiles([s[i] for s in seconds])
                       for i, phase in enumerate(("to_thread", "in_thread", "to_loop"))}
            for function, seconds in sorted(phases.items())},
        "collections": {
            str(generation): _quantiles([s for _, s, g in collections if g == generation])
            for generation in sorted({g for _, _, g in collections})},
    }


if __name__ == "__main__":
    main(sys.argv[1:])
