"""The agent runtime: one async function runs a chat turn, tool loop included.

It streams from the backend's AsyncOpenAI client, accumulates tool-call
fragments by index (and whole-call deltas), validates each call against the
tool's JSON Schema, executes it with its timeout and feeds the result back as
labelled data, until the model answers, the iteration limit is hit or the same
call repeats. It measures TTFT, tokens and tokens/s itself for every backend,
falls back to the next backend+model only before anything reached the user,
and keeps the partial text (marked incomplete) when a failure comes later.
Nothing here touches the database: callers persist the TurnState.

- `types`: the settings a turn runs with and the state it produces
- `loop`: `run_turn`, the candidates with fallback and escalation, the tool iterations
- `stream`: one streamed completion (`chunks` reads its events as plain dicts)
- `tools`: running one tool call, approval included
- `routing`: a router agent's choice of specialist
- `errors`: `TurnFailed` and messages for the OpenAI SDK's errors
"""

from agents.runtime.errors import TurnFailed, explain
from agents.runtime.loop import run_turn
from agents.runtime.routing import keyword_choice, parse_choice, route
from agents.runtime.types import (
    Approve,
    Candidate,
    Emit,
    RouterSettings,
    Specialist,
    ToolCallRecord,
    ToolSpec,
    TurnSettings,
    TurnState,
)

__all__ = [
    "Approve",
    "Candidate",
    "Emit",
    "RouterSettings",
    "Specialist",
    "ToolCallRecord",
    "ToolSpec",
    "TurnFailed",
    "TurnSettings",
    "TurnState",
    "explain",
    "keyword_choice",
    "parse_choice",
    "route",
    "run_turn",
]
