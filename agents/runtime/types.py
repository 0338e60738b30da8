"""What a turn runs with and what it produced: plain dataclasses, no I/O.

TurnSettings (candidates, tools, router) is read from the database up front by the
callers (agents.actions); TurnState is what they persist, complete or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from console.backends.base import Adapter
from traces.recorder import OFF, Recorder

# a frame for the client: {"type": "delta" | "tool_call" | "route" | ..., ...}
Emit = Callable[[dict[str, Any]], Awaitable[None]]
# asks an operator about a tool call; (approved, who approved or why not)
Approve = Callable[[dict[str, Any]], Awaitable[tuple[bool, str]]]


class ToolCall(TypedDict):
    """A tool call the model made, its fragments merged; `arguments` is the raw JSON."""

    id: str
    name: str
    arguments: str


@dataclass
class ToolSpec:
    name: str
    kind: str
    description: str
    parameters: dict[str, Any]
    timeout_s: float = 10.0
    requires_approval: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters or {"type": "object", "properties": {}}}}


@dataclass
class Candidate:
    """A backend+model to try, in order."""

    adapter: Adapter
    model: str
    backend_id: int | None = None
    label: str = ""
    escalation: bool = False  # the agent's escalation target: tried last, labelled as such


@dataclass
class Specialist:
    """A router's specialist: who it is, when keywords pick it, and how it runs."""

    agent_id: int
    name: str
    description: str
    keywords: list[str]
    settings: TurnSettings


@dataclass
class RouterSettings:
    candidate: Candidate
    system_prompt: str
    specialists: list[Specialist]
    timeout_s: float = 30.0
    escalation: Candidate | None = None


@dataclass
class TurnSettings:
    candidates: list[Candidate]
    system_prompt: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    first_token_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    turn_timeout_s: float = 300.0
    max_tool_iterations: int = 6
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    router: RouterSettings | None = None
    unavailable: str = ""  # why no candidate may be used (e.g. circuit breakers open)
    slots: list[str] = field(default_factory=list)  # generation caps held (console.limits)
    # a gateway caller's own tools (OpenAI tool dicts): a call to one ends the turn and is
    # returned to the caller to run (finish_reason "tool_calls")
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    # the caller's sampling fields sent with every completion (top_p, stop, seed,
    # response_format…), and what only the first completion gets (tool_choice)
    extra: dict[str, Any] = field(default_factory=dict)
    first_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolCallRecord:
    call_id: str
    name: str
    arguments: Any  # the parsed JSON (None when it did not parse), whatever its shape
    ok: bool
    result_summary: str
    ms: float
    approved_by: str = ""


@dataclass
class TurnState:
    """Everything a turn produced so far; complete or not, callers persist this."""

    text: str = ""
    incomplete: bool = False
    finish_reason: str = ""
    error: str = ""
    error_code: str = ""
    backend_id: int | None = None
    model: str = ""
    ttft_ms: float | None = None
    total_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    usage_reported: bool = True
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    route: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[tuple[int | None, bool]] = field(default_factory=list)  # breaker input
    messages: list[dict[str, Any]] = field(default_factory=list)  # assistant + tool messages
    committed: bool = False  # something reached the user: no more fallback
    client_calls: list[ToolCall] = field(default_factory=list)  # for the caller to run
    trace: Recorder = field(default=OFF, repr=False)  # the turn's spans (traces.recorder)
    first_token_at: float | None = None  # perf_counter of the latest step's first token

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_ms is None or self.total_ms is None or not self.tokens_out:
            return None
        seconds = (self.total_ms - self.ttft_ms) / 1000
        return round(self.tokens_out / seconds, 2) if seconds > 0 else None

    def metrics(self) -> dict[str, Any]:
        return {"ttft_ms": _round(self.ttft_ms), "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "tokens_per_s": self.tokens_per_s,
                "total_ms": _round(self.total_ms)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
