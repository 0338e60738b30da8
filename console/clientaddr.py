"""Who is on the other end: the one client address used for sign-in lockout, rate limits
and the audit log, for HTTP and WebSocket alike.

Daphne's own ``--proxy-headers`` believes the left-most ``X-Forwarded-For`` hop from
anyone, so any client could pick its address. Tanglaw runs Daphne without it and this
ASGI middleware decides instead: forwarding headers count only when the peer is a
configured proxy (``TANGLAW_TRUSTED_PROXIES``: addresses or networks, none by default),
and then the client is the right-most hop that is not itself a trusted proxy — the
address the first proxy we trust saw. Every forwarding header is removed from the scope
afterwards, so nothing downstream (django-axes, django-ninja's throttles, Django's
``SECURE_PROXY_SSL_HEADER``) can read a client-written one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDING_HEADERS = frozenset({
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-forwarded-scheme", b"x-real-ip", b"forwarded", b"x-client-ip",
    b"true-client-ip", b"cf-connecting-ip", b"x-cluster-client-ip",
})


def parse_networks(entries: Iterable[str], variable: str = "TANGLAW_TRUSTED_PROXIES"
                   ) -> tuple[Network, ...]:
    """Addresses and networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``), or
    ImproperlyConfigured naming the variable and the bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{variable}: {entry!r} is not an IP address or network") from None
    return tuple(out)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _trusted(ip, networks: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def resolve(peer: str | None, forwarded_for: Sequence[str],
            trusted: Sequence[Network]) -> str | None:
    """The client address: the peer itself unless it is a trusted proxy; then walk the
    X-Forwarded-For hops from the right, past trusted proxies, to the first that is not.
    A malformed hop ends the walk at the last address a trusted proxy vouched for."""
    peer_ip = _ip(peer) if peer else None
    if peer_ip is None:
        return peer
    if not trusted or not _trusted(peer_ip, trusted):
        return str(peer_ip)
    client = peer_ip
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break
        client = ip
        if not _trusted(ip, trusted):
            break
    return str(client)


class ClientAddressMiddleware:
    """ASGI middleware (outermost, for HTTP and WebSocket): sets ``scope["client"]`` to
    the resolved client address, the scheme from a trusted proxy's X-Forwarded-Proto,
    and strips every forwarding header."""

    def __init__(self, inner, trusted: Sequence[Network] | None = None):
        self.inner = inner
        self._trusted = trusted

    @property
    def trusted(self) -> Sequence[Network]:
        if self._trusted is not None:
            return self._trusted
        from django.conf import settings

        return settings.TANGLAW_TRUSTED_PROXIES

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.inner(scope, receive, send)
        headers = scope.get("headers") or []
        forwarded = [v.decode("latin1") for n, v in headers if n == b"x-forwarded-for"]
        protos = [v.decode("latin1") for n, v in headers if n == b"x-forwarded-proto"]
        had_forwarding = any(n in FORWARDING_HEADERS for n, _ in headers)
        peer, port = (scope.get("client") or (None, 0))[:2]
        client = resolve(peer, forwarded, self.trusted)
        scope = dict(scope)
        scope["headers"] = [(n, v) for n, v in headers if n not in FORWARDING_HEADERS]
        if client is not None:
            scope["client"] = (client, port if client == peer else 0)
        peer_ip = _ip(peer) if peer else None
        from_proxy = peer_ip is not None and _trusted(peer_ip, self.trusted)
        if from_proxy and protos:
            proto = protos[-1].split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                secure = proto == "https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = proto
        # a request that arrived with forwarding headers came through some proxy:
        # loopback-only endpoints must not take it as local
        scope["tanglaw.forwarded"] = had_forwarding
        return await self.inner(scope, receive, send)


def client_ip(request) -> str | None:
    """The client address of a Django request (set by ClientAddressMiddleware)."""
    return request.META.get("REMOTE_ADDR") or None


def came_through_proxy(request) -> bool:
    """True when the request was forwarded by any proxy (trusted or not)."""
    scope = getattr(request, "scope", None) or {}
    return bool(scope.get("tanglaw.forwarded")) or "HTTP_X_FORWARDED_FOR" in request.META
