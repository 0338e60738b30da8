"""Load clients for the four paths under test, all reading the fast server's tokens.

Every client records, per request: time to first token (send -> first token received),
per-token transit (received - written by the backend, both on this machine's clock),
the gaps between tokens as received, and whether every token arrived once and in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    ttft_ms: float = 0.0
    transit_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    total_ms: float = 0.0
    ok: bool = True  # every token, once, in order
    error: str = ""
    overhead_ms: float | None = None  # the gateway's x-tanglaw-overhead-ms, when sent


class Reader:
    """Turns received text pieces into token arrivals. `plain`: a real engine's text (no
    timestamps): each piece is one arrival and the count is not checked."""

    def __init__(self, sent_ns: int, expected: int, plain: bool = False):
        self.sent_ns, self.expected, self.plain = sent_ns, expected, plain
        self.sample = Sample()
        self.last_arrival: int | None = None
        self.next_index = 0

    def feed(self, piece: str) -> None:
        now = time.time_ns()
        if self.plain:
            if piece:
                if self.last_arrival is None:
                    self.sample.ttft_ms = (now - self.sent_ns) / 1e6
                else:
                    self.sample.gaps_ms.append((now - self.last_arrival) / 1e6)
                self.last_arrival = now
                self.sample.tokens += 1
            return
        for token in piece.split():
            index, _, written = token.partition(":")
            if not written.isdigit() or not index.isdigit():
                continue
            if int(index) != self.next_index:
                self.sample.ok = False
            self.next_index = int(index) + 1
            if self.last_arrival is None:
                self.sample.ttft_ms = (now - self.sent_ns) / 1e6
            else:
                self.sample.gaps_ms.append((now - self.last_arrival) / 1e6)
            self.sample.transit_ms.append((now - int(written)) / 1e6)
            self.last_arrival = now
            self.sample.tokens += 1

    def finish(self, error: str = "") -> Sample:
        self.sample.total_ms = (time.time_ns() - self.sent_ns) / 1e6
        if error or (not self.plain and self.sample.tokens != self.expected) or (
                self.plain and not self.sample.tokens):
            self.sample.ok = False
            self.sample.error = error or f"{self.sample.tokens}/{self.expected} tokens"
        return self.sample


async def openai_stream(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                        expected: int, model: str = "bench", max_tokens: int | None = None,
                        plain: bool = False) -> Sample:
    """Direct to the backend, or through LiteLLM: an OpenAI chat completion stream."""
    body: dict = {"model": model, "stream": True,
                  "messages": [{"role": "user", "content": "go"}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    reader = Reader(time.time_ns(), expected, plain)
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                return reader.finish(f"HTTP {response.status_code}")
            overhead = response.headers.get("x-tanglaw-overhead-ms")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or []
                if choices and (content := (choices[0].get("delta") or {}).get("content")):
                    reader.feed(content)
    except httpx.HTTPError as exc:
        return reader.finish(type(exc).__name__)
    sample = reader.finish()
    sample.overhead_ms = float(overhead) if overhead else None
    return sample


async def openai_whole(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                       model: str) -> tuple[float, str]:
    """One non-streamed chat completion: (latency ms, error or "")."""
    started = time.perf_counter()
    try:
        response = await client.post(url, headers=headers, json={
            "model": model, "messages": [{"role": "user", "content": "go"}]})
        error = "" if response.status_code == 200 else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return (time.perf_counter() - started) * 1000, error


async def tanglaw_sse(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                      expected: int, plain: bool = False) -> Sample:
    """Tanglaw's HTTP chat API, streamed (POST /api/agents/{id}/chat/stream)."""
    reader = Reader(time.time_ns(), expected, plain)
    try:
        async with client.stream("POST", url, json={"message": "go"},
                                 headers=headers) as response:
            if response.status_code != 200:
                return reader.finish(f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frame = json.loads(line[6:])
                    if frame["type"] == "delta":
                        reader.feed(frame["text"])
                    elif frame["type"] == "error":
                        return reader.finish(frame.get("message", "error"))
    except httpx.HTTPError as exc:
        return reader.finish(type(exc).__name__)
    return reader.finish()


class TanglawSocket:
    """One browser tab's chat socket: reused for every turn of one virtual user."""

    def __init__(self, base: str, cookie: str, agent_id: int):
        self.url = "ws" + base.removeprefix("http") + "/ws/chat/"
        self.base, self.cookie, self.agent_id = base, cookie, agent_id
        self.ws = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, origin=self.base, max_size=2**22,
                                additional_headers={"Cookie": self.cookie},
                                open_timeout=60)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def turn(self, expected: int, timeout: float = 120, plain: bool = False) -> Sample:
        if self.ws is None:
            await self.open()
        reader = Reader(time.time_ns(), expected, plain)
        await self.ws.send(json.dumps({"type": "user_message", "agent_id": self.agent_id,
                                       "conversation_id": None, "text": "go"}))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = json.loads(await self.ws.recv())
                    if frame["type"] == "delta":
                        reader.feed(frame["text"])
                    elif frame["type"] == "done":
                        return reader.finish()
                    elif frame["type"] == "error":
                        return reader.finish(frame.get("message", "error"))
        except (TimeoutError, OSError) as exc:
            return reader.finish(type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a closed socket is a lost stream
            return reader.finish(type(exc).__name__)
