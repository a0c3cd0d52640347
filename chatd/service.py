"""
The service tree: children start in order, each waiting for the one before,
and stop in reverse order the same way, so that listeners close before the
database they use.
"""

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.storage.migrations import prepare_database

log = Logger()


class SequentialService(MultiService):
    """
    A L{MultiService} whose children start one after another and stop in
    reverse, each waiting for the previous one's Deferred.

    If a child fails to start, C{on_start_failure} is called with the
    failure and no further child is started.
    """

    def __init__(self, on_start_failure=None):
        super().__init__()
        self._on_start_failure = on_start_failure
        self.started = Deferred()

    def startService(self):
        Service.startService(self)
        self._starting = Deferred.fromCoroutine(self._start_children())
        self._starting.addCallbacks(self.started.callback, self._start_failed)

    async def _start_children(self):
        for child in list(self):
            if not self.running:
                return
            await maybeDeferred(child.startService)

    def _start_failed(self, failure):
        if self._on_start_failure is not None:
            self._on_start_failure(failure)
        self.started.errback(failure)

    def stopService(self):
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self):
        for child in reversed(list(self)):
            if child.running:
                try:
                    await maybeDeferred(child.stopService)
                except Exception:
                    log.failure("Error stopping {child}", child=child)


class DatabaseService(Service):
    """
    Owns the L{Database}: migrates it on start, checkpoints its log every
    so often where the engine does so in the background (its
    C{checkpoint_interval}; L{Database.checkpoint}), and closes it on stop
    once the work in flight is done.

    @param clock: an L{IReactorTime}, for the checkpoints.
    """

    _checkpoints = None

    def __init__(self, database, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.database = database
        self._clock = clock

    def startService(self):
        super().startService()
        return Deferred.fromCoroutine(self._prepare())

    async def _prepare(self):
        log.info("Opening {what}", what=self.database.engine.describe())
        version = await prepare_database(self.database)
        # Connect every pool now (the message writer's, the search
        # index's): left to the first message, a new MariaDB connection
        # (20-100 ms) held up every message behind it.
        await self.database.ping()
        log.info("Database at schema version {version}", version=version)
        interval = self.database.engine.checkpoint_interval
        if self.running and interval:
            self._checkpoints = LoopingCall(self._checkpoint)
            self._checkpoints.clock = self._clock
            self._checkpoints.start(interval, now=False)

    async def _checkpoint(self):
        try:
            await self.database.checkpoint()
        except Exception:
            # SQLite's automatic checkpoints on the writer still run.
            log.failure("Checkpointing the database failed")

    def stopService(self):
        super().stopService()
        if self._checkpoints is not None and self._checkpoints.running:
            self._checkpoints.stop()
        return Deferred.fromCoroutine(self.database.close())


class ListeningService(Service):
    """
    Listens on one endpoint while running; start-up waits until the port is
    open (or fails with the reason it could not be).

    @ivar port: the L{IListeningPort}, while listening.
    """

    port = None

    def __init__(self, endpoint, factory, description):
        self._endpoint = endpoint
        self._factory = factory
        self.description = description

    def startService(self):
        super().startService()
        d = self._endpoint.listen(self._factory)
        d.addCallback(self._listening)
        return d

    def _listening(self, port):
        self.port = port
        log.info("Listening on {description}", description=self.description)

    def stopService(self):
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return port.stopListening()
