"""A streamed turn, whatever the transport (the WebSocket, Server-Sent Events).

The transport gives an `emit` (and an `approve` where it can ask); the turn sends
`turn_started`, runs the runtime in a task of its own, checkpoints a long reply, and
finalises exactly once: generation slots given back, one transaction for the rows and
audit events (agents.actions.persist_turn), then the `done` frame.

Stopping is a call, `stop()`, not a cancellation: the stop frame, a disconnect and a
client that goes away all call it, as often as they like, and it cancels the runtime
once (a second cancel would cut short its closing of the upstream stream). The
finalisation runs in its own task, and whoever waits for it holds back a cancellation
of their own until it is done (`outlast`): stop then disconnect, a second disconnect,
or the server stopping during the save never skip or repeat it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.utils import timezone

from agents import actions
from agents.models import Agent, Conversation
from agents.runtime import Approve, Emit, TurnSettings, TurnState, run_turn
from console import limits
from console.audit import Actor

CHECKPOINT_S = 5.0  # a crash mid-reply loses at most this much of the text

log = logging.getLogger("tanglaw.chat")
T = TypeVar("T")


async def outlast(work: Awaitable[T]) -> T:
    """Await `work` to its end even when the caller is cancelled meanwhile: it runs as a
    task of its own, shielded, and a cancellation of the caller is raised once it is
    done. Only a cancellation of the work itself (the event loop closing) ends it."""
    task = asyncio.ensure_future(work)
    held = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            held = True
    if held:
        raise asyncio.CancelledError
    return result


class StreamedTurn:
    """One question (or a regenerate of the last one) and its streamed answer."""

    def __init__(self, actor: Actor, agent: Agent, conversation: Conversation, text: str,
                 settings: TurnSettings, past: list[dict[str, Any]], *,
                 replaced_runs: list[int] | None = None,
                 checkpoint_s: float | None = CHECKPOINT_S):
        self.actor, self.agent, self.conversation = actor, agent, conversation
        self.text, self.settings, self.past = text, settings, past
        self.replaced_runs = replaced_runs  # a regenerate: the runs whose answer it replaces
        self.checkpoint_s = checkpoint_s
        self.state = TurnState()
        self.turn_id = uuid.uuid4().hex
        self.started_at = timezone.now()
        self.cancelled = False
        self._stopping = False
        self._runtime: asyncio.Task | None = None
        self._ending = asyncio.Event()
        self._draft_id: int | None = None
        self._end: asyncio.Task | None = None

    def started(self) -> dict[str, Any]:
        return {"type": "turn_started", "conversation_id": self.conversation.pk,
                "turn_id": self.turn_id, "regenerate": self.replaced_runs is not None}

    def done(self) -> dict[str, Any]:
        return {"type": "done", "conversation_id": self.conversation.pk,
                "turn_id": self.turn_id, "finish_reason": self.state.finish_reason,
                "incomplete": self.state.incomplete, "metrics": self.state.metrics()}

    def stop(self) -> None:
        """End the turn early; the partial reply is kept. Safe to call any number of times."""
        if self._stopping:
            return
        self._stopping = True
        if self._runtime is not None and not self._runtime.done():
            self._runtime.cancel()

    async def run(self, emit: Emit, approve: Approve | None = None,
                  on_done: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> None:
        """Run the turn and finalise it; `on_done` gets the `done` frame. A cancellation of
        the caller stops the turn like `stop()` and is raised after the finalisation."""
        if self._end is not None:
            raise RuntimeError("a turn runs once")
        saver = asyncio.create_task(self._checkpoints()) if self.checkpoint_s else None
        try:
            await emit(self.started())
            if not self._stopping:
                self._runtime = asyncio.create_task(run_turn(
                    self.settings, self.past, self.text, emit=emit, approve=approve,
                    state=self.state))
                await asyncio.wait([self._runtime])
        except asyncio.CancelledError:
            self.stop()
            raise
        finally:
            self._end = asyncio.create_task(self._finalise(saver, on_done))
            await outlast(self._end)

    async def _finalise(self, saver: asyncio.Task | None,
                        on_done: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
        if self._runtime is not None:
            await asyncio.wait([self._runtime])  # it closes the upstream stream as it stops
        self._ending.set()
        try:
            if self._runtime is None or self._runtime.cancelled():
                self.cancelled = True
                self.state.incomplete, self.state.finish_reason = True, "cancelled"
            elif (failure := self._runtime.exception()) is not None:
                log.error("a turn failed", exc_info=failure)
                self.state.incomplete, self.state.finish_reason = True, "error"
            if saver is not None:
                try:
                    await saver  # a checkpoint being written finishes, so its row is known
                except Exception:  # noqa: BLE001 - the whole turn is saved below anyway
                    log.exception("a checkpoint of a turn failed")
        finally:
            limits.release(self.settings.slots)
        await database_sync_to_async(actions.persist_turn)(
            self.actor, self.agent, self.conversation, self.text, self.state, self.started_at,
            cancelled=self.cancelled, user_saved=True, draft_id=self._draft_id,
            replaced_runs=self.replaced_runs)
        if on_done is not None:
            await on_done(self.done())

    async def _checkpoints(self) -> None:
        assert self.checkpoint_s is not None
        saved = ""
        while True:
            try:
                async with asyncio.timeout(self.checkpoint_s):
                    await self._ending.wait()
                return
            except TimeoutError:
                pass
            if self.state.text != saved:
                partial = self.state.text
                self._draft_id = await database_sync_to_async(actions.checkpoint)(
                    self.conversation, self._draft_id, partial)
                saved = partial
