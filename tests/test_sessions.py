"""
Tests for L{chatd.ws.sessions}: a WebSocket opened with a token is closed
when the token is revoked (logout), superseded (a password change) or
expires; over real connections to the whole daemon, and with a fake clock.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd import events as event_names
from chatd.auth.tokens import Identity
from chatd.events import Events
from chatd.ws.sessions import CLOSE_TOKEN_ENDED, EXPIRED, REVOKED, Sessions
from tests.helpers import base_url, http_client, ws_connect, ws_url
from tests.test_websocket import WebSocketTestCase


class RevokedTokenTests(WebSocketTestCase):
    async def rest(self, method, path, token=None, body=None):
        headers = {b"Content-Type": [b"application/json"]}
        if token:
            headers[b"Authorization"] = [f"Bearer {token}".encode()]
        response = await http_client().request(
            method, base_url(self.service) + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers)
        return response.code, await response.json()

    async def sign_in(self):
        code, answer = await self.rest("POST", "/user/login", body={
            "username": "dave", "password": "password1"})
        self.assertEqual(code, 200, answer)
        return answer["data"]["token"]

    async def open(self, token):
        client = await ws_connect(self, ws_url(self.service, user=self.dave_uuid,
                                               token=token))
        self.assertEqual((await client.next_of("")).content, "welcome!")
        return client

    async def start_with_dave(self):
        await self.start(auth_scrypt_log2_n=10)
        code, answer = await self.rest("POST", "/user/register", body={
            "username": "dave", "password": "password1"})
        self.assertEqual(code, 201, answer)
        self.dave_uuid = answer["data"]["uuid"]

    async def test_logout_closes_that_tokens_connections(self):
        """
        Signing out closes the connections opened with that token (4001);
        a connection of the same user with another token stays open.
        """
        await self.start_with_dave()
        signed_out, other = await self.sign_in(), await self.sign_in()
        doomed = await self.open(signed_out)
        kept = await self.open(other)
        code, _ = await self.rest("POST", "/user/logout", signed_out)
        self.assertEqual(code, 200)
        code, reason = await doomed.closed
        self.assertEqual((code, reason), (CLOSE_TOKEN_ENDED, REVOKED))
        await self.assert_alive(kept)

    async def test_password_change_closes_earlier_tokens_connections(self):
        """
        A password change closes every connection opened with a token
        issued before it; the token it hands back opens a working one.
        """
        await self.start_with_dave()
        first, second = await self.sign_in(), await self.sign_in()
        clients = [await self.open(first), await self.open(second)]
        code, answer = await self.rest("PUT", "/user", second, {
            "password": "password2", "oldPassword": "password1"})
        self.assertEqual(code, 200, answer)
        for client in clients:
            code, reason = await client.closed
            self.assertEqual((code, reason), (CLOSE_TOKEN_ENDED, REVOKED))
        fresh = await self.open(answer["data"]["token"])
        await self.assert_alive(fresh)

    async def test_closed_connection_sends_nothing_more(self):
        """
        By the time the sign-out is answered, the connection is detached
        from the Hub (nothing more is delivered to it) and no longer counts
        as connected (its frames are ignored).
        """
        await self.start_with_dave()
        token = await self.sign_in()
        client = await self.open(token)
        dave = await self.service.parts.users.get_by_uuid(self.dave_uuid)
        [server_side] = self.service.realtime.hub.connections_of(dave.id)
        code, _ = await self.rest("POST", "/user/logout", token)
        self.assertEqual(code, 200)
        self.assertEqual(self.service.realtime.hub.connections_of(dave.id), ())
        self.assertFalse(server_side.connected)
        await client.closed


class FakeHub:
    def __init__(self):
        self.connections = []
        self.on_attach = None

    def add_observer(self, on_attach=None, on_detach=None):
        self.on_attach = on_attach

    def connections_of(self, user_id):
        return tuple(c for c in self.connections if c.identity.user_id == user_id)

    def all_connections(self):
        return list(self.connections)

    def attach(self, connection):
        self.connections.append(connection)
        self.on_attach(connection)


class FakeConnection:
    def __init__(self, user_id, token_id, issued_ms=1000, expires_at=3600):
        self.identity = Identity(user_id, f"u{user_id}", f"user{user_id}",
                                 token_id, expires_at, issued_ms)
        self.ended = None

    def end_session(self, reason):
        self.ended = reason


class SessionsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.hub = FakeHub()
        self.events = Events()
        self.sessions = Sessions(self.hub, self.events, self.clock, interval=30,
                                 remember=300)
        self.sessions.startService()
        self.addCleanup(self.sessions.stopService)

    def test_revoked_token(self):
        """
        Only the connections opened with the revoked token are closed.
        """
        revoked, other, stranger = (FakeConnection(1, "t1"), FakeConnection(1, "t2"),
                                    FakeConnection(2, "t1"))
        for connection in (revoked, other, stranger):
            self.hub.attach(connection)
        self.clock.advance(0)
        self.events.publish(event_names.TOKEN_REVOKED, user_id=1, token_id="t1")
        self.assertEqual([c.ended for c in (revoked, other, stranger)],
                         [REVOKED, None, None])

    def test_tokens_issued_before(self):
        """
        A password change closes the user's connections whose token was
        issued before it, not later ones.
        """
        older, newer = (FakeConnection(1, "t1", issued_ms=1000),
                        FakeConnection(1, "t2", issued_ms=5000))
        self.hub.attach(older)
        self.hub.attach(newer)
        self.events.publish(event_names.TOKENS_REVOKED, user_id=1, issued_before=5000)
        self.assertEqual([older.ended, newer.ended], [REVOKED, None])

    def test_attached_after_revocation(self):
        """
        A connection whose upgrade was verified before the revocation and
        attaches after it is closed, once it has finished opening.
        """
        self.events.publish(event_names.TOKEN_REVOKED, user_id=1, token_id="t1")
        self.events.publish(event_names.TOKENS_REVOKED, user_id=2, issued_before=5000)
        late = [FakeConnection(1, "t1"), FakeConnection(2, "t9", issued_ms=4000)]
        fine = FakeConnection(2, "t8", issued_ms=6000)
        for connection in (*late, fine):
            self.hub.attach(connection)
        self.assertEqual([c.ended for c in late], [None, None])
        self.clock.advance(0)
        self.assertEqual([c.ended for c in (*late, fine)], [REVOKED, REVOKED, None])

    def test_revocations_forgotten(self):
        """
        Revocations are checked against new connections for C{remember}
        seconds only (later upgrades are refused by the token check).
        """
        self.events.publish(event_names.TOKEN_REVOKED, user_id=1, token_id="t1")
        self.events.publish(event_names.TOKENS_REVOKED, user_id=2, issued_before=5000)
        self.clock.advance(330)
        late = [FakeConnection(1, "t1", expires_at=10000),
                FakeConnection(2, "t9", issued_ms=4000, expires_at=10000)]
        for connection in late:
            self.hub.attach(connection)
        self.clock.advance(0)
        self.assertEqual([c.ended for c in late], [None, None])

    def test_expired(self):
        """
        The sweep closes connections whose token has expired, at most
        C{interval} seconds late.
        """
        soon, later = FakeConnection(1, "t1", expires_at=100), FakeConnection(1, "t2")
        self.hub.attach(soon)
        self.hub.attach(later)
        self.clock.advance(90)
        self.assertIsNone(soon.ended)
        self.clock.advance(30)
        self.assertEqual([soon.ended, later.ended], [EXPIRED, None])

    def test_one_failure_stops_nothing(self):
        """
        A connection that fails to close is logged; the others are still
        closed and the sweep keeps running.
        """
        broken, fine = FakeConnection(1, "t1", expires_at=10), FakeConnection(2, "t2",
                                                                             expires_at=10)

        def fail(reason):
            raise RuntimeError("transport gone")

        broken.end_session = fail
        self.hub.attach(broken)
        self.hub.attach(fine)
        self.clock.advance(30)
        self.assertEqual(fine.ended, EXPIRED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        fine.ended = None
        self.clock.advance(30)
        self.assertEqual(fine.ended, EXPIRED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
