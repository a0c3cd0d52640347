"""
A WebSocket session lasts only as long as the token it was opened with.

A connection is authenticated once, at its upgrade. Its token can later be
revoked (logout), revoked with every other token its user had (a password
change), or expire. L{Sessions} closes such connections with code
L{CLOSE_TOKEN_ENDED}:

  - on a revocation or password change, at once: L{chatd.handlers.accounts}
    publishes them as events;
  - on expiry, at the next sweep, which runs every C{interval} seconds.

An upgrade whose token was verified just before a revocation committed,
and which attaches just after it, is closed too: the revocations of the
last C{remember} seconds are checked as connections attach.
"""

from twisted.application.internet import TimerService
from twisted.logger import Logger

from chatd import events as event_names

log = Logger()

CLOSE_TOKEN_ENDED = 4001
REVOKED = "the token was revoked; sign in again"
EXPIRED = "the token has expired; sign in again"


class Sessions(TimerService):
    """
    @param hub: the L{chatd.hub.Hub}; its connections have C{identity} (an
        L{chatd.auth.tokens.Identity}) and C{end_session(reason)}.
    @param events: the L{chatd.events.Events} revocations are published to.
    @param clock: an L{IReactorTime}.
    @param interval: seconds between expiry sweeps.
    @param remember: seconds a revocation is checked against new connections.
    """

    def __init__(self, hub, events, clock, interval=30, remember=300):
        super().__init__(interval, self.sweep)
        self.clock = clock
        self._hub = hub
        self._remember = remember
        # token id -> when revoked; user id -> (issued before, when revoked)
        self._revoked_tokens = {}
        self._revoked_before = {}
        events.subscribe(event_names.TOKEN_REVOKED, self._token_revoked)
        events.subscribe(event_names.TOKENS_REVOKED, self._tokens_revoked)
        hub.add_observer(on_attach=self._attached)

    def _token_revoked(self, user_id, token_id):
        self._revoked_tokens[token_id] = self.clock.seconds()
        self._end_revoked(self._hub.connections_of(user_id))

    def _tokens_revoked(self, user_id, issued_before):
        self._revoked_before[user_id] = (issued_before, self.clock.seconds())
        self._end_revoked(self._hub.connections_of(user_id))

    def _attached(self, connection):
        # Not from within the Hub's attach: the connection finishes
        # opening first.
        if self._is_revoked(connection.identity):
            self.clock.callLater(0, _end, connection, REVOKED)

    def _end_revoked(self, connections):
        for connection in connections:
            if self._is_revoked(connection.identity):
                _end(connection, REVOKED)

    def _is_revoked(self, identity):
        if identity.token_id in self._revoked_tokens:
            return True
        before, _ = self._revoked_before.get(identity.user_id, (0, None))
        return identity.issued_ms < before

    def sweep(self):
        """
        Close the connections whose token has expired, and forget the
        revocations older than C{remember} seconds.
        """
        now = self.clock.seconds()
        horizon = now - self._remember
        self._revoked_tokens = {token_id: when for token_id, when
                                in self._revoked_tokens.items() if when > horizon}
        self._revoked_before = {user_id: entry for user_id, entry
                                in self._revoked_before.items() if entry[1] > horizon}
        for connection in self._hub.all_connections():
            if connection.identity.expires_at <= now:
                _end(connection, EXPIRED)


def _end(connection, reason):
    try:
        connection.end_session(reason)
    except Exception:
        log.failure("Ending the session of {connection!r} failed", connection=connection)
