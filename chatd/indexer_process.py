"""
The search indexer in a process of its own.

In the daemon's process the indexer's Python work (tokenizing messages,
building and reading its statements) holds the interpreter lock that the
event loop and the message writer need, whatever its thread's CPU
priority: on MariaDB it took p99 at 5,000 msgs/s from 3.7 ms to 6.2 ms
(docs/benchmarks.md, "Eighth round"). In a process of its own it shares
only the cores, at a lower priority (L{BACKGROUND_NICE}).

L{IndexerProcess} is the daemon's side: a service that starts
C{python -m chatd.indexer_process}, hands it the database settings on
its standard input (the password stays off its command line), relays
what it logs, starts it again if it exits, and stops it by closing its
standard input. L{main} is the child's side: a L{SearchIndexer} over its
own connections, until its standard input closes.
"""

import json
import os
import signal
import sys

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

import chatd

log = Logger()

# Seconds to wait before starting an indexer that exited on its own.
RESTART_DELAY = 5.0
# Seconds a stopping indexer gets to finish its batch before it is killed.
STOP_TIMEOUT = 10.0


def indexer_settings(config):
    """
    What the child needs of C{config} (a L{chatd.config.Config}).
    """
    return {
        "database_url": config.database_url,
        "password": config.database.password,
        "interval": config.messages.search_index_interval,
    }


class _IndexerProtocol(protocol.ProcessProtocol):
    def __init__(self, settings, ended):
        self._settings = settings
        self._ended = ended
        self._buffer = b""

    def connectionMade(self):
        self.transport.write(json.dumps(self._settings).encode("utf-8") + b"\n")

    def errReceived(self, data):
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            log.info("search indexer: {line}", line=line.decode("utf-8", "replace"))

    def processEnded(self, reason):
        if self._buffer:
            self.errReceived(b"\n")
        self._ended(reason)


class IndexerProcess(Service):
    """
    Runs the search indexer as a child process while the service runs.

    @param settings: L{indexer_settings}.
    @param reactor: an L{IReactorProcess} and L{IReactorTime}.

    @ivar transport: the running child's process transport, or None.
    """

    transport = None

    def __init__(self, settings, reactor, restart_delay=RESTART_DELAY,
                 stop_timeout=STOP_TIMEOUT):
        self._settings = settings
        self._reactor = reactor
        self._restart_delay = restart_delay
        self._stop_timeout = stop_timeout
        self._restart = None
        self._stopped = None

    def startService(self):
        super().startService()
        self._spawn()

    def _spawn(self):
        self._restart = None
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__)))
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=package_parent + (os.pathsep + path if path else ""))
        self.transport = self._reactor.spawnProcess(
            _IndexerProtocol(self._settings, self._ended), sys.executable,
            [sys.executable, "-m", "chatd.indexer_process"], env=env,
            childFDs={0: "w", 1: "r", 2: "r"})
        log.info("Search indexer started (pid {pid})", pid=self.transport.pid)

    def _ended(self, reason):
        self.transport = None
        if self._stopped is not None:
            stopped, self._stopped = self._stopped, None
            stopped.callback(None)
            return
        log.error("The search indexer exited ({why}); starting it again in {delay} s",
                  why=reason.getErrorMessage(), delay=self._restart_delay)
        if self.running:
            self._restart = self._reactor.callLater(self._restart_delay, self._spawn)

    def stopService(self):
        """
        Close the child's standard input and wait until it has finished
        its batch and exited; kill it if it takes over C{stop_timeout}.
        """
        super().stopService()
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        if self.transport is None:
            return succeed(None)
        self._stopped = Deferred()
        transport = self.transport
        transport.closeStdin()
        kill = self._reactor.callLater(self._stop_timeout, self._kill, transport)
        return self._stopped.addBoth(lambda result: kill.active() and kill.cancel())

    def _kill(self, transport):
        log.warn("The search indexer did not stop in time; killing it")
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass


class _StopOnClose(protocol.Protocol):
    def __init__(self, stop):
        self._stop = stop

    def connectionLost(self, reason):
        self._stop()


def main():
    """
    The child: read the settings (one JSON line) from standard input, then
    index every C{interval} seconds until standard input closes.
    """
    from twisted.internet import reactor, stdio
    from twisted.logger import FileLogObserver, eventAsText, globalLogBeginner

    from chatd.config import parse_database_url
    from chatd.indexer import SearchIndexer
    from chatd.storage import database_for
    from chatd.storage.engines import BACKGROUND_NICE, create_engine
    from chatd.stores.search import SearchStore

    settings = json.loads(sys.stdin.buffer.readline())
    os.setpriority(os.PRIO_PROCESS, 0, BACKGROUND_NICE)
    # The daemon's stop (or its death) closes standard input; a signal
    # from the terminal or the service manager is the daemon's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The daemon's log gives the time and where the lines came from.
    globalLogBeginner.beginLoggingTo(
        [FileLogObserver(sys.stderr, lambda event: eventAsText(
            event, includeTimestamp=False, includeSystem=False) + "\n")],
        redirectStandardIO=False)
    kind, parameters = parse_database_url(settings["database_url"])
    database = database_for(create_engine(kind, parameters, password=settings["password"]),
                            reactor)
    indexer = SearchIndexer(SearchStore(database), reactor, settings["interval"])

    async def stop():
        try:
            await indexer.stopService()
            await database.close()
        finally:
            reactor.stop()

    def on_close():
        Deferred.fromCoroutine(stop())

    stdio.StandardIO(_StopOnClose(on_close), stdout=1, reactor=reactor)
    reactor.callWhenRunning(indexer.startService)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
