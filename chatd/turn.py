"""
ICE servers for calls: STUN and TURN servers from C{[calls]}, with
time-limited TURN credentials.

The credentials follow the TURN REST API shared-secret scheme, which
coturn accepts with C{use-auth-secret} and C{static-auth-secret} set to
chatd's C{calls.turn_secret}:

    username = "<expiry, unix time>:<user uuid>"
    password = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the password from the username and refuses it
once the expiry has passed, so chatd and the TURN server share nothing but
the secret.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass

from chatd.config import ConfigError


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int


def turn_credential(secret, user, lifetime, now):
    """
    A TURN credential for C{user} (a uuid or name), valid C{lifetime}
    seconds from C{now} (unix time).
    """
    expires_at = int(now) + int(lifetime)
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"),
                      hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"),
                          expires_at)


class IceServers:
    """
    @param config: the L{chatd.config.CallsConfig}.
    @param clock: an L{twisted.internet.interfaces.IReactorTime}.

    @raise ConfigError: TURN servers are configured without a secret.
    """

    def __init__(self, config, clock):
        if config.turn_urls and not config.turn_secret:
            raise ConfigError(
                "calls.turn_urls needs calls.turn_secret (or turn_secret_file),"
                " the TURN server's static-auth-secret")
        self._config = config
        self._clock = clock

    def for_user(self, user_uuid):
        """
        The ICE servers for a user, as C{RTCPeerConnection}'s
        C{iceServers} takes them, and how long the credentials last:
        C{{"iceServers": [...], "ttl": seconds, "expiresAt": unix time}}
        (no C{expiresAt} without TURN servers).
        """
        c = self._config
        servers = []
        answer = {"iceServers": servers}
        if c.stun_urls:
            servers.append({"urls": list(c.stun_urls)})
        if c.turn_urls:
            credential = turn_credential(c.turn_secret, user_uuid,
                                         c.turn_credential_lifetime,
                                         self._clock.seconds())
            servers.append({"urls": list(c.turn_urls),
                            "username": credential.username,
                            "credential": credential.password})
            answer["ttl"] = c.turn_credential_lifetime
            answer["expiresAt"] = credential.expires_at
        return answer
