"""What in a span is content (prompts, replies, tool arguments and results) and so kept
only where the operator allowed it: the agent's `log_content` for Tanglaw's own turns,
the key's for spans a code-first agent sends. Everything else is metadata, kept always.

The senders decide first: MAF puts content in spans only with `enable_sensitive_data`.
"""

from __future__ import annotations

from typing import Any

CONTENT_ATTRIBUTES = frozenset({
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.prompt",
    "gen_ai.completion", "gen_ai.request.messages", "gen_ai.response.messages",
})
# the event forms of the same (older GenAI conventions, and the inference details event)
CONTENT_EVENT_PREFIXES = ("gen_ai.content.", "gen_ai.user.", "gen_ai.system.",
                          "gen_ai.assistant.", "gen_ai.tool.", "gen_ai.choice",
                          "gen_ai.client.inference.operation.details")


def is_content_event(name: str) -> bool:
    return name.startswith(CONTENT_EVENT_PREFIXES)


def strip(span: dict[str, Any]) -> bool:
    """Drop the content from a span row in place; True when there was some."""
    attributes = span.get("attributes") or {}
    found = [k for k in attributes if k in CONTENT_ATTRIBUTES]
    for name in found:
        del attributes[name]
    events = span.get("events") or []
    kept = [e for e in events if not is_content_event(e.get("name", ""))]
    if len(kept) != len(events):
        span["events"] = kept
    return bool(found) or len(kept) != len(events)
