"""
chatd's configuration: one TOML file plus command-line overrides, parsed
into frozen, typed objects.

Every section is a frozen dataclass below; every field is a key of that
section in the TOML file, with its type, its default, and an optional check.
A field marked secret may instead be given as ``<key>_file``: a path whose
contents (stripped of surrounding white space) are the value.

A wrong key, type or value raises L{ConfigError}, whose message names the
file and the key.
"""

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from chatd.stores.messages import MAX_BATCH


class ConfigError(Exception):
    """
    The configuration is wrong; the message says where and why.
    """


def _setting(default, doc, check=None, secret=False):
    return field(
        default=default, metadata={"doc": doc, "check": check, "secret": secret}
    )


def _positive(value):
    if value <= 0:
        return "must be greater than 0"


def _not_negative(value):
    if value < 0:
        return "must not be negative"


def _non_empty(values):
    if not values:
        return "must name at least one value"


def _database_url(value):
    if value and not value.startswith(("sqlite:///", "mysql://")):
        return "must start with sqlite:/// or mysql://"


def _between(low, high):
    def check(value):
        if not low <= value <= high:
            return f"must be between {low} and {high}"
    return check


def _cookie_name(value):
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        return "must be 1-64 letters, digits, '_', '.' or '-'"


def _token_secret(value):
    if value and len(value.encode("utf-8")) < 32:
        return "must be at least 32 bytes long (or empty)"


def _networks(values):
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or network like 10.0.0.0/8"


def _origins(values):
    for origin in values:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            return f"{origin!r} is not an origin like https://chat.example.com"


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[str, ...] = _setting(
        ("tcp:8888",),
        "Twisted endpoint strings to listen on.",
        _non_empty,
    )
    data_dir: str = _setting(
        "chatd-data", "Directory for the SQLite database, files and secrets."
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), "Extra origins allowed for CORS and cookie-authenticated WebSockets.",
        _origins,
    )
    static_dir: str = _setting(
        "", "A web client build to serve at / (empty: none)."
    )
    trusted_proxies: tuple[str, ...] = _setting(
        (), "Addresses or networks of reverse proxies whose X-Forwarded-For"
        " and X-Forwarded-Proto headers are believed.",
        _networks,
    )


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _setting(
        "",
        "sqlite:///PATH or mysql://USER[:PASSWORD]@HOST[:PORT]/NAME;"
        " empty means DATA_DIR/chatd.sqlite3.",
        _database_url,
    )
    password: str = _setting(
        "", "MySQL password, if not in the URL.", secret=True
    )
    pool_size: int = _setting(
        5, "MySQL connections in the pool, besides the message writer's own"
        " (SQLite always uses one).", _positive
    )
    retries: int = _setting(
        3, "Times a transaction is retried after a deadlock or lost connection.",
        _not_negative,
    )
    checkpoint_interval: float = _setting(
        0.05, "SQLite: seconds between copies of the write-ahead log into the"
        " database file made on a background connection, so that storing"
        " messages does not wait for them (0: the connection that stores"
        " messages makes them all).", _not_negative,
    )


@dataclass(frozen=True)
class AuthConfig:
    token_secret: str = _setting(
        "",
        "HS256 key for access tokens; empty: generated into DATA_DIR/token_secret.",
        _token_secret, secret=True,
    )
    token_lifetime: int = _setting(
        7 * 24 * 3600, "Seconds an access token stays valid.", _positive
    )
    cookie_name: str = _setting(
        "chatd_token", "Name of the HttpOnly cookie that carries the token.",
        _cookie_name,
    )
    password_min_length: int = _setting(
        8, "Shortest password accepted at registration and change.", _positive
    )
    scrypt_log2_n: int = _setting(
        15, "scrypt cost for new password hashes: memory is 2**n KiB.",
        _between(10, 20),
    )
    login_address_burst: int = _setting(
        20, "Failed logins a client address may make in a row.", _positive
    )
    login_address_per_hour: int = _setting(
        60, "Failed logins a client address regains per hour.", _not_negative
    )
    login_account_burst: int = _setting(
        5, "Failed logins one account may suffer in a row.", _positive
    )
    login_account_per_hour: int = _setting(
        12, "Failed logins an account regains per hour.", _not_negative
    )
    register_address_burst: int = _setting(
        5, "Registrations a client address may make in a row.", _positive
    )
    register_address_per_hour: int = _setting(
        10, "Registrations a client address regains per hour.", _not_negative
    )


@dataclass(frozen=True)
class FilesConfig:
    max_upload_bytes: int = _setting(
        10 * 1024 * 1024, "Largest file accepted (uploads and attachments).",
        _positive,
    )
    upload_bytes_per_hour: int = _setting(
        1024 * 1024 * 1024,
        "Bytes of files (attachments and avatars) one user may store an"
        " hour, up to a quarter of it at once; 0: no limit.",
        _not_negative,
    )

@dataclass(frozen=True)
class WebsocketConfig:
    max_message_bytes: int = _setting(
        16 * 1024 * 1024,
        "Largest WebSocket message accepted (go-chat sends images and"
        " recordings in frames; base64 data URLs are a third larger).",
        _positive,
    )
    max_frame_bytes: int = _setting(
        16 * 1024 * 1024, "Largest single WebSocket frame accepted.", _positive
    )
    max_content_chars: int = _setting(
        10000, "Longest text content of one message, in characters.", _positive
    )
    open_handshake_timeout: float = _setting(
        10.0, "Seconds a client has to finish the WebSocket upgrade.", _positive
    )
    close_handshake_timeout: float = _setting(
        3.0, "Seconds to wait for the peer's close frame before dropping.",
        _positive,
    )
    autoping_interval: float = _setting(
        30.0, "Seconds a client may be silent before the server pings it;"
        " 0 disables pings.",
        _not_negative,
    )
    autoping_timeout: float = _setting(
        20.0, "Seconds a pinged client may stay silent before it is dropped.",
        _positive,
    )
    max_connections_per_user: int = _setting(
        8, "Devices one user may have connected at once.", _positive
    )
    max_outgoing_bytes: int = _setting(
        4 * 1024 * 1024,
        "Bytes queued for one slow connection (beyond the socket's own buffer)"
        " before it is closed with code 4008.",
        _positive,
    )
    max_pending_frames: int = _setting(
        64, "Frames of one connection in flight before chatd stops reading it.",
        _positive,
    )
    max_refusals_per_minute: int = _setting(
        120,
        "Frames of one connection refused (error frames; not the server's"
        " own failures) within a minute before it is closed as abusive"
        " (code 1008).",
        _positive,
    )
    messages_per_second: float = _setting(
        20.0,
        "Messages one user may store a second on average, all devices"
        " together; more are refused with a rate_limited error frame."
        " 0: no limit.",
        _not_negative,
    )
    messages_burst: int = _setting(
        200, "Messages one user may store at once before messages_per_second"
        " applies.", _positive,
    )
    batch_size: int = _setting(
        256,
        "Most messages stored in one transaction (group commit); at most"
        f" {MAX_BATCH}, one MySQL statement's worth.",
        _between(1, MAX_BATCH),
    )
    batch_delay: float = _setting(
        0.0,
        "Seconds to wait for more messages before a commit; 0 commits what"
        " arrived together, and what arrives during a commit goes in the next.",
        _not_negative,
    )
    sync_page_size: int = _setting(
        100, "Messages read from the database per sync page.", _positive
    )
    sync_max_messages: int = _setting(
        1000,
        "Most messages one sync request replays; the done frame then says"
        " there is more.",
        _positive,
    )


def _urls(schemes):
    def check(values):
        for url in values:
            if not url.startswith(schemes):
                return f"{url!r} must start with " + " or ".join(schemes)
    return check


@dataclass(frozen=True)
class CallsConfig:
    ring_timeout: float = _setting(
        45.0, "Seconds a call rings before it ends as missed.", _positive
    )
    disconnect_grace: float = _setting(
        10.0,
        "Seconds a party that lost its connection during a call has to come"
        " back before the call ends; 0 ends it at once.",
        _not_negative,
    )
    friends_only: bool = _setting(True, "Only friends may call each other.")
    dial_burst: int = _setting(
        5, "Calls one user may start in a row.", _positive
    )
    dials_per_minute: float = _setting(
        6.0, "Calls one user may start per minute after the burst.", _positive
    )
    signal_frames_per_second: float = _setting(
        20.0, "Call signalling frames (offers, answers, ICE candidates) one"
        " user may send per second, after a burst of four times as many.",
        _positive,
    )
    max_signal_bytes: int = _setting(
        64 * 1024, "Largest call signalling frame relayed.", _positive
    )
    media_frames_per_second: float = _setting(
        30.0, "Video and screen-share frames one user may send per second.",
        _positive,
    )
    media_bytes_per_second: int = _setting(
        2 * 1024 * 1024,
        "Bytes of video and screen-share frames one user may send per second.",
        _positive,
    )
    stun_urls: tuple[str, ...] = _setting(
        (), "STUN server URLs given to clients.", _urls(("stun:", "stuns:"))
    )
    turn_urls: tuple[str, ...] = _setting(
        (), "TURN server URLs given to clients, with credentials.",
        _urls(("turn:", "turns:")),
    )
    turn_secret: str = _setting(
        "", "Shared secret of the TURN server (coturn static-auth-secret).",
        secret=True,
    )
    turn_credential_lifetime: int = _setting(
        86400, "Seconds a TURN credential stays valid.", _positive
    )


@dataclass(frozen=True)
class MessagesConfig:
    recall_window: float = _setting(
        120.0, "Seconds after sending during which a sender may recall a"
        " message (a group owner may recall any group message).", _not_negative
    )
    edit_window: float = _setting(
        120.0, "Seconds after sending during which a sender may edit a text"
        " message.", _not_negative
    )
    typing_burst: int = _setting(
        5, "Typing frames one user may send in a row.", _positive
    )
    typing_per_second: float = _setting(
        1.0, "Typing frames one user may send per second after the burst"
        " (the rest are dropped).", _positive
    )
    presence_debounce: float = _setting(
        5.0, "Seconds a user's last connection must stay gone before friends"
        " and fellow members are told they went offline.", _not_negative
    )
    search_index_interval: float = _setting(
        2.0, "Seconds between runs of the search indexer (0: index only when"
        " someone searches).", _not_negative
    )


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    websocket: WebsocketConfig = field(default_factory=WebsocketConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)

    @property
    def database_url(self):
        """
        The database URL, defaulting to a SQLite file in the data directory.
        """
        if self.database.url:
            return self.database.url
        return "sqlite:///" + os.path.join(self.server.data_dir, "chatd.sqlite3")


def sections():
    """
    The sections of L{Config}: (name, section class) pairs, in order.
    """
    return [(f.name, f.type) for f in dataclasses.fields(Config)]


def _type_name(kind):
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    return {str: "a string", int: "an integer", bool: "true or false",
            float: "a number"}[kind]


def _coerce(kind, value):
    """
    Return C{value} as C{kind}, or raise L{TypeError}.
    """
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise TypeError
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise TypeError
    if not isinstance(value, kind):
        raise TypeError
    return value


def _read_secret(path, where):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(f"{where}_file: cannot read {path}: {e.strerror}")


def _build_section(cls, table, name, source):
    values = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in table.items():
        where = f"{source}: {name}.{key}"
        if key.endswith("_file") and key[:-5] in known and known[key[:-5]].metadata["secret"]:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: must be a string (a path)")
            if key[:-5] in table:
                raise ConfigError(f"{where}: give {key[:-5]} or {key}, not both")
            values[key[:-5]] = _read_secret(value, where[:-5])
            continue
        if key not in known:
            raise ConfigError(f"{where}: unknown key")
        kind = hints[key]
        try:
            values[key] = _coerce(kind, value)
        except TypeError:
            raise ConfigError(f"{where}: must be {_type_name(kind)}")
    for key, value in values.items():
        check = known[key].metadata["check"]
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{source}: {name}.{key}: {problem}")
    return cls(**values)


def config_from_dict(data, source="<config>"):
    """
    Build a L{Config} from parsed TOML, checking every key.
    """
    known = dict(sections())
    for name, table in data.items():
        if name not in known:
            raise ConfigError(f"{source}: [{name}]: unknown section")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name}: must be a table ([{name}])")
    config = Config(**{
        name: _build_section(cls, data.get(name, {}), name, source)
        for name, cls in sections()
    })
    if config.calls.turn_urls and not config.calls.turn_secret:
        raise ConfigError(f"{source}: calls.turn_urls: needs calls.turn_secret"
                          " (or turn_secret_file), the TURN server's"
                          " static-auth-secret")
    return config


def load_config(path=None):
    """
    Read the TOML file at C{path}; with no path, return the defaults.
    """
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}")
    return config_from_dict(data, path)


def override(config, source="command line", **changes):
    """
    Return C{config} with C{changes} given as C{section_key=value}, checked
    like the file's values.
    """
    for name, cls in sections():
        prefix = name + "_"
        table = {k[len(prefix):]: v for k, v in changes.items()
                 if k.startswith(prefix)}
        if table:
            current = dataclasses.asdict(getattr(config, name))
            checked = _build_section(cls, table, name, source)
            merged = {k: getattr(checked, k) if k in table else current[k]
                      for k in current}
            config = dataclasses.replace(config, **{name: cls(**merged)})
    return config


def _without_password(parts):
    """
    A split URL as text for messages, its password (if any) starred out.
    """
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=userinfo.split(":", 1)[0] + ":***@" + host)
    return parts.geturl()


def parse_database_url(url):
    """
    Split a database URL into C{(engine_name, parameters)}.

    @raise ConfigError: the URL is not one chatd understands.
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ConfigError(f"database URL {url!r}: no file path")
        if path == ":memory:" or path.startswith("file:"):
            # The search index's connection opens the database too.
            raise ConfigError(f"database URL {url!r}: give a file path")
        return "sqlite", {"path": path}
    parts = urlsplit(url)
    shown = _without_password(parts)
    if parts.scheme != "mysql":
        raise ConfigError(f"database URL {shown!r}: use sqlite:/// or mysql://")
    database = parts.path.lstrip("/")
    if not parts.hostname or not database:
        raise ConfigError(
            f"database URL {shown!r}: needs mysql://USER@HOST[:PORT]/DATABASE")
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError(f"database URL {shown!r}: bad port")
    return "mysql", {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database,
    }
