"""
Who the client is when chatd runs behind reverse proxies
(C{server.trusted_proxies}): for a request whose TCP peer is a trusted
proxy, the client address comes from C{X-Forwarded-For} (the right-most
address that is not itself a trusted proxy) and TLS from
C{X-Forwarded-Proto}. From any other peer these headers are ignored.
"""

import ipaddress


def _ip(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _header_values(request, name):
    values = request.requestHeaders.getRawHeaders(name) or []
    return _list_values([value.decode("latin-1") for value in values])


def _list_values(values):
    # A header's comma-separated values, over all its lines.
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class ProxyPolicy:
    def __init__(self, trusted_proxies=()):
        self._networks = [ipaddress.ip_network(n, strict=False)
                          for n in trusted_proxies]

    def _trusted(self, address):
        return address is not None and any(address in n for n in self._networks)

    def _peer(self, request):
        peer = request.getClientAddress()
        return getattr(peer, "host", None) or str(peer)

    def _from_proxy(self, request):
        return self._is_proxy(self._peer(request))

    def _is_proxy(self, peer):
        return bool(self._networks) and self._trusted(_ip(peer or ""))

    def client_address(self, request):
        """
        The client's address, as text.
        """
        peer = self._peer(request)
        if not self._from_proxy(request):
            return peer
        for hop in reversed(_header_values(request, b"x-forwarded-for")):
            address = _ip(hop)
            if address is None:
                break
            if not self._trusted(address):
                return str(address)
        return peer

    def is_secure(self, request):
        """
        Whether the client reached chatd (or its proxy) over TLS.
        """
        return self.secure_via(self._peer(request), request.isSecure(),
                               request.requestHeaders.getRawHeaders(b"x-forwarded-proto"))

    def secure_via(self, peer, tls, forwarded_protos):
        """
        L{is_secure} from its parts, where there is no twisted.web request
        (a WebSocket upgrade): the TCP C{peer}'s address, whether the
        connection is C{tls}, and the C{X-Forwarded-Proto} header's lines
        (str or bytes; None if absent).
        """
        if tls:
            return True
        if not self._is_proxy(peer):
            return False
        protos = _list_values([p.decode("latin-1") if isinstance(p, bytes) else p
                               for p in forwarded_protos or ()])
        return bool(protos) and protos[-1].lower() == "https"
