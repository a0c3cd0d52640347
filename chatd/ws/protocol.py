"""
The WebSocket protocol at C{/socket.io}.

Wire protocol (docs/protocol.md has every detail): binary WebSocket
messages, each one protobuf C{protocol.Message} (proto/message.proto),
go-chat compatible. The C{type} field picks the frame kind:

  client -> server
    ""          a chat message (contentType 1-5 stored, 6+ to the calls)
    "heatbeat"  ping; answered with {type: "heatbeat", content: "pong"}
    "webrtc"    calls (chatd.calls): dial, accept, cancel, reject, hang up,
                SDP/ICE and media, only between the parties of a call
    "sync"      replay messages after C{sinceId}
  server -> client
    ""          a delivered message (live, another device's, or replayed)
    "heatbeat"  pong
    "webrtc"    ring, accept, stop ringing, reject/busy, hang up, and the
                other party's SDP/ICE and media
    "ack"       a message is durable: C{clientMsgId}, C{id}, C{createAt}
    "error"     a frame was refused: C{errorCode}, C{content}, C{clientMsgId}
    "sync"      C{content "done"}: the replay is complete up to C{id}

The upgrade is authenticated before the 101 (token query parameter,
Authorization header, or cookie from an allowed Origin). Protocols only
translate: frames to Hub and handler calls, results to frames; no SQL here.
"""

import collections

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

from chatd.auth.tokens import token_from_headers
from chatd.errors import ChatError, InternalError, TooManyRequests, Unauthorized
from chatd.protocol import frames
from chatd.ws.compact import CompactConnection
from chatd.ws.framing import LeanFraming, server_frame
from chatd.ws.keepalive import KeepAliveConnection
from chatd.ws.sessions import CLOSE_TOKEN_ENDED

# Close codes chatd uses besides the standard ones (1000 normal, 1001 going
# away, 1009 message too big).
CLOSE_ABUSIVE = 1008
CLOSE_SLOW_READER = 4008
CLOSE_TOO_MANY_CONNECTIONS = 4029

# Frame types and the method that handles each.
_HANDLERS = {
    frames.MESSAGE: "handle_message",
    frames.HEARTBEAT: "handle_heartbeat",
    frames.WEBRTC: "handle_webrtc",
    frames.SYNC: "handle_sync",
}


@implementer(IPushProducer)
class OutgoingBuffer:
    """
    The producer a connection registers with its transport: the transport
    pauses it when its own buffer is full. While paused, bytes still sent
    are counted; past C{limit} the connection is cut off.
    """

    def __init__(self, limit, on_overflow):
        self.limit = limit
        self.paused = False
        self.backlog = 0
        self._on_overflow = on_overflow
        self._waiters = []

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.backlog = 0
        self._wake()

    def stopProducing(self):
        self._wake()

    def release(self):
        """
        Fire every L{wait_writable} Deferred now: nobody should wait to
        send any more (the server is stopping).
        """
        self._wake()

    def _wake(self):
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def account(self, size):
        """
        Count C{size} bytes about to be sent; return False (after calling
        C{on_overflow}) if they would take the backlog past the limit.
        """
        if not self.paused:
            return True
        self.backlog += size
        if self.backlog > self.limit:
            self._on_overflow()
            return False
        return True

    def wait_writable(self):
        if not self.paused:
            return succeed(None)
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter


class ChatServerProtocol(CompactConnection, KeepAliveConnection, LeanFraming,
                         WebSocketServerProtocol):
    """
    One client connection. Its factory (L{chatd.ws.factory.ChatWebSocketFactory})
    provides C{hub}, C{messaging}, C{tokens}, C{users}, C{settings}.

    @ivar user: the authenticated L{chatd.stores.users.User}.
    @ivar connected: True while frames can be sent to it.
    """

    _log = Logger()
    user = None
    connected = False
    _attached = False
    # Per-connection state, on the class while it has its first value (an
    # idle connection holds as little as it can; see chatd.ws.compact).
    _pending = 0
    _idle_waiters = ()
    _refusals = None
    _reading_paused = False
    _buffer = None
    _gone = False
    _gone_waiters = ()
    # True once the server is stopping (L{close_going_away}).
    going_away = False

    # The opening handshake.

    def onConnect(self, request):
        d = Deferred.fromCoroutine(self._authenticate(request))
        d.addErrback(self._deny)
        return d

    async def _authenticate(self, request):
        factory = self.factory
        settings = factory.settings
        token = (request.params.get("token") or [None])[0]
        if not token:
            token = token_from_headers(request.headers.get("authorization"),
                                       None)
        if not token:
            token = token_from_headers(None, request.headers.get("cookie"),
                                       settings.cookie_name)
            if token:
                self._check_origin(request)
        if not token:
            raise Unauthorized("sign in first: send a token")
        identity = await factory.tokens.verify(token)
        claimed = (request.params.get("user") or [""])[0]
        if claimed and claimed != identity.uuid:
            raise ConnectionDeny(403, "user does not match the token")
        user = await factory.users.get_by_id(identity.user_id)
        if user is None:
            raise Unauthorized("the token's user no longer exists")
        factory.hub.check_capacity(user.id)
        self.user = user
        self.identity = identity
        return None

    def _check_origin(self, request):
        """
        Cookie logins are sent by browsers from any page: only the server's
        own origin and the configured ones may use them.
        """
        origin = request.headers.get("origin") or ""
        peer = self.transport.getPeer()
        if not origin or not self.factory.settings.cors.allows_upgrade(
                origin, request.headers.get("host", ""), getattr(peer, "host", None),
                ISSLTransport.providedBy(self.transport),
                [request.headers.get("x-forwarded-proto", "")]):
            raise ConnectionDeny(
                403, "cookie-authenticated WebSockets must come from an"
                " allowed Origin")

    def _deny(self, failure):
        error = failure.value
        if isinstance(error, ConnectionDeny):
            self._log.info("Refused a WebSocket upgrade from {peer}: {reason}",
                           peer=self.peer, reason=error.reason)
            raise error
        if isinstance(error, ChatError):
            self._log.info("Refused a WebSocket upgrade from {peer}: {reason}",
                           peer=self.peer, reason=error.message)
            raise ConnectionDeny(error.status, error.message)
        self._log.failure("WebSocket upgrade failed", failure)
        raise ConnectionDeny(500, "internal error")

    def onOpen(self):
        if self._gone:
            # The client left while its token was being checked; Autobahn
            # opens the connection all the same.
            return
        try:
            self._open()
        except Exception:
            self._log.failure("Opening a WebSocket failed")
            self.dropConnection(abort=True)
        self.compact()

    def _open(self):
        settings = self.factory.settings
        self._buffer = OutgoingBuffer(settings.max_outgoing_bytes,
                                      self._cut_off)
        # twisted.web's channel registered itself as the transport's
        # producer; the connection is ours now.
        self.transport.unregisterProducer()
        self.transport.registerProducer(self._buffer, True)
        self.connected = True
        self.user = self.factory.hub.shared_user(self.user)
        # The welcome comes first; frames the Hub's observers send on
        # attach (presence ...) follow it.
        self.send_frame(frames.welcome_frame(self.user.uuid))
        try:
            self.factory.hub.attach(self)
        except TooManyRequests as error:
            self.connected = False
            self.sendClose(CLOSE_TOO_MANY_CONNECTIONS, error.message)
            return
        self._attached = True

    # Frames in.

    def onMessage(self, payload, isBinary):
        if not self.connected or self.going_away:
            return
        if not isBinary:
            self._send_error(frames.refuse(
                ChatError, "frames are binary protobuf Messages", "not_binary"))
            return
        try:
            frame = frames.decode(payload)
        except ChatError as error:
            self._send_error(error)
            return
        try:
            self.factory.messaging.check_sender(self, frame)
        except ChatError as error:
            self._send_error(error, frame.clientMsgId)
            return
        handler = self.factory.frame_handlers.get(frame.type)
        if handler is None:
            name = _HANDLERS.get(frame.type)
            if name is None:
                self._send_error(frames.refuse(
                    ChatError, f"unknown frame type {frame.type!r}",
                    "unknown_type"), frame.clientMsgId)
                return
            handler = getattr(type(self), name)
        self._started()
        try:
            # A coroutine, or (for messages) a Deferred; what a handler
            # raises at once is refused like what it fails with later.
            handling = ensureDeferred(handler(self, frame))
        except Exception:
            handling = fail()
        handling.addCallbacks(self._finished, self._failed, errbackArgs=(frame,))

    def _started(self):
        self._pending += 1
        if (self._pending >= self.factory.settings.max_pending_frames
                and not self._reading_paused):
            self._reading_paused = True
            self.transport.pauseProducing()

    def _finished(self, _):
        self._pending -= 1
        if not self._pending:
            self._wake("_idle_waiters")
        if self._reading_paused and self._pending < max(
                1, self.factory.settings.max_pending_frames // 2):
            self._reading_paused = False
            if self.connected and not self.going_away:
                self.transport.resumeProducing()

    def _failed(self, failure, frame):
        try:
            self._refuse_failed(failure, frame)
        finally:
            self._finished(None)

    def _refuse_failed(self, failure, frame):
        error = failure.value
        if not isinstance(error, ChatError):
            self._log.failure("Handling a {kind!r} frame from {user} failed",
                              failure, kind=frame.type,
                              user=self.user.username)
            error = frames.refuse(InternalError, "internal error", "internal")
        self._send_error(error, frame.clientMsgId)

    def _send_error(self, error, client_msg_id=""):
        self.send_frame(frames.error_frame(error, client_msg_id))
        # The server's own failures (a database outage) are not the
        # client's abuse.
        if error.status < 500:
            self._count_refusal()

    def _count_refusal(self):
        """
        A client whose frames keep being refused is abusive: past
        C{max_refusals_per_minute} in the last minute, close it (1008).
        """
        now = self.factory.reactor.seconds()
        if self._refusals is None:
            self._refusals = collections.deque()
        refusals = self._refusals
        refusals.append(now)
        while refusals and refusals[0] <= now - 60:
            refusals.popleft()
        if len(refusals) > self.factory.settings.max_refusals_per_minute \
                and self.connected:
            self._log.warn("Closing the connection of {user} from {peer}:"
                           " {count} refused frames in a minute",
                           user=self.user.username, peer=self.peer,
                           count=len(refusals))
            self._detach()
            # Autobahn's sendClose only takes application codes.
            self.sendCloseFrame(code=CLOSE_ABUSIVE,
                                reasonUtf8=b"too many refused frames",
                                isReply=False)

    def handle_message(self, frame):
        return self.factory.messaging.send(self, frame)

    async def handle_heartbeat(self, frame):
        self.send_frame(frames.pong_frame())

    async def handle_webrtc(self, frame):
        await self.factory.messaging.relay(self, frame)

    async def handle_sync(self, frame):
        await self.factory.messaging.sync(self, frame)

    # Frames out.

    def send_frame(self, frame):
        """
        Send one frame to this connection only.
        """
        self.send_prepared(server_frame(frames.encode(frame)))

    def send_prepared(self, frame):
        """
        Send a frame's bytes, framed once for a fan-out
        (L{chatd.ws.framing.server_frame}), unless this connection is too
        far behind (then it is cut off).
        """
        if not self.connected or self.state != self.STATE_OPEN:
            return
        if self._buffer.account(len(frame)):
            self.write_frame(frame)

    def wait_writable(self):
        """
        A Deferred firing when the outgoing buffer has room again (or the
        connection is gone, or going away).
        """
        if not self.connected or self.going_away:
            return succeed(None)
        return self._buffer.wait_writable()

    def _cut_off(self):
        """
        The peer reads too slowly: stop sending, tell it why (it sees the
        code once it reads what is queued), and drop it if it does not
        answer the close in time.
        """
        self._log.warn(
            "Closing the connection of {user} from {peer}: more than {limit}"
            " bytes queued", user=self.user.username, peer=self.peer,
            limit=self._buffer.limit)
        self._detach()
        self.sendClose(CLOSE_SLOW_READER,
                       "too slow: reconnect and sync to catch up")

    # Closing.

    def _handled(self):
        """
        A Deferred firing once no frame of this connection is being handled.
        """
        if not self._pending:
            return succeed(None)
        return self._wait("_idle_waiters")

    def _wait_gone(self):
        """
        A Deferred firing once the connection is lost.
        """
        if self._gone:
            return succeed(None)
        return self._wait("_gone_waiters")

    def _wait(self, waiters):
        """
        A Deferred that L{_wake} fires, kept in the tuple attribute named
        C{waiters} (a tuple on the class until someone waits).
        """
        waiter = Deferred()
        setattr(self, waiters, (*getattr(self, waiters), waiter))
        return waiter

    def _wake(self, waiters):
        # Back to the class's empty tuple: nothing kept per connection.
        for waiter in vars(self).pop(waiters, ()):
            waiter.callback(None)

    def close_going_away(self):
        """
        Close because the server stops: read no more frames, let those in
        hand finish (stored, or refused, and answered: a message stored
        gets its ack), then close with 1001. The Deferred fires when the
        connection is gone and its frames are handled, before the database
        closes.
        """
        self.going_away = True
        if self.connected and self.transport is not None:
            self.transport.pauseProducing()
        if self._buffer is not None:
            # A sync waiting for a reader that does not read gives up.
            self._buffer.release()
        handled = self._handled()
        handled.addCallback(lambda _: self._close_gone_away())
        return DeferredList([handled, self._wait_gone()])

    def _close_gone_away(self):
        self._detach()
        if self.transport is not None:
            # Read again: the close handshake, and the end of the
            # connection, come that way (frames are ignored now).
            self.transport.resumeProducing()
        if self.state == self.STATE_OPEN:
            # Autobahn's sendClose only takes application codes; 1001
            # (going away) is the standard one for a server that stops.
            self.sendCloseFrame(code=1001, reasonUtf8=b"the server is shutting down",
                                isReply=False)
        elif self.transport is not None and self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)

    def end_session(self, reason):
        """
        Close because the token the connection was opened with no longer
        holds (L{chatd.ws.sessions}); frames that arrive meanwhile are
        ignored.
        """
        self._detach()
        if self.state == self.STATE_OPEN:
            self.sendClose(CLOSE_TOKEN_ENDED, reason)

    def _detach(self):
        self.connected = False
        if self._attached:
            self._attached = False
            self.factory.hub.detach(self)
        if self._buffer is not None:
            self._buffer.stopProducing()

    def onClose(self, wasClean, code, reason):
        self._detach()

    def connectionLost(self, reason):
        try:
            super().connectionLost(reason)
        finally:
            self._detach()
            self._gone = True
            self._wake("_gone_waiters")
