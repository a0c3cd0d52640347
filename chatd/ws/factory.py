"""
The WebSocket factory and resource at C{/socket.io}, and the function that
builds the real-time messaging parts.
"""

from dataclasses import dataclass

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory

from chatd.web.cors import CorsPolicy
from chatd.web.proxy import ProxyPolicy
from chatd.ws.compact import protocol_for_options
from chatd.ws.framing import server_frame
from chatd.ws.keepalive import KeepAlive
from chatd.ws.protocol import ChatServerProtocol
from chatd.ws.sessions import Sessions
from chatd.ws.writes import WriteCoalescer


@dataclass(frozen=True)
class Settings:
    """
    What the protocols need from the configuration.
    """

    cookie_name: str
    cors: object
    max_outgoing_bytes: int
    max_pending_frames: int
    max_refusals_per_minute: int = 120


class ChatWebSocketFactory(WebSocketServerFactory):
    """
    Makes L{ChatServerProtocol}s and gives them the Hub, the messaging
    handler, the token service and the user store.
    """

    protocol = ChatServerProtocol

    def __init__(self, hub, messaging, tokens, users, settings, reactor,
                 websocket_config):
        super().__init__(reactor=reactor)
        self.hub = hub
        self.messaging = messaging
        self.tokens = tokens
        self.users = users
        self.settings = settings
        self.frame_handlers = {}
        self.writes = WriteCoalescer(reactor)
        c = websocket_config
        self.setProtocolOptions(
            maxFramePayloadSize=c.max_frame_bytes,
            maxMessagePayloadSize=c.max_message_bytes,
            openHandshakeTimeout=c.open_handshake_timeout,
            closeHandshakeTimeout=c.close_handshake_timeout,
            # Pings are chatd.ws.keepalive's sweep, not a timer each.
            autoPingInterval=0,
            failByDrop=False,
        )

    def setProtocolOptions(self, **options):
        """
        Autobahn's, and the options go on a protocol class of this
        factory's instead of on every connection (L{chatd.ws.compact}).
        Set options only through this method (or L{resetProtocolOptions}).
        """
        super().setProtocolOptions(**options)
        self.protocol = protocol_for_options(type(self).protocol, self)

    def resetProtocolOptions(self):
        super().resetProtocolOptions()
        self.protocol = protocol_for_options(type(self).protocol, self)

    def register_frame_handler(self, kind, handler):
        """
        Handle frames of type C{kind} with C{handler(connection, frame)}, a
        coroutine function, instead of the built-in handler (if any). Its
        L{chatd.errors.ChatError}s become error frames.
        """
        self.frame_handlers[kind] = handler


class ChatWebSocketResource(WebSocketResource):
    """
    Autobahn's resource, taking the connection away from twisted.web's idle
    timeout (the WebSocket has its own pings).
    """

    def render(self, request):
        if request.channel is not None:
            request.channel.setTimeout(None)
        return super().render(request)


@dataclass(frozen=True)
class Realtime:
    """
    The real-time messaging parts, for the service tree and the site.
    """

    writer: object
    hub: object
    messaging: object
    factory: ChatWebSocketFactory
    resource: ChatWebSocketResource
    keepalive: object
    sessions: object
    calls: object = None


def build_realtime(config, database, reactor, parts):
    """
    Build the group-commit writer, the Hub, the messaging handler and the
    WebSocket factory and resource, over the shared L{chatd.parts.Parts}
    (stores, token service, file store, change events).

    The writer, the Hub, the keep-alive sweep and the session sweep are services: put them in
    the service tree after the database and before the listeners, in that
    order (the Hub starts and stops the factory). Mount C{resource} at C{/socket.io}.
    """
    from chatd.batching import BatchWriter
    from chatd.call_log import build_calls
    from chatd.handlers.messaging import Messaging
    from chatd.hub import Hub

    ws = config.websocket
    writer = BatchWriter(parts.messages, reactor, batch_size=ws.batch_size,
                         batch_delay=ws.batch_delay)
    hub = Hub(parts.users, parts.social_store, parts.group_store, parts.events,
              max_connections_per_user=ws.max_connections_per_user)
    messaging = Messaging(hub, writer, parts.messages, parts.files, ws, reactor)
    settings = Settings(
        cookie_name=config.auth.cookie_name,
        cors=CorsPolicy(config.server.allowed_origins,
                        ProxyPolicy(config.server.trusted_proxies)),
        max_outgoing_bytes=ws.max_outgoing_bytes,
        max_pending_frames=ws.max_pending_frames,
        max_refusals_per_minute=ws.max_refusals_per_minute)
    factory = ChatWebSocketFactory(hub, messaging, parts.tokens, parts.users,
                                   settings, reactor, ws)
    hub.set_prepare(server_frame)
    hub.manage_factory(factory)
    calls = build_calls(config, hub, writer, messaging, factory, reactor)
    keepalive = KeepAlive(hub.all_connections, reactor, ws.autoping_interval,
                          ws.autoping_timeout)
    sessions = Sessions(hub, parts.events, reactor)
    return Realtime(writer, hub, messaging, factory,
                    ChatWebSocketResource(factory), keepalive, sessions, calls)
