"""A streamed turn over HTTP: Server-Sent Events carrying the WebSocket's frames.

`POST /api/agents/{id}/chat/stream` (and `/api/conversations/{id}/regenerate/stream`)
answers `text/event-stream`, one `data:` line per frame (turn_started, route, delta,
tool_call, approval_required, tool_result, error, done) as soon as the runtime emits
it: no batching, so scripts and proxies see each token when the engine sends it. The
turn is an agents.turns.TurnSession, stored like a playground turn; a client that goes
away (Django cancels the response when the server reports the disconnect) stops it,
closing the upstream stream, and the partial reply is stored as incomplete.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from agents.turns import TurnSession, outlast


def event(frame: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(frame, separators=(",", ":")).encode() + b"\n\n"


async def sse_turn(turn: TurnSession) -> AsyncIterator[bytes]:
    frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await turn.run(frames.put)
        finally:
            frames.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (frame := await frames.get()) is not None:
            yield event(frame)
    finally:
        turn.stop()  # the client went away (nothing to stop once the turn has ended)
        await outlast(task)
    yield event(turn.done())
