"""`agent/<slug>`: Tanglaw runs the agent for a gateway caller, through the same turn
service as the playground (agents.turns.TurnSession): its prompt first (the caller's
system message after it), its models, fallbacks, escalation and router, its own tools
run inside Tanglaw with their validation, limits, approvals and audit. The caller's
tools are handed back as `tool_calls`, as OpenAI does, for the caller to run.

The answer goes back as a Chat Completion (or its chunks, streamed). An agent that
fails before its first token is an HTTP error (502/503/504); after it, an error event
in the stream, its partial text kept in the conversation as incomplete.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from django.http import StreamingHttpResponse

from agents.runtime import TurnState
from agents.turns import TurnSession
from console.actions import Invalid, Refused
from console.limits import Busy
from gateway.errors import GatewayError
from gateway.targets import AgentTarget
from gateway.wire import ChatRequest, sse_response

# the runtime's error codes, as HTTP statuses when nothing was sent yet
STATUS = {"backend_unavailable": 503, "no_backend": 503, "not_saved": 503,
          "first_token_timeout": 504, "idle_timeout": 504, "turn_timeout": 504}
SAMPLING = ("top_p", "stop", "seed", "response_format", "presence_penalty",
            "frequency_penalty")


def refusal(exc: Exception) -> GatewayError:
    if isinstance(exc, Busy):
        return GatewayError(429, str(exc), code="concurrency_limit_exceeded",
                            headers={"Retry-After": "1"})
    if isinstance(exc, Invalid):
        name, messages = next(iter(exc.errors.items()), ("body", ["invalid"]))
        status = 404 if name == "model" else 400
        return GatewayError(status, f"{name}: {' '.join(messages)}", param=name,
                            code="model_not_found" if status == 404 else "invalid_value")
    return GatewayError(409, str(exc), code="agent_unavailable")


@dataclass
class AgentRun:
    """One gateway call of an agent and what it produced."""

    session: TurnSession
    chat: ChatRequest
    target: AgentTarget
    created: int

    @property
    def state(self) -> TurnState:
        return self.session.state

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.session.turn_id}"

    def usage(self) -> dict[str, int]:
        s = self.state
        return {"prompt_tokens": s.tokens_in, "completion_tokens": s.tokens_out,
                "total_tokens": s.tokens_in + s.tokens_out}

    def tool_calls(self) -> list[dict[str, Any]]:
        return [{"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in self.state.client_calls]

    def finish_reason(self) -> str:
        reason = self.state.finish_reason
        return reason if reason in ("stop", "length", "tool_calls", "content_filter") else (
            "stop" if not self.state.error else reason)

    def error(self) -> GatewayError:
        code = self.state.error_code or "agent_error"
        return GatewayError(STATUS.get(code, 502), self.state.error or "the agent failed",
                            code=code)

    async def settle(self, task: asyncio.Task) -> None:
        """The turn stopped (if it still runs) and finalised: a client that went away
        or a stream that ended early never leaves it running."""
        if not task.done():
            self.session.stop()
            await asyncio.wait([task])

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": self.completion_id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.chat.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(body, separators=(",", ":"),
                                      ensure_ascii=False).encode() + b"\n\n"

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.state.text or (
            None if self.state.client_calls else "")}
        if self.state.client_calls:
            message["tool_calls"] = self.tool_calls()
        return {"id": self.completion_id, "object": "chat.completion",
                "created": self.created, "model": self.chat.model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": self.finish_reason()}],
                "usage": self.usage()}


async def start(actor, user, chat: ChatRequest, target: AgentTarget, *,
                traceparent: str | None = None, request_id: str = "") -> AgentRun:
    """The turn checked and prepared (one database hop); raises GatewayError. The
    request's traceparent and id make the turn's spans steps of its trace."""
    options = chat.options
    # for the first completion of the turn: the caller's tools and the agent's own (a small
    # model often calls one only when made to: "required", or a function by name); the
    # runtime drops them when the turn offers no tools
    first_extra = {}
    if options.get("tool_choice") not in (None, "auto"):
        first_extra["tool_choice"] = options["tool_choice"]
    if "parallel_tool_calls" in options:
        first_extra["parallel_tool_calls"] = options["parallel_tool_calls"]
    try:
        session = await TurnSession.gateway(
            actor, user, target.agent_id, chat.messages, chat.last_user_text(),
            client_tools=chat.tools,
            extra={k: options[k] for k in SAMPLING if k in options},
            first_extra=first_extra, temperature=options.get("temperature"),
            max_tokens=chat.max_tokens, traceparent=traceparent, request_id=request_id)
    except (Invalid, Refused) as exc:
        raise refusal(exc) from None
    return AgentRun(session, chat, target, int(time.time()))


async def run(agent_run: AgentRun) -> tuple[asyncio.Task, asyncio.Queue]:
    """Start the turn; its frames arrive on the queue, None after `done`."""
    frames: asyncio.Queue = asyncio.Queue()

    async def emit(frame: dict[str, Any]) -> None:
        frames.put_nowait(frame)

    async def done(frame: dict[str, Any]) -> None:
        frames.put_nowait(None)

    task = asyncio.create_task(agent_run.session.run(emit, done))
    return task, frames


async def whole(agent_run: AgentRun) -> dict[str, Any]:
    """Run to the end; the Chat Completion, or a GatewayError when nothing was produced."""
    task, _ = await run(agent_run)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        agent_run.session.stop()
        raise
    state = agent_run.state
    if state.error and not state.text and not state.client_calls:
        raise agent_run.error()
    return agent_run.completion()


async def first_frames(agent_run: AgentRun, frames: asyncio.Queue) -> list[dict[str, Any]]:
    """The frames up to the first that decides how the answer starts: text, a tool
    call, a wait for approval, an error or the end."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await frames.get()
        if frame is None:
            seen.append({"type": "end"})
            return seen
        seen.append(frame)
        if frame["type"] in ("delta", "approval_required", "error"):
            return seen


def streaming(agent_run: AgentRun, task: asyncio.Task, frames: asyncio.Queue,
              seen: list[dict[str, Any]], include_usage: bool,
              on_end) -> StreamingHttpResponse:
    async def body():
        try:
            yield agent_run.chunk({"role": "assistant", "content": ""})
            pending = list(seen)
            while True:
                frame = pending.pop(0) if pending else await frames.get()
                if frame is None or frame.get("type") == "end":
                    break
                kind = frame["type"]
                if kind == "delta":
                    yield agent_run.chunk({"content": frame["text"]})
                elif kind == "approval_required":
                    # a comment: clients ignore it, and the connection stays alive
                    yield (f": waiting for approval {frame.get('approval_id', '')} of "
                           f"{frame.get('name', 'a tool')}\n\n").encode()
                elif kind == "error":
                    yield b"data: " + json.dumps(agent_run.error().body()).encode() + b"\n\n"
            state = agent_run.state
            if state.client_calls:
                yield agent_run.chunk({"tool_calls": [
                    {"index": i, **call} for i, call in enumerate(agent_run.tool_calls())]})
            if not state.error:
                yield agent_run.chunk({}, agent_run.finish_reason())
            if include_usage:
                usage = {"id": agent_run.completion_id, "object": "chat.completion.chunk",
                         "created": agent_run.created, "model": agent_run.chat.model,
                         "choices": [], "usage": agent_run.usage()}
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            await agent_run.settle(task)
            await on_end()

    return sse_response(body())

