"""Which backend URLs Tanglaw will talk to.

Edge backends live on loopback and private networks, so those are allowed.
Link-local and cloud-metadata addresses are refused however they are spelled:
decimal, hex and octal IPv4, IPv4-mapped/compatible/NAT64/6to4 IPv6, trailing
dots, userinfo and backslash tricks.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

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
    if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
        return ipaddress.IPv4Address(packed[12:])
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


def check_backend_url(url: str) -> str:
    """Return the URL without a trailing slash, or raise UnsafeURL with a reason."""
    url = (url or "").strip()
    if not url:
        raise UnsafeURL("enter the backend's URL, e.g. http://127.0.0.1:11434")
    if "\\" in url or any(ord(c) < 33 for c in url):
        raise UnsafeURL("the URL contains a backslash, a space or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"the URL cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise UnsafeURL("URLs with a user name or password (user@host) are not allowed; "
                        "put the API key in its own field")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host name")
    if port == 0:
        raise UnsafeURL("port 0 is not a valid port")
    if parts.query or parts.fragment:
        raise UnsafeURL("the URL must not contain a query string or fragment")
    ip = parse_ip(host)
    if ip is not None:
        check_ip(ip)
    elif host.rstrip(".").lower() in BLOCKED_NAMES:
        raise UnsafeURL(f"{host} is a cloud-metadata host name; Tanglaw will not connect to it")
    return url.rstrip("/")


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
