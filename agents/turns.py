"""One chat turn, whatever the transport: the WebSocket, Server-Sent Events, or JSON.

`TurnSession.message(...)` / `.regenerate(...)` start a turn in one database hop
(agents.actions.prepare_message / prepare_regenerate: the permission-aware fetch, the
checks, settings and history, the generation slots). `run(emit)` then starts the
runtime at once and, beside it, the turn's first write (the question, or a
regenerate's superseded answer: actions.store_start), so the upstream request never
waits for a commit. Nothing reaches `emit` before that write is done: the first frame
is `turn_started`, with the conversation's id; if the write fails the turn is stopped
with an error frame, and nothing else of it is kept.

A tool that needs approval opens an Approval row (agents.approvals) — the frame
`approval_required` carries its `approval_id` — and the turn waits for the owner's
decision from any transport (socket frame, Approvals page, `POST /api/approvals/{id}`).
A long reply is checkpointed every CHECKPOINT_S, and the turn finalises exactly once:
generation slots given back, one transaction for the rows and audit events
(actions.persist_turn), then the `done` frame.

Stopping is a call, `stop()`, not a cancellation: the stop frame, a disconnect and a
client that goes away all call it, as often as they like, and it cancels the runtime
once (a second cancel would cut short its closing of the upstream stream). The
finalisation runs in its own task, and whoever waits for it holds back a cancellation
of their own until it is done (`outlast`): stop then disconnect, a second disconnect,
or the server stopping during the save never skip or repeat it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.db import DatabaseSyncToAsync
from django.utils import timezone

from agents import actions, approvals
from agents.models import Approval
from agents.runtime import Emit, TurnState, run_turn
from agents.runtime import tools as runtime_tools
from console import limits
from console.audit import Actor
from traces import store as trace_store
from traces.recorder import Recorder

CHECKPOINT_S = 5.0  # a crash mid-reply loses at most this much of the text
# turns no one watches as they run: a tool that needs approval is refused, not waited for
UNATTENDED = {"compare", "experiment"}
UNATTENDED_REFUSAL = ("refused: no one approves tools during a comparison or an "
                      "experiment")

log = logging.getLogger("tanglaw.chat")
T = TypeVar("T")
OnDone = Callable[[dict[str, Any]], Awaitable[None]]
Admit = Callable[[], Any]  # sync: the user, re-checked, or an exception


# A socket's turns reach the database through two long-lived threads (each keeping its
# connection): not asgiref's one shared thread, which every socket's other work also
# queues on, and not a thread per socket: hundreds of threads contending for the
# interpreter lock starved the event loop relaying tokens (bench: at 750 streams turns
# passed their first-token timeout; docs/benchmarks.md)
DB_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tanglaw-turn-db")


def db_hop(transport: str) -> Callable[[Callable[..., T]], Callable[..., Awaitable[T]]]:
    """How a turn reaches the database. A socket's hops run on DB_THREADS and drop broken
    connections first, as Channels does (a socket outlives any one request); an HTTP
    request's run in the request's own thread, its connection looked after by Django's
    request signals."""
    if transport == "websocket":
        return functools.partial(DatabaseSyncToAsync, thread_sensitive=False,
                                 executor=DB_THREADS)
    return sync_to_async


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


async def prepare(transport: str, hop: Callable[[], tuple[Any, actions.Prepared]]
                  ) -> tuple[Any, actions.Prepared]:
    """A turn's first hop, which takes its generation slots. A caller cancelled while the
    hop runs (a client gone, a comparison stopped) leaks none: the hop runs to its end
    and whatever it took is given back."""
    task = asyncio.ensure_future(db_hop(transport)(hop)())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        def give_back(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is None:
                limits.release(done.result()[1].settings.slots)

        task.add_done_callback(give_back)
        raise


class TurnSession:
    """One question (or a regenerate of the last one) and its answer."""

    def __init__(self, actor: Actor, user: Any, prepared: actions.Prepared, *,
                 transport: str, checkpoint_s: float | None = CHECKPOINT_S,
                 traceparent: str | None = None, request_id: str = ""):
        self.actor, self.user, self.prepared = actor, user, prepared
        self.agent, self.conversation = prepared.agent, prepared.conversation
        self.text, self.settings = prepared.text, prepared.settings
        self.transport = transport
        self._db = db_hop(transport)
        self.checkpoint_s = checkpoint_s
        self.turn_id = uuid.uuid4().hex
        # the turn's spans: a child of the caller's span when it sent a traceparent
        self.trace = Recorder(traceparent, content=self.agent.log_content)
        self.state = TurnState(trace=self.trace)
        self.request_id = request_id
        self.started_at = timezone.now()
        self.cancelled = False
        self.stored = False  # the question (or the regenerate's replacement) is written
        self.waiting: dict[str, Approval] = {}  # tool call id -> its open Approval
        self._stopping = False
        self._runtime: asyncio.Task | None = None
        self._store: asyncio.Future | None = None
        self._ending = asyncio.Event()
        self._draft_id: int | None = None
        self._end: asyncio.Task | None = None

    # -- starting ------------------------------------------------------------------------
    @classmethod
    async def message(cls, actor: Actor, user: Any, agent_id: int, text: str,
                      conversation_id: int | None, *, transport: str,
                      checkpoint_s: float | None = CHECKPOINT_S,
                      admit: Admit | None = None) -> TurnSession:
        """A question for an agent. `admit` (sync, run first in the same hop) may re-check
        the user and raise. Raises Invalid or Refused (nothing taken then)."""

        def hop() -> tuple[Any, actions.Prepared]:
            who = admit() if admit is not None else user
            return who, actions.prepare_message(actor, who, agent_id, text, conversation_id)

        who, prepared = await prepare(transport, hop)
        return cls(actor, who, prepared, transport=transport, checkpoint_s=checkpoint_s)

    @classmethod
    async def gateway(cls, actor: Actor, user: Any, agent_id: int,
                      messages: list[dict[str, Any]], text: str, *, admit: Admit | None = None,
                      checkpoint_s: float | None = CHECKPOINT_S,
                      traceparent: str | None = None, request_id: str = "",
                      transport: str = "gateway", **options: Any) -> TurnSession:
        """A caller's messages for an agent (actions.prepare_gateway): a gateway call,
        or a comparison's or an experiment's turn (`transport` "compare", "experiment":
        unattended, so a tool that needs approval is refused)."""

        def hop() -> tuple[Any, actions.Prepared]:
            who = admit() if admit is not None else user
            return who, actions.prepare_gateway(actor, who, agent_id, messages, text,
                                                **options)

        who, prepared = await prepare(transport, hop)
        return cls(actor, who, prepared, transport=transport, checkpoint_s=checkpoint_s,
                   traceparent=traceparent, request_id=request_id)

    @classmethod
    async def regenerate(cls, actor: Actor, user: Any, conversation_id: int, *,
                         transport: str, checkpoint_s: float | None = CHECKPOINT_S,
                         admit: Admit | None = None) -> TurnSession:
        """The conversation's last question answered again; the new answer replaces the
        last one, which stays as a previous version (actions.replace_answer)."""

        def hop() -> tuple[Any, actions.Prepared]:
            who = admit() if admit is not None else user
            return who, actions.prepare_regenerate(actor, who, conversation_id)

        who, prepared = await prepare(transport, hop)
        return cls(actor, who, prepared, transport=transport, checkpoint_s=checkpoint_s)

    # -- frames --------------------------------------------------------------------------
    def started(self) -> dict[str, Any]:
        return {"type": "turn_started", "conversation_id": self.conversation.pk,
                "turn_id": self.turn_id, "regenerate": self.prepared.regeneration is not None}

    def done(self) -> dict[str, Any]:
        return {"type": "done", "conversation_id": self.conversation.pk,
                "turn_id": self.turn_id,
                "trace_id": self.trace.trace_id if self.trace.enabled else None,
                "finish_reason": self.state.finish_reason,
                "incomplete": self.state.incomplete, "metrics": self.state.metrics()}

    # -- running -------------------------------------------------------------------------
    def stop(self) -> None:
        """End the turn early; the partial reply is kept. Safe to call any number of times."""
        if self._stopping:
            return
        self._stopping = True
        if self._runtime is not None and not self._runtime.done():
            self._runtime.cancel()

    async def run(self, emit: Emit, on_done: OnDone | None = None) -> None:
        """Run the turn and finalise it; `on_done` gets the `done` frame. A cancellation of
        the caller stops the turn like `stop()` and is raised after the finalisation."""
        if self._end is not None:
            raise RuntimeError("a turn runs once")
        announced = asyncio.Event()
        saver: asyncio.Task | None = None
        self.trace.enter(f"invoke_agent {self.agent.name}", **self._root_attributes())

        async def forward(frame: dict[str, Any]) -> None:
            # the runtime's frames wait for turn_started, which waits for the first write
            if not announced.is_set():
                await announced.wait()
            if not self.stored:
                return  # the write failed: the turn is being stopped; nothing more is sent
            if frame["type"] == "approval_required":
                if self.transport in UNATTENDED:
                    return  # _approve refuses it at once
                frame = await self._open_approval(frame)
            await emit(frame)

        try:
            self._store = asyncio.ensure_future(self._db(actions.store_start)(
                self.prepared))
            if not self._stopping:
                self._runtime = asyncio.create_task(run_turn(
                    self.settings, self.prepared.past,
                    self.text if self.prepared.append_text else None, emit=forward,
                    approve=self._approve, state=self.state))
            try:
                await asyncio.wait([self._store])
                self._store.result()
            except Exception:
                log.exception("the question of a turn could not be saved")
                self.stop()
                self.state.error = "your message could not be saved"
                await emit({"type": "error", "code": "not_saved",
                            "message": "your message could not be saved, so the turn was "
                                       "stopped; try again"})
                return
            finally:
                announced.set()
            self.stored = True
            await emit(self.started())
            if self.checkpoint_s:
                saver = asyncio.create_task(self._checkpoints())
            if self._runtime is not None:
                await asyncio.wait([self._runtime])
        except asyncio.CancelledError:
            self.stop()
            raise
        finally:
            self._end = asyncio.create_task(self._finalise(saver, on_done))
            await outlast(self._end)

    async def _open_approval(self, frame: dict[str, Any]) -> dict[str, Any]:
        call = {"id": frame["id"], "name": frame["name"], "arguments": frame.get("arguments")}
        approval = await self._db(approvals.create)(
            self.user, self.conversation, self.agent.name, call, self.transport,
            # the row expires just before the runtime stops waiting
            runtime_tools.APPROVAL_TIMEOUT_S - min(1.0, runtime_tools.APPROVAL_TIMEOUT_S / 10))
        self.waiting[str(frame["id"])] = approval
        return {**frame, "approval_id": approval.pk,
                "deadline": approval.deadline.isoformat()}

    async def _approve(self, call: dict[str, Any]) -> tuple[bool, str]:
        if self.transport in UNATTENDED:
            return False, UNATTENDED_REFUSAL
        approval = self.waiting.get(str(call["id"]))
        if approval is None:  # the approval_required frame was never sent (write failed)
            return False, "the turn was stopped"
        try:
            return await approvals.wait(approval, self._db)
        finally:
            self.waiting.pop(str(call["id"]), None)

    async def _finalise(self, saver: asyncio.Task | None, on_done: OnDone | None) -> None:
        if self._runtime is not None:
            await asyncio.wait([self._runtime])  # it closes the upstream stream as it stops
        if self._store is not None and not self._store.done():
            await asyncio.wait([self._store])
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
        if self.stored:
            await self._db(actions.persist_turn)(
                self.actor, self.agent, self.conversation, self.text, self.state,
                self.started_at, cancelled=self.cancelled, user_saved=True,
                draft_id=self._draft_id, replaced_runs=(
                    self.prepared.regeneration.replaced_runs
                    if self.prepared.regeneration is not None else None))
        else:
            self.state.incomplete, self.state.finish_reason = True, "error"
        await self._record_trace()
        if on_done is not None:
            await on_done(self.done())

    def _root_attributes(self) -> dict[str, Any]:
        return {"gen_ai__operation__name": "invoke_agent", "gen_ai__agent__name": self.agent.name,
                "gen_ai__agent__id": str(self.agent.pk),
                "gen_ai__provider__name": "tanglaw", "tanglaw__agent__id": self.agent.pk,
                "tanglaw__turn__id": self.turn_id, "tanglaw__transport": self.transport,
                "tanglaw__request__id": self.request_id or None,
                "enduser__id": getattr(self.user, "username", None)}

    async def _record_trace(self) -> None:
        """The turn's spans to traces.store; a failure to queue them never fails the turn."""
        state, root = self.state, self.trace.spans[0] if self.trace.spans else None
        try:
            if root is not None:
                # a new conversation has its id once the turn's first write is done
                conversation = self.conversation.pk
                root.set(gen_ai__conversation__id=str(conversation) if conversation else None,
                         tanglaw__conversation__id=conversation,
                         gen_ai__usage__input_tokens=state.tokens_in,
                         gen_ai__usage__output_tokens=state.tokens_out,
                         gen_ai__request__model=state.model or None,
                         gen_ai__response__finish_reasons=[state.finish_reason or "stop"],
                         tanglaw__ttft_ms=state.metrics()["ttft_ms"],
                         tanglaw__incomplete=state.incomplete or None,
                         tanglaw__stopped=self.cancelled or None)
                if state.error and not self.cancelled:
                    root.fail(state.error_code or "error", state.error)
                self.trace.leave(root)
            if trace_store.add(self.trace.rows()):
                await self._db(trace_store.flush)()
        except Exception:  # noqa: BLE001 - the trace is a record of the turn, not the turn
            log.exception("the spans of a turn could not be recorded")

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
                self._draft_id = await self._db(actions.checkpoint)(
                    self.conversation, self._draft_id, partial)
                saved = partial
