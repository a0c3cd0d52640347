"""
The Hub: who is connected, and delivery to them.

The Hub owns connection state. A user may be connected from several
devices; each connection is attached under its user's id and gets every
frame addressed to that user. The Hub also keeps the routing facts in
memory (group members, friendships, users and groups by uuid), loaded once
and kept current by L{chatd.events.Events}, so that routing a message needs
no database query.

Connections are anything with:
  - C{user}: the L{chatd.stores.users.User} it is authenticated as;
  - C{send_prepared(prepared)}: send a frame prepared by the Hub's
    C{prepare} callable (L{chatd.ws.framing.server_frame}: a frame is
    encoded and framed once per fan-out, not once per recipient);
  - C{close_going_away()}: close because the server is stopping.

The Hub never imports the WebSocket protocol; the factory that makes them
is handed over with L{Hub.manage_factory}, and started and stopped with the
Hub (a factory mounted as a resource is not started by the Site).
"""

from collections import OrderedDict

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from chatd import events as event_names
from chatd.errors import TooManyRequests

log = Logger()


class _Load:
    """
    A load in flight; C{stale} once its key changed meanwhile.
    """

    stale = False


class _Cache:
    """
    Values loaded from the database on first use and kept current by
    events. A change that arrives while a value is being loaded makes the
    loaded value stale: it is used once but not kept. Nothing is kept for
    a key that is neither cached nor being loaded, so keys that name
    nothing (a frame to an unknown uuid) cost nothing once answered.
    """

    def __init__(self, loader, max_size=None):
        self._loader = loader
        self._values = OrderedDict()
        self._loading = {}
        self._max_size = max_size

    def peek(self, key):
        return self._values.get(key)

    def get_cached(self, key):
        """
        The cached value (a use, for the least-recently-used order), or
        None if it is not cached.
        """
        value = self._values.get(key)
        if value is not None and self._max_size:
            self._values.move_to_end(key)
        return value

    def __contains__(self, key):
        return key in self._values

    async def get(self, key):
        if key in self._values:
            return self.get_cached(key)
        load = _Load()
        self._loading.setdefault(key, []).append(load)
        try:
            value = await self._loader(key)
        finally:
            loads = self._loading[key]
            loads.remove(load)
            if not loads:
                del self._loading[key]
        if not load.stale and key not in self._values:
            self._store(key, value)
        return self._values.get(key, value)

    def _store(self, key, value):
        self._values[key] = value
        if self._max_size and len(self._values) > self._max_size:
            self._values.popitem(last=False)

    def _loads_are_stale(self, key):
        for load in self._loading.get(key, ()):
            load.stale = True

    def changed(self, key):
        """
        Note that C{key} changed; return its cached value (to be updated in
        place) or None if it is not cached.
        """
        self._loads_are_stale(key)
        return self._values.get(key)

    def forget(self, key):
        self._loads_are_stale(key)
        self._values.pop(key, None)


class Hub(Service):
    """
    @param users: a L{chatd.stores.users.UserStore}.
    @param social: a L{chatd.stores.social.SocialStore}.
    @param groups: a L{chatd.stores.groups.GroupStore}.
    @param events: the L{chatd.events.Events} the REST side publishes to.
    @param max_connections_per_user: devices one user may connect at once.
    @param prepare: makes the object connections' C{send_prepared} takes
        from a frame's bytes.
    """

    def __init__(self, users, social, groups, events,
                 max_connections_per_user=8, prepare=None,
                 user_cache_size=10000):
        self._users = users
        self._social = social
        self._groups = groups
        self._max_per_user = max_connections_per_user
        self._prepare = prepare or (lambda payload: payload)
        self._connections = {}
        self._factories = []
        self._observers = []
        self._members = _Cache(self._load_members)
        self._friends = _Cache(self._load_friends)
        self._users_by_uuid = _Cache(users.get_by_uuid, user_cache_size)
        self._groups_by_uuid = _Cache(groups.get_by_uuid, user_cache_size)
        self._group_uuids = {}
        events.subscribe(event_names.MEMBER_JOINED, self._member_joined)
        events.subscribe(event_names.MEMBER_LEFT, self._member_left)
        events.subscribe(event_names.GROUP_DELETED, self._group_deleted)
        events.subscribe(event_names.FRIENDSHIP_ADDED, self._friendship_added)
        events.subscribe(event_names.FRIENDSHIP_REMOVED,
                         self._friendship_removed)

    # Life cycle.

    def set_prepare(self, prepare):
        """
        Use C{prepare} to turn a frame's bytes into what connections'
        C{send_prepared} takes.
        """
        self._prepare = prepare

    def manage_factory(self, factory):
        """
        Start and stop C{factory} (C{startFactory}/C{stopFactory}) with the
        Hub.
        """
        self._factories.append(factory)

    def startService(self):
        super().startService()
        for factory in self._factories:
            factory.startFactory()

    def stopService(self):
        """
        Close every connection (going away), then stop the factories.
        """
        super().stopService()
        closing = []
        for connection in self.all_connections():
            d = connection.close_going_away()
            if isinstance(d, Deferred):
                closing.append(d)
        d = DeferredList(closing, consumeErrors=True)
        d.addCallback(lambda _: [f.stopFactory() for f in self._factories])
        return d

    # Connections.

    def add_observer(self, on_attach=None, on_detach=None):
        """
        Call C{on_attach(connection)} / C{on_detach(connection)} whenever a
        connection is attached or detached (presence, calls). Observers run
        synchronously; their exceptions are logged.
        """
        self._observers.append((on_attach, on_detach))

    def _notify(self, index, connection):
        for observer in self._observers:
            callback = observer[index]
            if callback is None:
                continue
            try:
                callback(connection)
            except Exception:
                log.failure("Connection observer {callback} failed",
                            callback=callback)

    def check_capacity(self, user_id):
        """
        @raise TooManyRequests: the user has as many connections as allowed.
        """
        if len(self._connections.get(user_id, ())) >= self._max_per_user:
            raise TooManyRequests(
                f"at most {self._max_per_user} connections per user",
                retry_after=10)

    def attach(self, connection):
        """
        Start delivering the user's frames to C{connection} too.

        @raise TooManyRequests: the user has as many connections as allowed.
        """
        user_id = connection.user.id
        self.check_capacity(user_id)
        self._connections.setdefault(user_id, []).append(connection)
        self._notify(0, connection)
        log.debug("{user} connected ({count} devices)",
                  user=connection.user.username,
                  count=len(self._connections[user_id]))

    def detach(self, connection):
        user_id = connection.user.id
        devices = self._connections.get(user_id, [])
        if connection not in devices:
            return
        devices.remove(connection)
        if not devices:
            self._connections.pop(user_id, None)
            self._friends.forget(user_id)
        self._notify(1, connection)

    def shared_user(self, user):
        """
        The L{User} object the user's connected devices already share, if
        it equals C{user}, else C{user}: one copy per user, not per device.
        """
        devices = self._connections.get(user.id)
        if devices and devices[0].user == user:
            return devices[0].user
        return user

    def connections_of(self, user_id):
        return tuple(self._connections.get(user_id, ()))

    def is_connected(self, user_id):
        return user_id in self._connections

    def connected_user_ids(self):
        return list(self._connections)

    def all_connections(self):
        return [c for devices in self._connections.values() for c in devices]

    @property
    def connection_count(self):
        return sum(len(devices) for devices in self._connections.values())

    # Delivery.

    def deliver(self, user_ids, payload, exclude=None):
        """
        Send one frame's bytes to every connection of C{user_ids} but
        C{exclude}; the frame is prepared once for all of them.

        @return: the number of connections it was sent to.
        """
        targets = [connection for user_id in user_ids
                   for connection in self._connections.get(user_id, ())
                   if connection is not exclude]
        if not targets:
            return 0
        prepared = self._prepare(payload)
        for connection in targets:
            try:
                connection.send_prepared(prepared)
            except Exception:
                log.failure("Delivery to {user} failed",
                            user=connection.user.username)
        return len(targets)

    # Routing facts, cached.

    async def user_by_uuid(self, uuid):
        """
        The L{User} with this uuid, or None.
        """
        user = await self._users_by_uuid.get(uuid)
        if user is None:
            self._users_by_uuid.forget(uuid)
        return user

    async def group_by_uuid(self, uuid):
        """
        The L{Group} with this uuid, or None.
        """
        group = await self._groups_by_uuid.get(uuid)
        if group is None:
            self._groups_by_uuid.forget(uuid)
        else:
            self._group_uuids[group.id] = uuid
        return group

    async def group_members(self, group_id):
        """
        The ids of the members of a group (a set; do not change it).
        """
        return await self._members.get(group_id)

    async def friend_ids(self, user_id):
        """
        The ids of a user's friends (a set; do not change it).
        """
        return await self._friends.get(user_id)

    async def are_friends(self, user_id, other_id):
        return other_id in await self.friend_ids(user_id)

    def cached_user_by_uuid(self, uuid):
        """
        The L{User} with this uuid if the cache has it, else None (it may
        still exist: ask L{user_by_uuid}).
        """
        return self._users_by_uuid.get_cached(uuid)

    def cached_group_by_uuid(self, uuid):
        """
        The L{Group} with this uuid if the cache has it, else None.
        """
        return self._groups_by_uuid.get_cached(uuid)

    def cached_group_members(self, group_id):
        """
        The ids of a group's members if the cache has them, else None.
        """
        return self._members.peek(group_id)

    def cached_friend_ids(self, user_id):
        """
        The ids of a user's friends if the cache has them, else None.
        """
        return self._friends.peek(user_id)

    async def group_ids_of(self, user_id):
        """
        The groups a user is a member of (asks the database: for sync, not
        for routing).
        """
        return await self._groups.group_ids_of(user_id)

    async def _load_members(self, group_id):
        return set(await self._groups.member_ids(group_id))

    async def _load_friends(self, user_id):
        return set(await self._social.friend_ids(user_id))

    # Events.

    def _member_joined(self, group_id, user_id, **_):
        members = self._members.changed(group_id)
        if members is not None:
            members.add(user_id)

    def _member_left(self, group_id, user_id, **_):
        members = self._members.changed(group_id)
        if members is not None:
            members.discard(user_id)

    def _group_deleted(self, group_id, **_):
        self._members.forget(group_id)
        uuid = self._group_uuids.pop(group_id, None)
        if uuid is not None:
            self._groups_by_uuid.forget(uuid)

    def _friendship_added(self, user_id, friend_id, **_):
        for a, b in ((user_id, friend_id), (friend_id, user_id)):
            friends = self._friends.changed(a)
            if friends is not None:
                friends.add(b)

    def _friendship_removed(self, user_id, friend_id, **_):
        for a, b in ((user_id, friend_id), (friend_id, user_id)):
            friends = self._friends.changed(a)
            if friends is not None:
                friends.discard(b)
