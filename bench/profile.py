"""
Profiling the server under test: sampling it with py-spy (a profiler that
attaches to a running process) and summarising where its time went, or
counting the instructions it runs under callgrind.
"""

import collections
import glob
import shutil
import subprocess

# Frames that enclose everything (the reactor loop, twistd, logging
# contexts, thread pool plumbing): left out of the inclusive list.
_PLUMBING = {"base.py", "twistd.py", "app.py", "_twistd_unix.py", "context.py", "log.py",
             "twistd", "threadpool.py", "_team.py", "threading.py", "_threadworker.py",
             "epollreactor.py", "posixbase.py", "tcp.py", "_convenience.py"}


def start(pid, seconds, output):
    """
    Sample C{pid} for C{seconds} into C{output} (collapsed stacks); None if
    py-spy is not installed.
    """
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return None
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", "250", "--format", "raw", "--nonblocking", "--output", output],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(path, top=15):
    """
    The functions with the most samples: C{(self, inclusive)} lists of
    C{(percent, function)}.
    """
    own, inclusive = collections.Counter(), collections.Counter()
    total = 0
    with open(path) as f:
        for stack, n in _stacks(f):
            total += n
            frames = [_short(frame) for frame in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                if _module(frame) not in _PLUMBING:
                    inclusive[frame] += n
    if not total:
        return [], []

    def percent(counter):
        return [(round(100 * n / total, 1), name) for name, n in counter.most_common(top)]

    return percent(own), percent(inclusive)


def _stacks(lines):
    """
    C{(stack, count)} for each sample line. py-spy sometimes reads a frame
    name holding a newline (a line of source instead of a function name),
    which splits its sample over two lines: those are joined again.
    """
    pending = ""
    for line in lines:
        line = pending + line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            pending = line + " "
            continue
        pending = ""
        if stack:
            yield stack, int(count)


def _module(short_frame):
    return short_frame.rpartition(" (")[2].rstrip(")")


def _short(frame):
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({module})" if module else name


def summarise_cprofile(path, top=15):
    """
    The functions of a cProfile statistics file with the most time of
    their own: C{(percent of all, function)}, most first.
    """
    import pstats

    stats = pstats.Stats(path).stats
    total = sum(entry[2] for entry in stats.values()) or 1
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)
    return [(round(100 * entry[2] / total, 1),
             f"{name} ({filename.rsplit('/', 1)[-1]})" if filename != "~" else name)
            for (filename, _, name), entry in ranked[:top]]


# Counting instructions: callgrind runs the server on a synthetic CPU, so
# what it counts is the same however busy the (shared) host is, where
# times and CPU seconds are not. It runs the server about 50 times slower:
# give such a run a low --rate.


def callgrind_command(command, output):
    """
    C{command} run under callgrind, its counts written to C{output}.N at
    each dump; C{None} if valgrind is not installed.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    return [valgrind, "--tool=callgrind", "--compress-strings=no",
            f"--callgrind-out-file={output}", *command]


def callgrind_zero(pid):
    """
    Start counting again from zero in the callgrind process C{pid}.
    """
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def callgrind_dump(pid, output):
    """
    The instructions the callgrind process C{pid} ran since it was last
    zeroed (its dump into C{output}.N says).
    """
    before = set(glob.glob(output + ".*"))
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    [dump] = set(glob.glob(output + ".*")) - before
    return instructions(dump)


def instructions(dump):
    """
    The instruction count a callgrind output file sums up.
    """
    with open(dump) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"{dump}: no summary line")
