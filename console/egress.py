"""Outbound requests Tanglaw makes on a model's or an operator's behalf (HTTP tools, MCP).

The check runs where it cannot be dodged: in the connection layer. Every TCP
connection an egress client opens resolves the host itself, refuses the lot if
any address is link-local, metadata or otherwise blocked (console.urlsafety),
refuses private, loopback and other non-global addresses unless the allow-list
names the host or its network, and then connects to the address it checked —
so a DNS answer that changes between a check and the connect (rebinding) and a
redirect to a new host both meet the same check, because both open a new
connection here.

`Policy.allow` holds host names (``api.example.com``, ``*.example.com``) and
networks (``10.0.0.0/8``, ``192.168.1.20``). Empty: public addresses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import ipaddress
import select
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from console.urlsafety import BLOCKED_NAMES, UnsafeURL, _embedded_v4, check_ip, parse_ip

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_allow_list(entries: Iterable[str]) -> tuple[str, ...]:
    """Normalise an allow-list; raise ValueError naming the first bad entry."""
    out = []
    for raw in entries:
        entry = str(raw).strip().lower().rstrip(".")
        if not entry:
            continue
        if "/" in entry or parse_ip(entry) is not None:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{raw!r} is not a host name or network") from None
            for blocked in ("169.254.169.254", "fe80::1"):
                if ipaddress.ip_address(blocked) in network:
                    raise ValueError(f"{raw!r} covers link-local addresses, which are never "
                                     f"allowed")
            out.append(str(network))
            continue
        name = entry[2:] if entry.startswith("*.") else entry
        if not name or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-." for c in name):
            raise ValueError(f"{raw!r} is not a host name or network")
        if name in BLOCKED_NAMES:
            raise ValueError(f"{raw!r} is a cloud-metadata host name")
        out.append(entry)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Policy:
    allow: tuple[str, ...] = ()

    def _names(self) -> list[str]:
        return [a for a in self.allow if "/" not in a]

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(a) for a in self.allow if "/" in a]

    def names_host(self, host: str) -> bool:
        host = host.strip("[]").lower().rstrip(".")
        for entry in self._names():
            if entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False

    def covers_ip(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self._networks())

    def check_host(self, host: str) -> None:
        """Before any connection: a blocked name, or a host the allow-list leaves out."""
        bare = host.strip("[]").lower().rstrip(".")
        if bare in BLOCKED_NAMES:
            raise UnsafeURL(f"{host} is a cloud-metadata host name; Tanglaw will not connect "
                            f"to it")
        ip = parse_ip(bare)
        if ip is not None:
            check_ip(ip)
        if not self.allow or self.names_host(bare):
            return
        # a name may still resolve into a listed network: check_address decides that
        if (ip is not None and not self.covers_ip(ip)) or (ip is None and not self._networks()):
            raise UnsafeURL(f"{host} is not in the allow-list ({', '.join(self.allow)})")

    def check_address(self, host: str, ip: IP) -> None:
        """At connect time, for every address the host resolved to."""
        check_ip(ip)
        listed = self.names_host(host) or self.covers_ip(ip)
        v4 = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        if not (ip.is_global and (v4 is None or v4.is_global)) and not listed:
            raise UnsafeURL(f"{host} resolves to {ip}, a private or local address; add the "
                            f"host or its network to the allow-list to reach it")
        if self.allow and not listed:
            raise UnsafeURL(f"{host} ({ip}) is not in the allow-list ({', '.join(self.allow)})")


async def resolve(host: str, port: int) -> list[IP]:
    """Every address a host name resolves to (tests replace this to play DNS)."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # OSError: no name
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


class GuardedBackend:
    """An httpcore network backend that checks what it connects to (httpcore and httpcore2)."""

    def __init__(self, inner: Any, policy: Policy, connect_error: type[Exception] = OSError):
        self.inner, self.policy, self.connect_error = inner, policy, connect_error

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None):
        self.policy.check_host(host)
        try:
            addresses = await resolve(host, port)
        except OSError as exc:  # a name that does not resolve: an ordinary connect error
            raise self.connect_error(str(exc)) from exc
        if not addresses:
            raise UnsafeURL(f"{host} did not resolve to any address")
        for ip in addresses:  # fail closed: one bad answer refuses the name
            self.policy.check_address(host, ip)
        error: Exception | None = None
        for ip in addresses:
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout=timeout,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except Exception as exc:  # noqa: BLE001 - try the next address, re-raise the last
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, *args: Any, **kwargs: Any):
        raise UnsafeURL("Unix sockets are not allowed for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class AsyncioStream:
    """An httpcore network stream on asyncio's own streams. httpcore's AnyIO stream
    enters an anyio cancel scope on every read, which cost ~8 % of the web process's CPU
    per relayed token (bench: docs/benchmarks.md); asyncio's transport reads the socket
    itself and this only awaits its buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 core: Any):
        self._reader, self._writer, self._core = reader, writer, core

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise self._core.ReadTimeout("timed out reading") from None
        except OSError as exc:
            raise self._core.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise self._core.WriteTimeout("timed out writing") from None
        except OSError as exc:
            raise self._core.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            await self.aclose()
            raise self._core.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        transport = self._writer.transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            # an idle pooled connection is "readable" when the server closed it (or sent
            # something unasked): either the transport has read that into the stream
            # already, or it still waits in the socket (the loop has not run since), which
            # only a poll of the socket itself sees, as httpcore's own streams do
            if self._reader.at_eof() or transport.is_closing() or bool(getattr(
                    self._reader, "_buffer", None)):
                return True
            sock = transport.get_extra_info("socket")
            if sock is None:
                return False
            try:
                return bool(select.select([sock.fileno()], [], [], 0)[0])
            except (OSError, ValueError):
                return True
        return None


class AsyncioBackend:
    """httpcore's network backend interface on asyncio (plain TCP; TLS by start_tls)."""

    def __init__(self, core: Any):
        self._core = core

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError:
            raise self._core.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.transport.get_extra_info("socket")
        for option in socket_options or []:
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer, self._core)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeURL("Unix sockets are not allowed for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# backends live on loopback and private networks: every address is allowed except the
# link-local and metadata ones check_ip always refuses
BACKENDS = Policy(("0.0.0.0/0", "::/0"))


def client(*, timeout: Any = None, max_connections: int = 20,
           policy: Policy = BACKENDS) -> Any:
    """An httpx.AsyncClient for talking to backends (or under another `policy`: the
    fleet's networks), through the connect-time check."""
    import httpx

    kwargs: dict[str, Any] = {"transport": async_transport(
        policy, max_connections=max_connections), "trust_env": False}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return httpx.AsyncClient(**kwargs)


@functools.cache
def ssl_context(httpx2: bool = False) -> ssl.SSLContext:
    """One verifying TLS context per process: building one loads the CA bundle, which
    cost ~25 ms per chat turn when every client made its own (bench: docs/benchmarks.md)."""
    lib: Any = importlib.import_module("httpx2" if httpx2 else "httpx")
    return lib.create_ssl_context()


def async_transport(policy: Policy, *, httpx2: bool = False, max_connections: int = 20) -> Any:
    """An AsyncHTTPTransport for httpx (or httpx2, which the MCP SDK uses) that goes
    through GuardedBackend. No proxy from the environment: it would do its own DNS."""
    core: Any = importlib.import_module("httpcore2" if httpx2 else "httpcore")
    lib: Any = importlib.import_module("httpx2" if httpx2 else "httpx")
    transport = lib.AsyncHTTPTransport(verify=ssl_context(httpx2), trust_env=False, retries=0)
    pool = transport._pool
    if not isinstance(pool, core.AsyncConnectionPool):  # pragma: no cover - guards upgrades
        raise RuntimeError("the HTTP transport changed shape; egress checks cannot be applied")
    transport._pool = core.AsyncConnectionPool(
        ssl_context=pool._ssl_context, max_connections=max_connections,
        max_keepalive_connections=min(max_connections, 20),
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(AsyncioBackend(core), policy, core.ConnectError))
    return transport
