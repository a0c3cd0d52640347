"""
Starting the server under test: chatd on SQLite or MariaDB, or the plain
Autobahn baseline, pinned to its own core, on a free loopback port.
"""

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench.profile import callgrind_command


def _bench_settings(port, data_dir, database_url, scrypt_log2_n):
    """
    chatd's configuration for a run: limits raised so that the generator,
    not the server's defences, is the only brake (rate limits, devices per
    user, the scrypt cost, which the rest scenario sets to the production
    default, where login cost is the point).
    """
    return {
        "server": {"listen": [f"tcp:{port}:interface=127.0.0.1:backlog=4096"],
                   "data_dir": data_dir},
        "database": {"url": database_url},
        "auth": {"scrypt_log2_n": scrypt_log2_n, "login_address_burst": 1000000,
                 "login_account_burst": 1000000, "register_address_burst": 1000000},
        "websocket": {"max_connections_per_user": 1000,
                      # On (the check is on the message path), never reached.
                      "messages_per_second": 10000000.0,
                      "messages_burst": 10000000},
    }


def _toml(settings):
    """
    Settings (section -> key -> str, number, bool or list) as TOML.
    """
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def parse_setting(text):
    """
    C{"section.key=value"} (value as TOML would read it: a number, true,
    false, or else a string) as C{(section, key, value)}.
    """
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise ValueError(f"{text!r}: use section.key=value")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return section, key, value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _pinned(cpu):
    def prepare():
        raise_file_limit()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return prepare


class Server:
    """
    A server process under test. C{kind} is C{sqlite}, C{mysql} or
    C{baseline}.
    """

    def __init__(self, kind, cpu=None, mysql_url="mysql://root@127.0.0.1:3306/chatd_bench",
                 scrypt_log2_n=10, settings=(), cprofile=None, callgrind=None, trace=None):
        """
        @param cprofile: for chatd, a file twistd writes cProfile statistics
            of the event-loop thread to when the server stops.
        @param callgrind: run the server under callgrind, its counts dumped
            to files named from this path (see L{bench.profile}).
        @param trace: for chatd, a file to write its timings to when the
            server stops (see L{bench.trace}).
        """
        self.kind = kind
        # The baseline is no twistd: it has nothing to profile with.
        self.cprofile = None if kind == "baseline" else cprofile
        self.callgrind = callgrind
        self.trace = None if kind == "baseline" else trace
        self.cpu = cpu
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = tempfile.mkdtemp(prefix=f"chatd-bench-{kind}-")
        self._mysql_url = mysql_url
        self._scrypt_log2_n = scrypt_log2_n
        self._settings = settings
        self.process = None

    def _command(self):
        if self.kind == "baseline":
            return [sys.executable, "-m", "bench.baseline", str(self.port)]
        if self.kind == "mysql":
            recreate_mysql_database(self._mysql_url)
            database_url = self._mysql_url
        else:
            database_url = "sqlite:///" + os.path.join(self.directory, "chatd.sqlite3")
        config = os.path.join(self.directory, "chatd.toml")
        with open(config, "w") as f:
            settings = _bench_settings(self.port, self.directory, database_url,
                                       self._scrypt_log2_n)
            for section, key, value in self._settings:
                settings.setdefault(section, {})[key] = value
            f.write(_toml(settings))
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        profiling = ([f"--profile={self.cprofile}", "--profiler=cprofile", "--savestats"]
                     if self.cprofile else [])
        runner = ["-m", "bench.trace", self.trace] if self.trace else [twistd]
        return [sys.executable, *runner, "--nodaemon", "--pidfile=", *profiling,
                "--logfile", os.path.join(self.directory, "chatd.log"), "chatd",
                "--config", config]

    def start(self, timeout=60):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        command = self._command()
        if self.callgrind:
            command = callgrind_command(command, self.callgrind)
            if command is None:
                raise RuntimeError("--callgrind needs valgrind (apt-get install valgrind)")
            timeout *= 10
        self.process = subprocess.Popen(
            command, cwd=root, env=env, preexec_fn=_pinned(self.cpu),
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.directory, "stderr"), "w"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.directory}")
            if self._ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server did not start in {timeout}s")

    def _ready(self):
        if self.kind == "baseline":
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def rss_bytes(self):
        return process_rss(self.process.pid)

    def cpu_seconds(self):
        return sum(process_cpu_split(self.process.pid))

    def cpu_split(self):
        """
        The server's CPU seconds so far: (user, kernel, event loop), the
        event loop being its main thread (the rest, its database threads).
        """
        pid = self.process.pid
        user, kernel = process_cpu_split(pid)
        return user, kernel, sum(process_cpu_split(pid, pid))


def process_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def process_cpu_split(pid, tid=None):
    """
    The CPU seconds process C{pid} (or its thread C{tid}) spent in user
    space and in the kernel.
    """
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def recreate_mysql_database(url):
    import pymysql

    from chatd.config import parse_database_url

    _, p = parse_database_url(url)
    connection = pymysql.connect(host=p["host"], port=p["port"], user=p["user"],
                                 password=p["password"], autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{p['database']}`")
            cursor.execute(f"CREATE DATABASE `{p['database']}` CHARACTER SET utf8mb4"
                           " COLLATE utf8mb4_unicode_ci")
    finally:
        connection.close()
