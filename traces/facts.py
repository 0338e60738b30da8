"""What a span's attributes state, read one way everywhere (the writer's summaries, the
monitor's external-agent traffic, the pages): its GenAI operation, agent, model, tokens,
time to first chunk. Sender values are untrusted: numbers are checked, counts clamped."""

from __future__ import annotations

import math
from typing import Any

# spans that stand for a call to a model: their usage adds up to the trace's tokens
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "responses"})
# where a span may say how long the model took to its first chunk, and its unit's scale
TTFT_ATTRIBUTES = (("tanglaw.ttft_ms", 1.0), ("gen_ai.server.time_to_first_token", 1000.0),
                   ("gen_ai.response.time_to_first_chunk", 1000.0))
MAX_COUNT = 2**31 - 1  # an IntegerField on PostgreSQL


def number(value: Any) -> float | None:
    """A finite number, else None (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def count(value: Any) -> int | None:
    """A token count: a finite number, clamped to 0..2^31-1."""
    found = number(value)
    return None if found is None else int(min(max(found, 0), MAX_COUNT))


def ttft_ms(attributes: dict[str, Any]) -> float | None:
    for name, scale in TTFT_ATTRIBUTES:
        found = number(attributes.get(name))
        if found is not None and found >= 0:
            return found * scale
    return None


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """The GenAI facts of a span dict, as the columns the pages filter on."""
    a = row.get("attributes") or {}
    return {"operation": str(a.get("gen_ai.operation.name") or "")[:64],
            "agent": str(a.get("gen_ai.agent.name") or "")[:200],
            "model": str(a.get("gen_ai.request.model") or a.get("gen_ai.response.model")
                         or "")[:200],
            "tokens_in": count(a.get("gen_ai.usage.input_tokens")),
            "tokens_out": count(a.get("gen_ai.usage.output_tokens"))}


def agent_named(agent: str, operation: str, parent_id: str, service: str) -> str:
    """The external agent a span names: its gen_ai.agent.name or, for a GenAI span at
    the root (an instrumented app calling a model, no agent span), its service.name."""
    if agent:
        return agent
    if operation and not parent_id:
        return service[:200]
    return ""


def agent_of(row: dict[str, Any]) -> str:
    facts = derive(row)
    return agent_named(facts["agent"], facts["operation"], row.get("parent_id") or "",
                       row.get("service") or "")
