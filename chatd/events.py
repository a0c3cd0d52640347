"""
In-process notifications of changes that cached state depends on, such as
group membership and friendships.

Publishers call L{Events.publish}; the Hub (and, across nodes, the bus)
subscribes. Subscribers run synchronously, on the reactor thread, after the
change is committed.
"""

from twisted.logger import Logger

log = Logger()

# Event names and their keyword arguments.
MEMBER_JOINED = "member_joined"  # group_id, user_id
MEMBER_LEFT = "member_left"  # group_id, user_id
GROUP_DELETED = "group_deleted"  # group_id
FRIENDSHIP_ADDED = "friendship_added"  # user_id, friend_id
FRIENDSHIP_REMOVED = "friendship_removed"  # user_id, friend_id
TOKEN_REVOKED = "token_revoked"  # user_id, token_id
TOKENS_REVOKED = "tokens_revoked"  # user_id, issued_before (ms)


class Events:
    def __init__(self):
        self._subscribers = {}

    def subscribe(self, name, callback):
        self._subscribers.setdefault(name, []).append(callback)

    def publish(self, name, **details):
        for callback in self._subscribers.get(name, ()):
            try:
                callback(**details)
            except Exception:
                log.failure("Subscriber to {name} failed", name=name)
