"""
C{twistd chatd}: command-line options and the service tree.
"""

import gc
import os
import sys

from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from chatd import __version__
from chatd.config import ConfigError, load_config, override, parse_database_url
from chatd.indexer import SearchIndexer
from chatd.parts import build_parts
from chatd.service import DatabaseService, ListeningService, SequentialService
from chatd.storage import open_database
from chatd.stores.search import SearchStore
from chatd.web.site import build_root, build_site, max_body_bytes
from chatd.ws.conversations import build_conversation_frames
from chatd.ws.factory import build_realtime

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "chatd: a chat server speaking the go-chat protocol over REST and "
        "WebSocket. Options given here override the configuration file."
    )
    optParameters = [
        ["config", "c", None,
         "TOML configuration file (see etc/chatd.toml for every key)."],
        ["data-dir", "d", None,
         "Directory for the SQLite database, stored files and secrets "
         "[default: chatd-data]."],
        ["database", None, None,
         "Database URL: sqlite:///PATH or "
         "mysql://USER:PASSWORD@HOST:PORT/NAME [default: DATA_DIR/chatd.sqlite3]."],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint):
        """
        Listen on a Twisted endpoint, e.g. tcp:8888 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem; repeatable
        [default: tcp:8888].
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_version(self):
        """
        Print chatd's version and exit.
        """
        print(f"chatd {__version__}")
        sys.exit(0)

    def postOptions(self):
        changes = {}
        if self["listen"]:
            changes["server_listen"] = list(self["listen"])
        if self["data-dir"] is not None:
            changes["server_data_dir"] = self["data-dir"]
        if self["database"] is not None:
            changes["database_url"] = self["database"]
        try:
            config = load_config(self["config"])
            config = override(config, **changes)
            parse_database_url(config.database_url)
        except ConfigError as e:
            raise usage.UsageError(str(e))
        self.chatd_config = config


def build_service(config, reactor, on_start_failure=None):
    """
    Wire chatd's parts for C{config}: the database, then one listener per
    endpoint. Children start in that order and stop in reverse.
    """
    root_service = SequentialService(on_start_failure)
    # The database, files and secrets are the service's alone.
    os.makedirs(config.server.data_dir, mode=0o700, exist_ok=True)
    database = open_database(config, reactor)
    parts = build_parts(config, database, reactor)
    DatabaseService(database, reactor).setServiceParent(root_service)
    realtime = build_realtime(config, database, reactor, parts)
    SearchIndexer(SearchStore(database), reactor,
                  config.messages.search_index_interval,
                  writer=realtime.writer).setServiceParent(root_service)
    realtime.writer.setServiceParent(root_service)
    realtime.hub.setServiceParent(root_service)
    realtime.keepalive.setServiceParent(root_service)
    realtime.sessions.setServiceParent(root_service)
    build_conversation_frames(config, realtime.hub, realtime.factory, parts,
                              reactor).setServiceParent(root_service)
    realtime.calls.setServiceParent(root_service)
    root = build_root(config, database, reactor, parts)
    root.putChild(b"socket.io", realtime.resource)
    site = build_site(root, reactor, max_body=max_body_bytes(config))
    for description in config.server.listen:
        endpoint = endpoints.serverFromString(reactor, description)
        ListeningService(endpoint, site, description).setServiceParent(root_service)
    root_service.parts = parts
    root_service.realtime = realtime
    return root_service


def _fail_start(reactor, failure):
    """
    Start-up failed: say why, stop, and exit non-zero.
    """
    log.failure("chatd could not start", failure)
    message = failure.getErrorMessage() or failure.type.__name__
    sys.stderr.write(f"chatd: could not start: {message}\n")
    sys.stderr.flush()
    reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
    reactor.stop()


# glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def limit_malloc_arenas(count=2):
    """
    Let glibc's malloc keep at most C{count} arenas, unless the environment
    sets C{MALLOC_ARENA_MAX}. By default each thread that allocates gets an
    arena of its own and keeps what it freed there: the database and scrypt
    threads held about 5 MB more after a burst of logins. Call it before
    threads start; elsewhere than glibc it does nothing.

    @return: True if the limit was set.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        # The running process's own symbols: glibc's mallopt, if any.
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


# How long (seconds) CPython lets a thread run before handing the
# interpreter lock to one that waits for it; its default is 0.005. On one
# core, a database thread whose reply has arrived waits that long behind a
# busy event loop at every hand-over, and the message writer makes several
# per batch. With the group commit starting the next batch before handing
# out results (chatd/batching.py), 0.2 ms took MariaDB's acknowledged
# messages/s up by 15-20%, and SQLite's no lower; alone it did nothing
# (docs/benchmarks.md, "Fifth round").
THREAD_SWITCH_INTERVAL = 0.0002


def freeze_startup_heap(_=None):
    """
    Collect garbage once, then move every object still alive (modules,
    classes, configuration, services: what start-up made and the daemon
    keeps) out of the collector's reach. CPython's full collections walk
    every tracked object: with start-up's 80,000 in the way, one held the
    event loop for 35-40 ms and put p99 at 5,000 msgs/s well over the
    target; without them it takes 1-3 ms (docs/benchmarks.md, "Seventh
    round"). Start-up's cyclic garbage made after this call is never
    collected, so call it once the daemon is up.
    """
    gc.collect()
    gc.freeze()


def makeService(options):
    from twisted.internet import reactor

    limit_malloc_arenas()
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL)
    service = build_service(
        options.chatd_config, reactor,
        on_start_failure=lambda failure: _fail_start(reactor, failure))
    service.started.addCallback(freeze_startup_heap)
    return service
