"""
Shared fixtures for chatd's tests.

The database tests run on SQLite, or on MySQL/MariaDB when the environment
variable C{CHATD_TEST_MYSQL} names a server, e.g.
C{mysql://root@127.0.0.1:3306/chatd_test}. Each test process uses its own
MySQL database (the named one with the process id appended), so test runs
can share a server.
"""

import atexit
import os

from twisted.internet import reactor

from chatd.config import Config, override, parse_database_url
from chatd.storage import database_for
from chatd.storage.engines import create_engine
from chatd.storage.migrations import prepare_database

MYSQL_URL = os.environ.get("CHATD_TEST_MYSQL", "")
ENGINE = "mysql" if MYSQL_URL else "sqlite"

_mysql_state = {"created": False, "migrated": False}


def _mysql_parameters():
    _, parameters = parse_database_url(MYSQL_URL)
    parameters = dict(parameters)
    parameters["database"] = f"{parameters['database']}_{os.getpid()}"
    return parameters


def _mysql_admin(statements, database=None):
    """
    Run statements on the test server directly (fixture set-up only).
    """
    import pymysql

    parameters = _mysql_parameters()
    connection = pymysql.connect(
        host=parameters["host"], port=parameters["port"],
        user=parameters["user"], password=parameters["password"],
        database=database, charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return cursor.fetchall()
    finally:
        connection.close()


def _drop_mysql_database():
    name = _mysql_parameters()["database"]
    _mysql_admin([f"DROP DATABASE IF EXISTS `{name}`"])


def database_url(testcase):
    """
    A database URL for a test: a new SQLite file, or this process's MySQL
    test database.
    """
    if MYSQL_URL:
        p = _mysql_parameters()
        auth = p["user"] + (f":{p['password']}" if p["password"] else "")
        return f"mysql://{auth}@{p['host']}:{p['port']}/{p['database']}"
    return "sqlite:///" + os.path.join(os.path.abspath(testcase.mktemp()), "chatd.sqlite3")


def _reset_mysql(fresh):
    name = _mysql_parameters()["database"]
    if fresh or not _mysql_state["migrated"]:
        _mysql_admin([f"DROP DATABASE IF EXISTS `{name}`",
                      f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
                      " COLLATE utf8mb4_unicode_ci"])
        if not _mysql_state["created"]:
            atexit.register(_drop_mysql_database)
        _mysql_state["created"] = True
        _mysql_state["migrated"] = False
        return
    tables = [row[0] for row in _mysql_admin(["SHOW TABLES"], name)
              if row[0] != "schema_version"]
    # Emptied as a freshly migrated database is: the search indexer's
    # progress row is part of the schema.
    _mysql_admin(["SET FOREIGN_KEY_CHECKS=0"]
                 + [f"DELETE FROM `{table}`" for table in tables]
                 + ["SET FOREIGN_KEY_CHECKS=1",
                    "INSERT INTO search_progress (id, indexed_through) VALUES (1, 0)"],
                 name)


def make_database(testcase, url=None):
    """
    An unmigrated L{Database} for a test, closed when the test ends.
    """
    kind, parameters = parse_database_url(url or database_url(testcase))
    engine = create_engine(kind, parameters)
    database = database_for(engine, reactor)
    testcase.addCleanup(database.close)
    return database


async def migrated_database(testcase):
    """
    A L{Database} at the newest schema with no rows, for a test.
    """
    if MYSQL_URL:
        _reset_mysql(fresh=False)
    database = make_database(testcase)
    await prepare_database(database)
    if MYSQL_URL:
        _mysql_state["migrated"] = True
    return database


def empty_database(testcase):
    """
    A L{Database} with no tables at all (for migration tests).
    """
    if MYSQL_URL:
        _reset_mysql(fresh=True)
    return make_database(testcase)


def test_config(testcase, **changes):
    """
    A L{Config} for a test server: a temporary data directory, the test
    database, and a listener on a free loopback port. C{changes} are
    C{section_key=value} overrides.
    """
    if MYSQL_URL:
        _reset_mysql(fresh=False)
    data_dir = os.path.abspath(testcase.mktemp())
    os.makedirs(data_dir)
    base = {
        "server_data_dir": data_dir,
        "server_listen": ["tcp:0:interface=127.0.0.1"],
        "database_url": database_url(testcase),
    }
    base.update(changes)
    return override(Config(), source="test", **base)


async def start_server(testcase, config):
    """
    Build and start chatd's whole service tree in this process; stopped
    when the test ends.

    @return: the running root service; C{listening_ports(service)} gives
        its ports.
    """
    from chatd.tap import build_service

    service = build_service(config, reactor)
    service.startService()
    testcase.addCleanup(_stop, service)
    await service.started
    if MYSQL_URL:
        _mysql_state["migrated"] = True
    return service


def _stop(service):
    if service.running:
        return service.stopService()


def listening_ports(service):
    """
    The port numbers a running service tree listens on, in order.
    """
    from chatd.service import ListeningService

    return [child.port.getHost().port for child in service
            if isinstance(child, ListeningService)]


def base_url(service, scheme="http", host="127.0.0.1"):
    return f"{scheme}://{host}:{listening_ports(service)[0]}"


def make_tls_files(directory, hostname="localhost"):
    """
    Write a test certificate authority and a server certificate for
    C{hostname} (and 127.0.0.1) signed by it into C{directory}.

    @return: C{(ca_path, cert_path, key_path)}, PEM files.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(hostname),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = [os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")]
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca_cert.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return tuple(paths)


def tls_listen(cert_path, key_path):
    """
    An C{ssl:} endpoint string on a free loopback port for the given files.
    """
    return f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}"


def http_client(ca_path=None):
    """
    A treq client for a real server, with no persistent connections (so
    that tests leave a clean reactor); with C{ca_path}, it trusts only that
    CA and checks host names.
    """
    from treq.client import HTTPClient
    from twisted.internet.ssl import Certificate
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    if ca_path is None:
        return HTTPClient(Agent(reactor, pool=pool))
    with open(ca_path, "rb") as f:
        trust = Certificate.loadPEM(f.read())
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust)
    return HTTPClient(Agent(reactor, contextFactory=policy, pool=pool))


async def create_user(database, username, is_admin=False, avatar=""):
    """
    Add a user (with an unusable password hash) straight through the store;
    return the L{chatd.stores.users.User}.
    """
    import uuid

    from chatd.stores.users import UserStore

    users = UserStore(database)
    user = await users.create(str(uuid.uuid4()), username, "!test",
                              created_at=1, is_admin=is_admin)
    if avatar:
        await users.set_avatar(user.id, avatar, 2)
        user = await users.get_by_id(user.id)
    return user


async def make_friends(database, user, other):
    from chatd.stores.social import SocialStore

    await SocialStore(database).add(user.id, other.id, 1)


async def create_group(database, owner, name, members=()):
    """
    A group owned by C{owner} with C{members} joined; return the L{Group}.
    """
    import uuid

    from chatd.stores.groups import GroupStore

    groups = GroupStore(database)
    group = await groups.create(str(uuid.uuid4()), owner.id, name, "", 1)
    for member in members:
        await groups.join(group.id, member.id, 1)
    return group


def on_another_connection(database, function, *args):
    """
    A thread, not started, that runs C{function(txn, *args)} in a
    transaction on a connection of its own to C{database} and commits it.
    """
    import threading

    from chatd.storage.database import Transaction

    engine = database.engine

    def run():
        connection = engine.connect()
        try:
            cursor = connection.cursor()
            engine.begin(cursor)
            function(Transaction(engine, cursor), *args)
            connection.commit()
        finally:
            connection.close()

    return threading.Thread(target=run)


async def interleaved(testcase, run, function, marker, other):
    """
    Run C{function(txn)} through C{run} (a L{Database} method); right
    after its first statement containing C{marker}, start the thread
    C{other} (L{on_another_connection}) and give it a second to finish.

    @return: C{(function's result, whether other finished within that
        second)}.
    """
    from twisted.internet.threads import deferToThread

    finished_meanwhile = []

    def interleaved_txn(txn):
        execute = txn.execute

        def execute_then_other(sql, args=()):
            cursor = execute(sql, args)
            if marker in sql and other.ident is None:
                other.start()
                other.join(1.0)
                finished_meanwhile.append(not other.is_alive())
            return cursor

        txn.execute = execute_then_other
        return function(txn)

    result = await run("interleaved", interleaved_txn)
    await deferToThread(other.join, 30)
    testcase.assertFalse(other.is_alive())
    testcase.assertEqual(len(finished_meanwhile), 1)
    return result, finished_meanwhile[0]


class HandshakeFailed(Exception):
    """
    A WebSocket upgrade was refused; C{reason} has Autobahn's account
    (with the HTTP status).
    """


def _ws_client_protocol():
    from autobahn.twisted.websocket import WebSocketClientProtocol
    from twisted.internet.defer import Deferred, DeferredQueue

    from chatd.protocol.message_pb2 import Message

    class ChatTestClient(WebSocketClientProtocol):
        """
        A real Autobahn client: decoded frames queue up in C{frames};
        C{closed} fires with C{(code, reason)}.
        """

        def __init__(self):
            super().__init__()
            self.frames = DeferredQueue()
            self.opened = Deferred()
            self.closed = Deferred()
            self.lost = Deferred()

        def onOpen(self):
            self.opened.callback(self)

        def onMessage(self, payload, isBinary):
            self.frames.put(Message.FromString(payload))

        def onClose(self, wasClean, code, reason):
            if not self.opened.called:
                self.opened.errback(HandshakeFailed(reason))
            if not self.closed.called:
                self.closed.callback((code, reason))

        def connectionLost(self, reason):
            super().connectionLost(reason)
            if not self.lost.called:
                self.lost.callback(None)

        def send(self, frame=None, **fields):
            """
            Send a frame: a L{Message}, or its fields (C{from_} for
            C{from}).
            """
            if frame is None:
                if "from_" in fields:
                    fields["from"] = fields.pop("from_")
                frame = Message(**fields)
            self.sendMessage(frame.SerializeToString(), isBinary=True)

        def next(self, timeout=10):
            """
            The next frame received (a Deferred).
            """
            return self.frames.get().addTimeout(timeout, reactor)

        async def next_of(self, *kinds, timeout=10):
            """
            The next frame of one of the types C{kinds} ("" for messages),
            skipping others (presence, receipts ...).
            """
            while True:
                frame = await self.next(timeout)
                if frame.type in kinds:
                    return frame

        async def close(self):
            if self.state == self.STATE_OPEN:
                self.sendClose(1000)
            elif not self.lost.called and self.transport is not None:
                self.transport.abortConnection()
            await self.lost

    return ChatTestClient


async def ws_connect(testcase, url, headers=None, origin=None, ca_path=None):
    """
    Open a WebSocket with a real Autobahn client; closed when the test
    ends. A C{wss://} URL needs C{ca_path}, the CA to trust.

    @raise HandshakeFailed: the server refused the upgrade.
    @return: the client protocol (see C{ChatTestClient} above).
    """
    from urllib.parse import urlsplit

    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint

    factory = WebSocketClientFactory(url, headers=headers or {}, origin=origin,
                                     reactor=reactor)
    factory.protocol = _ws_client_protocol()
    factory.setProtocolOptions(openHandshakeTimeout=10, closeHandshakeTimeout=5)
    parts = urlsplit(url)
    if parts.scheme == "wss":
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        with open(ca_path, "rb") as f:
            trust = Certificate.loadPEM(f.read())
        endpoint = SSL4ClientEndpoint(
            reactor, parts.hostname, parts.port,
            optionsForClientTLS(parts.hostname, trust), timeout=10)
    else:
        endpoint = TCP4ClientEndpoint(reactor, parts.hostname, parts.port,
                                      timeout=10)
    client = await endpoint.connect(factory)
    testcase.addCleanup(client.close)
    await client.opened
    return client


def ws_url(service, **params):
    from urllib.parse import urlencode

    port = listening_ports(service)[0]
    query = f"?{urlencode(params)}" if params else ""
    return f"ws://127.0.0.1:{port}/socket.io{query}"


async def connect_user(testcase, service, user, welcome=True):
    """
    Connect C{user} to a running server as go-chat-web does (C{?user=}),
    with a fresh token in the query; the welcome frame is consumed.
    """
    token, _ = await service.parts.tokens.issue(user)
    client = await ws_connect(testcase, ws_url(service, user=user.uuid,
                                               token=token))
    if welcome:
        frame = await client.next_of("")
        assert frame.content == "welcome!", frame
    return client


def server_database(service):
    """
    The L{Database} of a running service tree.
    """
    from chatd.service import DatabaseService

    return next(child.database for child in service
                if isinstance(child, DatabaseService))


class ApiClient:
    """
    Calls chatd's REST API in memory through C{treq.testing.StubTreq}; the
    stub is flushed continually, since the database answers from threads.
    """

    def __init__(self, testcase, resource):
        from treq.testing import StubTreq
        from twisted.internet.task import LoopingCall

        self.stub = StubTreq(resource)
        # Like a fresh browser per request: tests send cookies explicitly.
        from http.cookiejar import DefaultCookiePolicy

        self.stub.request.__wrapped__.__self__._cookiejar.set_policy(
            DefaultCookiePolicy(allowed_domains=[]))
        pump = LoopingCall(self.stub.flush)
        pump.clock = reactor
        pump.start(0.001)
        testcase.addCleanup(pump.stop)

    async def request(self, method, path, token=None, headers=None, **kwargs):
        """
        @return: C{(response, body bytes)}.
        """
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.stub.request(
            method, "http://chatd.test" + path, headers=headers, **kwargs)
        return response, await response.content()

    async def call(self, method, path, token=None, headers=None, **kwargs):
        """
        @return: C{(HTTP status, decoded envelope)}.
        """
        import json

        response, body = await self.request(method, path, token, headers,
                                            **kwargs)
        return response.code, json.loads(body)


async def api_client(testcase, **changes):
    """
    The REST API over a fresh database, in memory: C{(client, parts)}.
    C{changes} are config overrides as for L{test_config}; password hashing
    is made cheap.
    """
    from chatd.parts import build_parts
    from chatd.web.site import build_root

    changes.setdefault("auth_scrypt_log2_n", 10)
    config = test_config(testcase, **changes)
    database = await migrated_database(testcase)
    parts = build_parts(config, database, reactor)
    return ApiClient(testcase, build_root(config, database, reactor, parts)), parts


async def sign_up(client, username, password="password1", **fields):
    """
    Register and log in through the API: C{(user data, token)}.
    """
    code, answer = await client.call(
        "POST", "/user/register",
        json=dict(username=username, password=password, **fields))
    assert code == 201, (code, answer)
    code, answer = await client.call(
        "POST", "/user/login", json={"username": username, "password": password})
    assert code == 200, (code, answer)
    return answer["data"], answer["data"]["token"]


def multipart(fields=(), files=()):
    """
    A C{multipart/form-data} body, as a browser's form upload sends it
    (StubTreq cannot encode files): C{(body, headers)}.

    @param fields: C{(name, text)} pairs.
    @param files: C{(name, filename, bytes)} triples.
    """
    boundary = "chatd-test-boundary-7MA4YWxkTrZu0gW"
    chunks = []
    for name, value in fields:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
            f"\r\n\r\n{value}\r\n".encode())
    for name, filename, data in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: application/octet-stream'
            "\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return b"".join(chunks), headers


async def sign_up_three(testcase, **changes):
    """
    An in-memory API client (C{testcase.client}, C{testcase.parts}) and
    three users signed up through it: C{testcase.alice}, C{.bob}, C{.carol}
    (their user JSON) and C{.alice_token}, C{.bob_token}, C{.carol_token};
    C{testcase.ids} maps each name to its user id.
    """
    testcase.client, testcase.parts = await api_client(testcase, **changes)
    testcase.ids = {}
    for name in ("alice", "bob", "carol"):
        user, token = await sign_up(testcase.client, name)
        setattr(testcase, name, user)
        setattr(testcase, f"{name}_token", token)
        testcase.ids[name] = (await testcase.parts.users.get_by_uuid(user["uuid"])).id


async def start_chat(testcase, **changes):
    """
    A running chatd (C{testcase.config}, C{.service}, C{.database}, no
    autoping unless asked) with users C{testcase.alice} (avatar a.png),
    C{.bob} and C{.carol}; alice and bob are friends.
    """
    changes.setdefault("websocket_autoping_interval", 0.0)
    testcase.config = test_config(testcase, **changes)
    testcase.service = await start_server(testcase, testcase.config)
    testcase.database = server_database(testcase.service)
    testcase.alice = await create_user(testcase.database, "alice", avatar="a.png")
    testcase.bob = await create_user(testcase.database, "bob")
    testcase.carol = await create_user(testcase.database, "carol")
    await make_friends(testcase.database, testcase.alice, testcase.bob)
