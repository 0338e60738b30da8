"""A streamed POST to the console's ASGI app, driven as a server drives it: the request,
then `http.disconnect` once the client has seen enough (a browser tab closed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any


async def post_then_leave(path: str, payload: Any, token: str,
                          enough: Callable[[list[dict]], bool],
                          timeout: float = 10) -> tuple[list[dict], float]:
    """POST `payload` as JSON with the bearer `token`; leave once `enough(frames)` holds
    for the SSE frames received so far. Returns (the ASGI messages sent, the seconds the
    app took to finish after the client left)."""
    from console.asgi import application

    body = json.dumps(payload).encode()
    headers = [(b"host", b"localhost"), (b"authorization", f"Bearer {token}".encode()),
               (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    gone, seen = asyncio.Event(), asyncio.Event()
    sent: list[dict] = []
    frames: list[dict] = []

    async def receive():
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        for line in message.get("body", b"").decode().splitlines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
        if frames and enough(frames):
            seen.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": b"",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("localhost", 80)}
    app = asyncio.create_task(application(scope, receive, send))
    try:
        await asyncio.wait_for(seen.wait(), timeout)
    except TimeoutError:
        raise AssertionError(sent) from None
    gone.set()
    left = time.monotonic()
    await asyncio.wait_for(app, timeout)
    return sent, time.monotonic() - left
