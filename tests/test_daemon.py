"""
Tests for chatd as a whole: the twistd plugin, the service tree, /healthz
over HTTP and TLS, start-up failures, and a clean stop.
"""

import gc
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref

from twisted.application.service import IServiceMaker, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.service import DatabaseService, ListeningService, SequentialService
from chatd.tap import Options, build_service
from tests.helpers import (
    base_url,
    http_client,
    make_tls_files,
    start_server,
    test_config,
    tls_listen,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def _twistd():
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    return script if os.path.exists(script) else shutil.which("twistd")


def _environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OptionsTests(SynchronousTestCase):
    def parse(self, *args):
        options = Options()
        options.parseOptions(list(args))
        return options.chatd_config

    def test_defaults(self):
        config = self.parse()
        self.assertEqual(config.server.listen, ("tcp:8888",))

    def test_listen_repeatable(self):
        config = self.parse("--listen", "tcp:1", "-l", "tcp:2")
        self.assertEqual(config.server.listen, ("tcp:1", "tcp:2"))

    def test_data_dir_and_database(self):
        config = self.parse("--data-dir", "/srv/c", "--database", "mysql://u@h/d")
        self.assertEqual(config.server.data_dir, "/srv/c")
        self.assertEqual(config.database_url, "mysql://u@h/d")

    def test_command_line_overrides_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[server]\nlisten = ["tcp:1"]\ndata_dir = "/a"\n')
        config = self.parse("--config", path, "--listen", "tcp:2")
        self.assertEqual(config.server.listen, ("tcp:2",))
        self.assertEqual(config.server.data_dir, "/a")

    def test_bad_config_is_usage_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[database]\npool_size = -2\n")
        error = self.assertRaises(usage.UsageError, self.parse, "--config", path)
        self.assertIn(path, str(error))
        self.assertIn("database.pool_size", str(error))

    def test_bad_database_url(self):
        error = self.assertRaises(usage.UsageError, self.parse, "--database", "mysql://nohost")
        self.assertIn("mysql://nohost", str(error))

    def test_unknown_option(self):
        self.assertRaises(usage.UsageError, self.parse, "--lisen", "tcp:1")


class PluginTests(SynchronousTestCase):
    def test_plugin_found(self):
        """
        twistd finds chatd's ServiceMaker.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("chatd", makers)
        self.assertIs(makers["chatd"].options, Options)

    def test_help_lists_every_option(self):
        result = subprocess.run(
            [_twistd(), "chatd", "--help"], env=_environment(), cwd=self.mktemp_dir(),
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ["--config", "--listen", "--data-dir", "--database", "--version"]:
            self.assertIn(option, result.stdout)

    def mktemp_dir(self):
        path = self.mktemp()
        os.makedirs(path)
        return path


class _Recorder(Service):
    def __init__(self, name, log, start_result=None, stop_result=None):
        self.name, self.log = name, log
        self.start_result, self.stop_result = start_result, stop_result

    def startService(self):
        super().startService()
        self.log.append(f"start {self.name}")
        return self.start_result

    def stopService(self):
        super().stopService()
        self.log.append(f"stop {self.name}")
        return self.stop_result


class SequentialServiceTests(SynchronousTestCase):
    def test_start_in_order_waiting(self):
        log = []
        gate = Deferred()
        parent = SequentialService()
        _Recorder("db", log, start_result=gate).setServiceParent(parent)
        _Recorder("listener", log).setServiceParent(parent)
        parent.startService()
        self.assertEqual(log, ["start db"])
        gate.callback(None)
        self.assertEqual(log, ["start db", "start listener"])
        self.successResultOf(parent.started)

    def test_stop_in_reverse_waiting(self):
        log = []
        gate = Deferred()
        parent = SequentialService()
        _Recorder("db", log).setServiceParent(parent)
        _Recorder("listener", log, stop_result=gate).setServiceParent(parent)
        parent.startService()
        stopped = parent.stopService()
        self.assertEqual(log[-1], "stop listener")
        self.assertNoResult(stopped)
        gate.callback(None)
        self.assertEqual(log[-2:], ["stop listener", "stop db"])
        self.successResultOf(stopped)

    def test_start_failure_stops_the_chain(self):
        log, failures = [], []
        parent = SequentialService(on_start_failure=failures.append)
        _Recorder("db", log, start_result=Deferred()).setServiceParent(parent)
        parent.startService()
        list(parent)[0].start_result.errback(RuntimeError("no database"))
        self.assertEqual(log, ["start db"])
        self.assertEqual(failures[0].getErrorMessage(), "no database")
        self.failureResultOf(parent.started, RuntimeError)

    def test_build_service_order(self):
        """
        The database starts first, then the message writer and the Hub,
        then the listeners; there is one listener per endpoint.
        """
        from twisted.internet.testing import MemoryReactorClock

        from chatd.batching import BatchWriter
        from chatd.hub import Hub

        config = test_config(self, server_listen=["tcp:1", "tcp:2"])
        service = build_service(config, MemoryReactorClock())
        children = list(service)
        kinds = [type(c) for c in children]
        self.assertIsInstance(children[0], DatabaseService)
        self.assertLess(kinds.index(BatchWriter), kinds.index(Hub))
        self.assertEqual([c.description for c in children[-2:]], ["tcp:1", "tcp:2"])
        self.assertTrue(all(isinstance(c, ListeningService) for c in children[-2:]))
        self.assertEqual(kinds.count(ListeningService), 2)
        # The search indexer stops after the writer it keeps out of the way of.
        from chatd.indexer import SearchIndexer

        indexer = children[kinds.index(SearchIndexer)]
        self.assertIs(indexer._writer, children[kinds.index(BatchWriter)])
        self.assertLess(kinds.index(SearchIndexer), kinds.index(BatchWriter))
        self.addCleanup(children[0].database._pool.close)


class RunningServerTests(TestCase):
    async def test_healthz(self):
        service = await start_server(self, test_config(self))
        response = await http_client().get(base_url(service) + "/healthz")
        self.assertEqual(response.code, 200)
        body = json.loads(await response.text())
        self.assertEqual((body["status"], body["database"]), ("ok", "ok"))

    async def test_healthz_database_down(self):
        service = await start_server(self, test_config(self))
        database = next(c for c in service if isinstance(c, DatabaseService)).database
        await database.close()
        response = await http_client().get(base_url(service) + "/healthz")
        self.assertEqual(response.code, 503)
        self.assertEqual(json.loads(await response.text())["database"], "down")

    async def test_healthz_over_tls(self):
        """
        An ssl: endpoint serves HTTPS; the client checks the certificate
        against the test CA and the host name with service-identity.
        """
        ca, cert, key = make_tls_files(self.mktemp())
        service = await start_server(
            self, test_config(self, server_listen=[tls_listen(cert, key)]))
        client = http_client(ca)
        response = await client.get(base_url(service, "https", "localhost") + "/healthz")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(await response.text())["status"], "ok")

    async def test_tls_wrong_host_name_refused(self):
        """
        The same certificate does not pass for another host name.
        """
        from OpenSSL.SSL import Error as TLSError
        from twisted.web._newclient import ResponseNeverReceived

        ca, cert, key = make_tls_files(self.mktemp(), hostname="chat.example")
        service = await start_server(
            self, test_config(self, server_listen=[tls_listen(cert, key)]))
        client = http_client(ca)
        with self.assertRaises(ResponseNeverReceived) as raised:
            await client.get(base_url(service, "https", "localhost") + "/healthz")
        self.assertTrue(any(r.check(TLSError) or "verify" in str(r.value).lower()
                            or "hostname" in str(r.value).lower()
                            for r in raised.exception.reasons))

    async def test_stop_closes_listeners_and_database(self):
        service = await start_server(self, test_config(self))
        url = base_url(service) + "/healthz"
        database = next(c for c in service if isinstance(c, DatabaseService)).database
        await service.stopService()
        with self.assertRaises(ConnectionRefusedError):
            await http_client().get(url)
        with self.assertRaises(RuntimeError):
            await database.ping()
        self.assertFalse(service.running)


class DaemonProcessTests(SynchronousTestCase):
    """
    twistd chatd as a real process.
    """

    def run_dir(self):
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def spawn(self, *args):
        directory = self.run_dir()
        log_path = os.path.join(directory, "out.log")
        log_file = open(log_path, "w")
        self.addCleanup(log_file.close)
        process = subprocess.Popen(
            [_twistd(), "--nodaemon", "--pidfile=", "chatd", *args],
            cwd=directory, env=_environment(), stdout=log_file, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process, directory, log_path

    def wait_healthy(self, url, process, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status, json.loads(response.read())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.fail(f"chatd did not answer {url}")

    def test_start_and_clean_stop(self):
        """
        twistd -n chatd starts on SQLite with no configuration, answers
        /healthz, and on SIGTERM closes its port, shuts down cleanly and
        ends by the signal (as twistd does; systemd counts that a clean stop).
        """
        port = _free_port()
        process, directory, log_path = self.spawn(
            "--listen", f"tcp:{port}:interface=127.0.0.1")
        status, body = self.wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        self.assertEqual((status, body["status"]), (200, "ok"))
        self.assertTrue(os.path.exists(os.path.join(directory, "chatd-data",
                                                    "chatd.sqlite3")))
        # The data directory is the service's alone, whatever the umask.
        self.assertEqual(os.stat(os.path.join(directory, "chatd-data")).st_mode & 0o777,
                         0o700)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), -signal.SIGTERM)
        with open(log_path) as f:
            log = f.read()
        self.assertIn("Server Shut Down", log)
        self.assertLess(log.index(f"Port {port} Closed"), log.index("Server Shut Down"))
        self.assertNotIn("Traceback", log)

    def test_newer_database_refused(self):
        """
        A database newer than the code stops start-up with a clear message
        and a non-zero exit, before anything listens.
        """
        data_dir = self.run_dir()
        connection = sqlite3.connect(os.path.join(data_dir, "chatd.sqlite3"))
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (999)")
        connection.commit()
        connection.close()
        port = _free_port()
        process, _, log_path = self.spawn(
            "--data-dir", data_dir, "--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(process.wait(timeout=60), 1)
        with open(log_path) as f:
            log = f.read()
        self.assertIn("schema version 999", log)
        self.assertNotIn(f"Listening on tcp:{port}", log)

    def test_bad_config_exits_with_message(self):
        directory = self.run_dir()
        path = os.path.join(directory, "chatd.toml")
        with open(path, "w") as f:
            f.write("[server]\nlisten = 8888\n")
        result = subprocess.run(
            [_twistd(), "--nodaemon", "chatd", "--config", path], cwd=directory,
            env=_environment(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"{path}: server.listen: must be a list of strings",
                      result.stdout + result.stderr)


class SystemdUnitTests(SynchronousTestCase):
    """
    etc/chatd.service is the hardened unit the README describes.
    """

    def directives(self):
        values = {}
        with open(os.path.join(ROOT, "etc", "chatd.service")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "[")):
                    key, _, value = line.partition("=")
                    values.setdefault(key, []).append(value)
        return values

    def test_hardening(self):
        unit = self.directives()
        for key, value in [("DynamicUser", "yes"), ("User", "chatd"),
                           ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                           ("StateDirectory", "chatd"), ("Restart", "on-failure"),
                           ("PrivateTmp", "yes"), ("ProtectHome", "yes")]:
            self.assertEqual(unit.get(key), [value], key)

    def test_system_call_filter_lets_priorities_be_lowered(self):
        """
        The filter refuses @resources, which holds setpriority, but gives
        that back (the search connection's thread lowers its own
        priority), and a refused call fails instead of killing chatd
        (systemd's default). Filters apply in order: the last one adds
        setpriority back.
        """
        unit = self.directives()
        self.assertEqual(unit["SystemCallFilter"],
                         ["@system-service", "~@privileged @resources", "setpriority"])
        self.assertEqual(unit["SystemCallErrorNumber"], ["EPERM"])

    def test_runs_twistd_in_the_foreground_with_the_config(self):
        (command,) = self.directives()["ExecStart"]
        words = command.split()
        self.assertTrue(words[0].endswith("/twistd"))
        self.assertIn("--nodaemon", words)
        self.assertEqual(words[words.index("chatd") + 1:words.index("chatd") + 3],
                         ["--config", "/etc/chatd/chatd.toml"])
        self.assertEqual(words[words.index("--data-dir") + 1], "/var/lib/chatd")

    def test_command_line_is_accepted(self):
        """
        The unit's chatd options parse (with a config file standing in for
        /etc/chatd/chatd.toml).
        """
        (command,) = self.directives()["ExecStart"]
        args = command.split()
        args = args[args.index("chatd") + 1:]
        sample = os.path.join(ROOT, "etc", "chatd.toml")
        args[args.index("/etc/chatd/chatd.toml")] = sample
        options = Options()
        options.parseOptions(args)
        self.assertEqual(options.chatd_config.server.data_dir, "/var/lib/chatd")


class ThreadSwitchIntervalTests(SynchronousTestCase):
    def test_daemon_shortens_it(self):
        """
        C{twistd chatd} lets the database threads take the interpreter lock
        after 0.2 ms of the event loop's bytecode instead of CPython's 5 ms.
        """
        from chatd import tap

        intervals = []
        self.patch(sys, "setswitchinterval", intervals.append)
        self.patch(tap, "limit_malloc_arenas", lambda: False)
        service = SequentialService()
        self.patch(tap, "build_service", lambda *args, **kwargs: service)
        self.patch(tap, "freeze_startup_heap", lambda _: None)
        options = tap.Options()
        options.parseOptions([])
        self.assertIs(tap.makeService(options), service)
        self.assertEqual(intervals, [0.0002])


class StartupHeapTests(SynchronousTestCase):
    def test_frozen_once_started(self):
        """
        The daemon freezes the heap when its services have started, not
        before.
        """
        from chatd import tap

        frozen = []
        self.patch(tap, "limit_malloc_arenas", lambda: False)
        self.patch(sys, "setswitchinterval", lambda interval: None)
        service = SequentialService()
        self.patch(tap, "build_service", lambda *args, **kwargs: service)
        self.patch(tap, "freeze_startup_heap", frozen.append)
        options = tap.Options()
        options.parseOptions([])
        tap.makeService(options)
        self.assertEqual(frozen, [])
        service.started.callback(None)
        self.assertEqual(frozen, [None])

    def test_collects_then_freezes(self):
        """
        Garbage cycles are collected first; what is alive is moved out of
        the collector's generations.
        """
        from chatd.tap import freeze_startup_heap

        class Node:
            pass

        alive = Node()
        garbage = Node()
        garbage.self = garbage
        garbage_ref = weakref.ref(garbage)
        del garbage
        self.addCleanup(gc.unfreeze)
        freeze_startup_heap()
        self.assertIsNone(garbage_ref())
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertFalse(any(obj is alive for obj in gc.get_objects()))


class MallocArenaTests(SynchronousTestCase):
    def test_environment_wins(self):
        """
        An operator's MALLOC_ARENA_MAX is left alone.
        """
        from chatd.tap import limit_malloc_arenas

        self.patch(os, "environ", {"MALLOC_ARENA_MAX": "8"})
        self.assertFalse(limit_malloc_arenas())

    def test_set_with_glibc(self):
        import platform

        from chatd.tap import limit_malloc_arenas

        self.patch(os, "environ", {})
        self.assertEqual(limit_malloc_arenas(),
                         sys.platform.startswith("linux")
                         and platform.libc_ver()[0] == "glibc")
