"""A scripted, fast OpenAI-compatible streaming server for the benchmarks.

Plain asyncio streams (no framework) so that it costs far less per token than what
it measures. Each streamed token's text is ``"<index>:<unix ns when written> "``,
so a client on the same machine can tell, token by token, how long the path from
the server to it took, whatever relay sits in between, and whether a token was lost
or reordered.

GET  /<anything>/models, /health          -> a model list / ok (for probes)
GET  /<anything>/metrics                  -> a node exporter's answer (a fleet host)
POST /<anything>/chat/completions         -> SSE stream (or one JSON completion)

Query-free configuration per process: --ttft-ms, --tokens, --gap-ms. A request may
override them with ``"bench": {"ttft_ms": .., "tokens": .., "gap_ms": ..}`` in the
body (the relays under test pass unknown fields on only sometimes, so the process
defaults are what the comparison uses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "bench"


def node_exporter_text() -> bytes:
    """What a small box's node exporter answers with its default collectors, in size and
    shape: 8 CPUs × 8 modes, memory, 6 filesystems, 4 network devices, load, and ~600
    other series (the Go runtime, disk stats, …), about 60 kB."""
    lines = ["# TYPE node_cpu_seconds_total counter"]
    for cpu in range(8):
        for mode in ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"):
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} {cpu * 1000 + 1.5}')
    lines += ["node_memory_MemTotal_bytes 8.0e9", "node_memory_MemAvailable_bytes 3.1e9",
              "node_memory_SwapTotal_bytes 2.0e9", "node_memory_SwapFree_bytes 1.9e9",
              "node_load1 0.42"]
    for i, mount in enumerate(("/", "/boot", "/data", "/run", "/var", "/home")):
        labels = f'device="/dev/sd{i}",fstype="ext4",mountpoint="{mount}"'
        lines += [f"node_filesystem_size_bytes{{{labels}}} 1.0e11",
                  f"node_filesystem_avail_bytes{{{labels}}} 4.0e10"]
    for device in ("eth0", "wlan0", "docker0", "lo"):
        lines += [f'node_network_receive_bytes_total{{device="{device}"}} 123456789',
                  f'node_network_transmit_bytes_total{{device="{device}"}} 98765432']
    for i in range(600):
        lines.append(f'node_disk_io_time_seconds_total{{device="nvme{i % 4}n{i}"}} {i}.25')
    return ("\n".join(lines) + "\n").encode()


NODE_EXPORTER = node_exporter_text()


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
            "model": MODEL, "choices": [{"index": 0, "delta": delta,
                                         "finish_reason": finish}]}
    data = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Server:
    def __init__(self, ttft_ms: float, tokens: int, gap_ms: float):
        self.ttft_s, self.tokens, self.gap_s = ttft_ms / 1000, tokens, gap_ms / 1000
        self.requests = 0
        self.scrapes: dict[str, int] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                path = path.split("?")[0]
                if method == "POST" and path.endswith("/chat/completions"):
                    await self.completion(writer, json.loads(body or b"{}"))
                elif path.endswith("/models"):
                    self.send_json(writer, {"object": "list", "data": [
                        {"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]})
                elif path.endswith("/health") or path == "/":
                    self.send_json(writer, {"status": "ok"})
                elif path == "/bench/stats":
                    self.send_json(writer, {"requests": self.requests,
                                            "scrapes": self.scrapes})
                elif path.endswith("/metrics"):  # a fleet host's node exporter
                    self.scrapes[path] = self.scrapes.get(path, 0) + 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; "
                                 b"version=0.0.4\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(NODE_EXPORTER), NODE_EXPORTER))
                else:
                    self.send_json(writer, {"error": {"message": "not found"}}, 404)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def send_json(writer: asyncio.StreamWriter, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        writer.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data))

    async def completion(self, writer: asyncio.StreamWriter, body: dict) -> None:
        knobs = body.get("bench") or {}
        ttft = knobs.get("ttft_ms", self.ttft_s * 1000) / 1000
        tokens = int(knobs.get("tokens", self.tokens))
        gap = knobs.get("gap_ms", self.gap_s * 1000) / 1000
        if not body.get("stream"):
            await asyncio.sleep(ttft + gap * tokens)
            text = "".join(f"{i}:{time.time_ns()} " for i in range(tokens))
            self.send_json(writer, {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                "model": MODEL, "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens,
                          "total_tokens": tokens + 8}})
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk(None))  # the role chunk engines send first
        await writer.drain()
        start = time.monotonic()
        for i in range(tokens):
            # absolute schedule: the gap is the backend's, not the gap plus our own work
            delay = start + ttft + i * gap - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(chunk(f"{i}:{time.time_ns()} "))
            await writer.drain()
        writer.write(chunk(None, "stop"))
        usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                 "model": MODEL, "choices": [],
                 "usage": {"prompt_tokens": 8, "completion_tokens": tokens,
                           "total_tokens": tokens + 8}}
        data = b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))


async def serve(port: int, server: Server) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=2048)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--gap-ms", type=float, default=20)
    args = parser.parse_args()
    asyncio.run(serve(args.port, Server(args.ttft_ms, args.tokens, args.gap_ms)))


if __name__ == "__main__":
    main()
