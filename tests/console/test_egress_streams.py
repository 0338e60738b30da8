"""Outbound HTTP on asyncio's streams (console.egress.AsyncioBackend): what httpcore
needs of a network stream — errors of its own kinds, and idle pooled connections the
server closed are noticed and replaced."""

import asyncio

import httpx
import httpx2
import pytest

from console import egress
from console.cluster import free_port


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def response(body: bytes, close: bool) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s"
            % (len(body), b"close" if close else b"keep-alive", body))


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_pooled_connection_the_server_closed_is_replaced(lib):
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response(b"one", close=False))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # the server ends the keep-alive connection while it idles

    async def main():
        server, port = await serve(handler)
        transport = egress.async_transport(egress.BACKENDS, httpx2=lib is httpx2)
        async with lib.AsyncClient(transport=transport) as client:
            first = await client.get(f"http://127.0.0.1:{port}/")
            await asyncio.sleep(0.3)
            second = await client.get(f"http://127.0.0.1:{port}/")
        server.close()
        return first.text, second.text

    assert asyncio.run(main()) == ("one", "one")
    assert len(connections) == 2  # the closed one was not reused


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_errors_are_the_http_clients_own(lib):
    async def silent(reader, writer):
        await asyncio.sleep(5)

    async def main():
        server, port = await serve(silent)
        transport = egress.async_transport(egress.BACKENDS, httpx2=lib is httpx2)
        async with lib.AsyncClient(transport=transport) as client:
            with pytest.raises(lib.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/", timeout=0.2)
            with pytest.raises(lib.ConnectError):
                await client.get(f"http://127.0.0.1:{free_port()}/")
        server.close()

    asyncio.run(main())


def test_a_streamed_body_is_read_as_it_comes():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            piece = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main():
        server, port = await serve(handler)
        transport = egress.async_transport(egress.BACKENDS, httpx2=True)
        async with (httpx2.AsyncClient(transport=transport) as client,
                    client.stream("GET", f"http://127.0.0.1:{port}/") as r):
            lines = [line async for line in r.aiter_lines() if line]
        server.close()
        return lines

    assert asyncio.run(main()) == ["data: 0", "data: 1", "data: 2"]


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_connection_closed_while_the_loop_was_busy_is_not_reused(lib):
    """The server closes right after its answer, and the client's loop does not run
    before the next request (a busy loop): the close is still in the socket, not yet
    in asyncio's stream. Reusing the connection would fail the request (discovery saw
    an engine vanish this way on a loaded machine)."""
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []

    def serve_forever():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            # keep-alive promised, then closed at once (as HTTP/1.0-ish servers do)
            conn.sendall(response(b"one", close=False))
            conn.close()

    threading.Thread(target=serve_forever, daemon=True).start()

    async def main():
        transport = egress.async_transport(egress.BACKENDS, httpx2=lib is httpx2)
        async with lib.AsyncClient(transport=transport) as client:
            first = await client.get(f"http://127.0.0.1:{port}/")
            time.sleep(0.2)  # blocks the loop: the FIN stays in the socket
            second = await client.get(f"http://127.0.0.1:{port}/")
        return first.text, second.text

    try:
        assert asyncio.run(main()) == ("one", "one")
    finally:
        listener.close()
    assert len(accepted) == 2
