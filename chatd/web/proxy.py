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


def _header_lines(request, name):
    return [line.decode("latin-1")
            for line in request.requestHeaders.getRawHeaders(name) or []]


def _list_values(lines):
    # A header's comma-separated values, over all its lines.
    return [v.strip() for line in lines for v in line.split(",") if v.strip()]


def _header_values(request, name):
    return _list_values(_header_lines(request, name))


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
                               _header_lines(request, b"x-forwarded-proto"))

    def secure_via(self, peer, tls, forwarded_proto_lines):
        """
        L{is_secure} from its parts, where there is no twisted.web request
        (a WebSocket upgrade): the TCP C{peer}'s address, whether the
        connection is C{tls}, and the lines of the C{X-Forwarded-Proto}
        header (text).
        """
        if tls:
            return True
        if not self._is_proxy(peer):
            return False
        protos = _list_values(forwarded_proto_lines)
        return bool(protos) and protos[-1].lower() == "https"
