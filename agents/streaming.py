"""A streamed turn over HTTP: Server-Sent Events carrying the WebSocket's frames.

`POST /api/agents/{id}/chat/stream` answers `text/event-stream`, one `data:` line per
frame (turn_started, route, delta, tool_call, tool_result, error, done) as soon as the
runtime emits it: no batching, so scripts and proxies see each token when the engine
sends it. The turn is stored like a playground turn (question first, one transaction
at the end); a client that goes away cancels the upstream stream and the partial reply
is stored as incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from agents import actions
from agents.models import Agent, Conversation
from agents.runtime import TurnSettings, TurnState, run_turn
from console import limits
from console.audit import Actor


def event(frame: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(frame, separators=(",", ":")).encode() + b"\n\n"


async def sse_turn(actor: Actor, agent: Agent, conversation: Conversation, text: str,
                   settings: TurnSettings, past: list) -> AsyncIterator[bytes]:
    frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    state, started_at, turn_id = TurnState(), timezone.now(), uuid.uuid4().hex

    async def run() -> None:
        try:
            await run_turn(settings, past, text, emit=frames.put, state=state)
        finally:
            frames.put_nowait(None)

    task = asyncio.create_task(run())
    cancelled = True  # until the stream has been read to the end
    try:
        yield event({"type": "turn_started", "conversation_id": conversation.pk,
                     "turn_id": turn_id})
        while (frame := await frames.get()) is not None:
            yield event(frame)
        await task
        cancelled = False
    finally:
        limits.release(getattr(settings, "slots", []))
        if cancelled:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.incomplete, state.finish_reason = True, "cancelled"
        await database_sync_to_async(actions.persist_turn)(
            actor, agent, conversation, text, state, started_at, cancelled=cancelled,
            user_saved=True)
    yield event({"type": "done", "conversation_id": conversation.pk, "turn_id": turn_id,
                 "finish_reason": state.finish_reason, "incomplete": state.incomplete,
                 "metrics": state.metrics()})
