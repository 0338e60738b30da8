"""Which backend URLs Tanglaw will talk to.

Edge backends live on loopback and private networks, so those are allowed.
Link-local and cloud-metadata addresses are refused however they are spelled:
decimal, hex and octal IPv4, IPv4-mapped/compatible/NAT64/6to4 IPv6, trailing
dots, userinfo and backslash tricks.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

ALLOWED_SCHEMES = {"http", "https"}
BLOCKED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",     # IPv4 link-local, incl. 169.254.169.254 metadata
        "0.0.0.0/8",          # "this network"
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",   # Azure wire server
        "224.0.0.0/4",        # multicast
        "255.255.255.255/32",
        "fe80::/10",          # IPv6 link-local
        "fd00:ec2::254/128",  # AWS IPv6 metadata
        "ff00::/8",           # IPv6 multicast
        "::/128",
    )
]
BLOCKED_NAMES = {
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal",
}


# IPv6 prefixes whose last 32 bits are an IPv4 address the packet ends up at
EMBEDDING_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "64:ff9b::/96",       # NAT64, well-known prefix (RFC 6052)
        "64:ff9b:1::/48",     # NAT64, local-use prefix (RFC 8215)
        "::ffff:0:0:0/96",    # IPv4-translated (RFC 2765, SIIT)
    )
]


class UnsafeURL(ValueError):
    """The URL is not one Tanglaw will connect to; the message says why."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    if any(ip in network for network in EMBEDDING_V4):
        return ipaddress.IPv4Address(packed[12:])
    if ip.teredo:  # Teredo carries the client's address, obfuscated
        return ip.teredo[1]
    return None


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address however spelled, or None for a DNS name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    # inet_aton accepts the legacy forms: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError):
        return None


def check_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (v4 := _embedded_v4(ip)):
        candidates.append(v4)
    for candidate in candidates:
        for network in BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                kind = "link-local or cloud-metadata" if candidate.is_link_local or str(
                    candidate) in ("169.254.169.254", "100.100.100.200", "168.63.129.16",
                                   "fd00:ec2::254") else "reserved"
                raise UnsafeURL(f"{ip} is a {kind} address; Tanglaw will not connect to it")


@dataclass(frozen=True)
class ParsedURL:
    """A URL as the HTTP clients read it."""

    url: str
    scheme: str
    host: str  # as the client sends it: lower case, IDNA-encoded, IPv6 without brackets
    port: int  # the default port filled in
    has_userinfo: bool
    has_query: bool
    has_fragment: bool


def parse_url(url: str) -> ParsedURL:
    """Parse with the parser the HTTP clients themselves use — httpx for probes, pulls
    and tools, httpx2 under the openai SDK and MCP — so nothing is saved that they would
    refuse on every request (an octal dotted IPv4 host such as 0177.0.0.1 passed Python's
    urlsplit, then failed every monitor round). Raise UnsafeURL saying what is wrong."""
    if "\\" in url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UnsafeURL("the URL contains a backslash, a space or a control character")
    parsed = None
    for module in _client_modules():
        try:
            candidate = module.URL(url)
            module.Request("GET", candidate)  # the rest of its checks (host, port)
        except (module.InvalidURL, ValueError, TypeError, UnicodeError) as exc:
            raise UnsafeURL(f"the URL cannot be used: {exc}") from None
        parsed = parsed or candidate
    assert parsed is not None
    scheme = parsed.scheme.lower()
    default = 443 if scheme == "https" else 80
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        # httpx accepts any number here, and the resolver wraps it (65616 → 80)
        raise UnsafeURL(f"port {parsed.port} is not a port number (1-65535)")
    return ParsedURL(url=url, scheme=scheme, host=parsed.host,
                     port=parsed.port if parsed.port is not None else default,
                     has_userinfo=bool(parsed.userinfo), has_query=bool(parsed.query),
                     has_fragment=bool(parsed.fragment))


def _client_modules() -> list:
    import httpx

    modules = [httpx]
    try:
        import httpx2

        modules.append(httpx2)
    except ImportError:  # the openai SDK before 3.x runs on httpx alone
        pass
    return modules


def check_parsed(parts: ParsedURL) -> ParsedURL:
    """The checks every outbound URL gets: scheme, userinfo, host, blocked addresses."""
    if parts.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    if parts.has_userinfo or "@" in parts.url.split("//", 1)[-1].split("/", 1)[0]:
        raise UnsafeURL("URLs with a user name or password (user@host) are not allowed; "
                        "put the API key in its own field")
    if not parts.host:
        raise UnsafeURL("the URL has no host name")
    ip = parse_ip(parts.host)
    if ip is not None:
        check_ip(ip)
    elif parts.host.rstrip(".").lower() in BLOCKED_NAMES:
        raise UnsafeURL(f"{parts.host} is a cloud-metadata host name; Tanglaw will not "
                        f"connect to it")
    return parts


def parse_backend_url(url: str) -> ParsedURL:
    """A backend's (or webhook's, or MCP server's) base URL, checked; UnsafeURL if not."""
    url = (url or "").strip()
    if not url:
        raise UnsafeURL("enter the backend's URL, e.g. http://127.0.0.1:11434")
    if not url.lower().startswith(("http://", "https://")):
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    parts = check_parsed(parse_url(url))
    if parts.has_query or parts.has_fragment:
        raise UnsafeURL("the URL must not contain a query string or fragment")
    return parts


def check_backend_url(url: str) -> str:
    """Return the URL without a trailing slash, or raise UnsafeURL with a reason."""
    return parse_backend_url(url).url.rstrip("/")


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL as the client reads it; None when it cannot be read.
    Secrets given for one origin must not follow the URL to another."""
    try:
        parts = parse_url((url or "").strip())
    except UnsafeURL:
        return None
    return parts.scheme, parts.host.rstrip(".").lower(), parts.port


def check_resolved(host: str, port: int) -> None:
    """Refuse a DNS name that resolves to a blocked address (checked at save time).

    A name that does not resolve now is allowed: the probe will report it.
    """
    if parse_ip(host) is not None:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        check_ip(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
