"""
The parts chatd's protocols share (stores, handlers, token service, file
store, change events), built once per process from the configuration, so
that the REST API and the WebSocket use the same instances.
"""

import os
from dataclasses import dataclass

from chatd.auth.passwords import PasswordHasher
from chatd.auth.ratelimit import AuthLimits
from chatd.auth.tokens import TokenService, load_token_secret
from chatd.events import Events
from chatd.files import FileStore
from chatd.handlers.accounts import Accounts
from chatd.handlers.conversations import build_conversations
from chatd.handlers.groups import Groups
from chatd.handlers.history import History
from chatd.handlers.social import Social
from chatd.stores.files import FileRecordStore
from chatd.stores.groups import GroupStore
from chatd.stores.messages import MessageStore
from chatd.stores.social import SocialStore
from chatd.stores.users import UserStore
from chatd.turn import IceServers


@dataclass
class Parts:
    config: object
    events: Events
    users: UserStore
    social_store: SocialStore
    group_store: GroupStore
    messages: MessageStore
    files: FileStore
    tokens: TokenService
    passwords: PasswordHasher
    limits: AuthLimits
    accounts: Accounts
    social: Social
    groups: Groups
    history: History
    ice_servers: IceServers = None
    conversations: object = None
    reactor: object = None


def build_parts(config, database, reactor, events=None):
    """
    Build the shared parts over C{database}; C{reactor} is their clock and
    thread pool. The token secret is read or generated here.
    """
    events = events if events is not None else Events()
    users = UserStore(database)
    social_store = SocialStore(database)
    group_store = GroupStore(database)
    messages = MessageStore(database)
    files = FileStore(
        os.path.join(config.server.data_dir, "files"),
        FileRecordStore(database), config.files.max_upload_bytes, reactor,
        config.files.upload_bytes_per_hour)
    secret = load_token_secret(config.auth.token_secret, config.server.data_dir)
    tokens = TokenService(database, secret, config.auth.token_lifetime, reactor)
    passwords = PasswordHasher(reactor, log2_n=config.auth.scrypt_log2_n)
    limits = AuthLimits(reactor, config.auth)
    accounts = Accounts(users, passwords, tokens, limits, files, reactor,
                        events, config.auth.password_min_length)
    social = Social(users, social_store, group_store, events, reactor)
    groups = Groups(users, group_store, events, reactor, files)
    history = History(users, groups, messages)
    parts = Parts(config, events, users, social_store, group_store, messages,
                  files, tokens, passwords, limits, accounts, social, groups,
                  history, ice_servers=IceServers(config.calls, reactor),
                  reactor=reactor)
    parts.conversations = build_conversations(config, database, reactor,
                                              parts)
    return parts
