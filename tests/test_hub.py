"""
Unit tests for the L{Hub} (connections, fan-out, cached routing facts) and
the WebSocket connection's L{OutgoingBuffer}, on fakes: no sockets.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd import events as event_names
from chatd.errors import TooManyRequests
from chatd.events import Events
from chatd.hub import Hub
from chatd.stores.groups import Group
from chatd.stores.users import User
from chatd.ws.protocol import OutgoingBuffer


def _d(coroutine):
    return Deferred.fromCoroutine(coroutine)


def _user(user_id):
    return User(user_id, f"u-{user_id}", f"user{user_id}", "", "", "", False, 1)


class FakeStores:
    """
    Stores answering from dicts, counting the queries the Hub makes.
    """

    def __init__(self):
        self.queries = []
        self.members = {10: [1, 2, 3]}
        self.friends = {1: [2], 2: [1]}
        self.users = {f"u-{n}": _user(n) for n in range(1, 5)}
        self.groups = {"g-10": Group(10, "g-10", 1, "g", "", 1)}
        self.gate = None

    def _answer(self, value):
        if self.gate is not None:
            gate, self.gate = self.gate, None
            return gate.addCallback(lambda _: value)
        return succeed(value)

    def member_ids(self, group_id):
        self.queries.append(("members", group_id))
        return self._answer(list(self.members.get(group_id, [])))

    def friend_ids(self, user_id):
        self.queries.append(("friends", user_id))
        return self._answer(list(self.friends.get(user_id, [])))

    def get_by_uuid(self, uuid):
        self.queries.append(("uuid", uuid))
        return self._answer(self.users.get(uuid) or self.groups.get(uuid))

    def group_ids_of(self, user_id):
        return succeed([])


class FakeConnection:
    def __init__(self, user_id):
        self.user = _user(user_id)
        self.sent = []
        self.closed = False

    def send_prepared(self, prepared):
        self.sent.append(prepared)

    def close_going_away(self):
        self.closed = True
        return succeed(None)


class HubTests(SynchronousTestCase):
    def setUp(self):
        self.stores = FakeStores()
        self.events = Events()
        self.prepared = []

        def prepare(payload):
            self.prepared.append(payload)
            return ("prepared", payload)

        self.hub = Hub(self.stores, self.stores, self.stores, self.events,
                       max_connections_per_user=2, prepare=prepare)

    def test_devices(self):
        """
        Every device of a user gets its frames; the excluded one does not.
        """
        a1, a2, b = FakeConnection(1), FakeConnection(1), FakeConnection(2)
        for connection in (a1, a2, b):
            self.hub.attach(connection)
        self.assertEqual(self.hub.deliver([1, 2], b"frame", exclude=a1), 2)
        self.assertEqual((a1.sent, a2.sent, b.sent),
                         ([], [("prepared", b"frame")], [("prepared", b"frame")]))

    def test_prepared_once_per_fan_out(self):
        connections = [FakeConnection(n) for n in (1, 1, 2, 3)]
        for connection in connections:
            self.hub.attach(connection)
        self.hub.deliver([1, 2, 3], b"frame")
        self.assertEqual(self.prepared, [b"frame"])
        self.assertTrue(all(c.sent == [("prepared", b"frame")]
                            for c in connections))

    def test_nobody_connected(self):
        self.assertEqual(self.hub.deliver([7], b"frame"), 0)
        self.assertEqual(self.prepared, [])

    def test_observers(self):
        seen = []
        self.hub.add_observer(lambda c: seen.append(("attach", c)),
                              lambda c: seen.append(("detach", c)))
        self.hub.add_observer(on_detach=lambda c: 1 / 0)
        connection = FakeConnection(1)
        self.hub.attach(connection)
        self.hub.detach(connection)
        self.hub.detach(connection)
        self.assertEqual(seen, [("attach", connection), ("detach", connection)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_connection_limit(self):
        self.hub.attach(FakeConnection(1))
        self.hub.attach(FakeConnection(1))
        self.assertRaises(TooManyRequests, self.hub.check_capacity, 1)
        self.assertRaises(TooManyRequests, self.hub.attach, FakeConnection(1))
        self.hub.check_capacity(2)

    def test_detach(self):
        a1, a2 = FakeConnection(1), FakeConnection(1)
        self.hub.attach(a1)
        self.hub.attach(a2)
        self.hub.detach(a1)
        self.assertEqual(self.hub.connections_of(1), (a2,))
        self.hub.detach(a2)
        self.assertFalse(self.hub.is_connected(1))
        self.assertEqual(self.hub.connection_count, 0)

    def test_membership_cached(self):
        """
        Members are loaded once; routing more messages asks nothing more.
        """
        for _ in range(3):
            members = self.successResultOf(_d(self.hub.group_members(10)))
        self.assertEqual(members, {1, 2, 3})
        self.assertEqual(self.stores.queries, [("members", 10)])

    def test_membership_events(self):
        self.successResultOf(_d(self.hub.group_members(10)))
        self.events.publish(event_names.MEMBER_JOINED, group_id=10, user_id=4)
        self.events.publish(event_names.MEMBER_LEFT, group_id=10, user_id=2)
        self.assertEqual(self.successResultOf(_d(self.hub.group_members(10))),
                         {1, 3, 4})
        self.events.publish(event_names.GROUP_DELETED, group_id=10)
        self.stores.members = {}
        self.assertEqual(self.successResultOf(_d(self.hub.group_members(10))),
                         set())
        self.assertEqual(self.stores.queries, [("members", 10), ("members", 10)])

    def test_change_during_load(self):
        """
        A change published while members are being loaded is not lost: the
        loaded set is not kept, and the next use loads again.
        """
        self.stores.gate = Deferred()
        gate = self.stores.gate
        pending = _d(self.hub.group_members(10))
        self.stores.members[10].append(4)
        self.events.publish(event_names.MEMBER_JOINED, group_id=10, user_id=4)
        gate.callback(None)
        self.successResultOf(pending)
        self.assertEqual(self.successResultOf(_d(self.hub.group_members(10))),
                         {1, 2, 3, 4})

    def test_friendship_events(self):
        self.hub.attach(FakeConnection(1))
        self.assertTrue(self.successResultOf(_d(self.hub.are_friends(1, 2))))
        self.assertFalse(self.successResultOf(_d(self.hub.are_friends(1, 3))))
        self.events.publish(event_names.FRIENDSHIP_ADDED, user_id=3, friend_id=1)
        self.assertTrue(self.successResultOf(_d(self.hub.are_friends(1, 3))))
        self.events.publish(event_names.FRIENDSHIP_REMOVED, user_id=1,
                            friend_id=2)
        self.assertFalse(self.successResultOf(_d(self.hub.are_friends(1, 2))))
        self.assertEqual(self.stores.queries, [("friends", 1)])

    def test_uuid_lookups_cached(self):
        for _ in range(2):
            user = self.successResultOf(_d(self.hub.user_by_uuid("u-2")))
            group = self.successResultOf(_d(self.hub.group_by_uuid("g-10")))
        self.assertEqual((user.id, group.id), (2, 10))
        self.assertEqual(self.stores.queries, [("uuid", "u-2"), ("uuid", "g-10")])
        self.assertIsNone(self.successResultOf(_d(self.hub.user_by_uuid("nobody"))))

    def test_stop_closes_connections(self):
        connections = [FakeConnection(1), FakeConnection(2)]
        for connection in connections:
            self.hub.attach(connection)
        factory = FakeFactory()
        self.hub.manage_factory(factory)
        self.hub.startService()
        self.assertEqual(factory.log, ["start"])
        self.successResultOf(self.hub.stopService())
        self.assertTrue(all(c.closed for c in connections))
        self.assertEqual(factory.log, ["start", "stop"])


class FakeFactory:
    def __init__(self):
        self.log = []

    def startFactory(self):
        self.log.append("start")

    def stopFactory(self):
        self.log.append("stop")


class OutgoingBufferTests(SynchronousTestCase):
    def test_registered_with_a_transport(self):
        """
        The transport pauses the buffer when its own buffer is full; while
        paused, bytes are counted, and past the limit the connection is cut
        off.
        """
        overflows = []
        buffer = OutgoingBuffer(100, lambda: overflows.append(True))
        transport = StringTransport()
        transport.registerProducer(buffer, True)
        self.assertTrue(buffer.account(1000))
        transport.pauseProducing()
        buffer.pauseProducing()
        self.assertTrue(buffer.account(60))
        waiting = buffer.wait_writable()
        self.assertNoResult(waiting)
        self.assertFalse(buffer.account(60))
        self.assertEqual(overflows, [True])
        buffer.resumeProducing()
        self.successResultOf(waiting)
        self.assertEqual(buffer.backlog, 0)
        self.assertTrue(buffer.account(60))
        self.successResultOf(buffer.wait_writable())


class CacheTests(SynchronousTestCase):
    def test_least_recently_used_goes(self):
        """
        A full cache drops the value used longest ago: a use through
        C{get_cached} or C{get} counts, a C{peek} does not.
        """
        from chatd.hub import _Cache

        loads = []

        def loader(key):
            loads.append(key)
            return succeed(key.upper())

        cache = _Cache(loader, max_size=2)
        for key in ("a", "b"):
            self.successResultOf(Deferred.fromCoroutine(cache.get(key)))
        self.assertEqual(cache.get_cached("a"), "A")
        self.assertEqual(cache.peek("b"), "B")
        self.successResultOf(Deferred.fromCoroutine(cache.get("c")))
        self.assertEqual((cache.peek("a"), cache.peek("b"), cache.peek("c")), ("A", None, "C"))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(cache.get("a"))), "A")
        self.successResultOf(Deferred.fromCoroutine(cache.get("b")))
        self.assertIsNone(cache.get_cached("c"))
        self.assertEqual(loads, ["a", "b", "c", "b"])

    def test_unknown_keys_keep_nothing(self):
        """
        A key whose load found nothing and was forgotten (an unknown uuid)
        leaves nothing behind, however many there are.
        """
        from chatd.hub import _Cache

        cache = _Cache(lambda key: succeed(None), max_size=10)
        for n in range(1000):
            key = f"unknown-{n}"
            self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(cache.get(key))))
            cache.forget(key)
            cache.changed(key)
        self.assertEqual((len(cache._values), len(cache._loading)), (0, 0))

    def test_change_during_load(self):
        """
        A value whose key changed while it was being loaded is returned to
        that caller but not kept; a later load is kept.
        """
        from chatd.hub import _Cache

        pending = []

        def loader(key):
            pending.append(Deferred())
            return pending[-1]

        cache = _Cache(loader)
        first = Deferred.fromCoroutine(cache.get("k"))
        cache.changed("k")
        pending[0].callback("old")
        self.assertEqual(self.successResultOf(first), "old")
        self.assertIsNone(cache.peek("k"))
        second = Deferred.fromCoroutine(cache.get("k"))
        pending[1].callback("new")
        self.assertEqual(self.successResultOf(second), "new")
        self.assertEqual(cache.peek("k"), "new")
        self.assertEqual(len(cache._loading), 0)
