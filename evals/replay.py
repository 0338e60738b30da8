"""What was said before, to ask again or to keep as a case: a conversation's turn, or a
trace span's input messages (Tanglaw's own spans and a code-first agent's, in the OpenAI
or the GenAI `parts` shape). *Replay* sends them to the targets of a comparison; *Add to
dataset* from a trace keeps them as a case."""

from __future__ import annotations

import json
import re
from typing import Any

from console.actions import Invalid
from evals import actions


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _text(content: Any) -> str:
    """A message's text: a string, OpenAI content parts or GenAI `parts`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text") or p.get("content") or "" for p in content
                         if isinstance(p, dict) and p.get("type") == "text"
                         and isinstance(p.get("text") or p.get("content"), str))
    return ""


def messages_of_span(attributes: dict[str, Any], *, own: bool) -> list[dict[str, Any]]:
    """A model call's input messages as chat messages (system, user, assistant text; tool
    steps left out), up to the last question. Tanglaw's own spans begin with the agent's
    prompt, which the targets bring themselves: it is left out there."""
    found = _json(attributes.get("gen_ai.input.messages"))
    out: list[dict[str, Any]] = []
    instructions = _json(attributes.get("gen_ai.system_instructions"))
    if not own and instructions:
        text = _text(instructions) if isinstance(instructions, list) else str(instructions)
        if text.strip():
            out.append({"role": "system", "content": text})
    for message in found if isinstance(found, list) else []:
        if not isinstance(message, dict) or message.get("role") not in actions.ROLES:
            continue
        if own and message["role"] == "system":
            continue
        text = _text(message.get("content", message.get("parts")))
        if text.strip():
            out.append({"role": message["role"], "content": text})
    last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    return out[:last + 1] if last is not None else []


def _question_of_run(run: Any) -> int | None:
    """The user message a run answered: the last question before its first message."""
    first = run.messages.order_by("pk").first()
    asked = run.conversation.messages.filter(role="user")
    if first is not None:
        asked = asked.filter(pk__lt=first.pk)
    last = asked.order_by("-pk").first()
    return last.pk if last is not None else None


MOST_SPANS = 500  # a trace's first spans are searched for input messages


def trace_id_of(value: Any) -> str:
    """A trace id as traces stores it (hex, lower case); Invalid otherwise."""
    trace = value.strip().lower() if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9a-f]{1,32}", trace):
        raise Invalid({"trace_id": ["a trace's id (up to 32 hex digits)"]})
    return trace


def _spans(trace_id: Any, span_id: Any) -> tuple[list[Any], Any]:
    from traces.models import Span

    trace = trace_id_of(trace_id)
    spans = list(Span.objects.filter(trace_id=trace).order_by("start_ns")
                 .only("span_id", "external", "attributes")[:MOST_SPANS])
    if not spans:
        raise Invalid({"trace_id": ["no such trace"]})
    chosen = None
    if span_id not in (None, ""):
        wanted = span_id.strip().lower() if isinstance(span_id, str) else None
        chosen = next((s for s in spans if s.span_id == wanted), None)
        if chosen is None:
            raise Invalid({"span_id": ["no such span in this trace"]})
    return spans, chosen


def _from_spans(spans: list[Any], chosen: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The span (the chosen one, else the trace's first model call with content) and its
    messages; (None, []) when no span kept any."""
    for span in ([chosen] if chosen is not None else []) + spans:
        messages = messages_of_span(span.attributes, own=not span.external)
        if messages:
            return span, messages
    return None, []


NO_CONTENT = ("this trace kept no messages (its agent does not log content): use the "
              "turn in its conversation")


def _run_case(user: Any, trace_id: str, expected: bool) -> dict[str, Any] | None:
    """The trace's turn as a case, from its conversation (when the user may read it)."""
    from agents.models import Run

    run = Run.objects.filter(trace_id=trace_id).exclude(
        conversation=None).select_related("conversation").first()
    if run is None:
        return None
    try:
        return actions.case_from_conversation(user, run.conversation_id,
                                              _question_of_run(run), expected=expected)
    except Invalid:
        return None  # someone else's conversation: the trace alone is what there is


def replay_messages(user: Any, *, conversation_id: Any = None, message_id: Any = None,
                    trace_id: Any = None, span_id: Any = None) -> list[dict[str, Any]]:
    """What to send again: a conversation's turn (the history up to that question), or a
    span's input messages (the trace's first model call with content when the span has
    none; the turn's conversation when the trace kept no content). Raises Invalid."""
    if conversation_id is not None:
        messages = actions.case_from_conversation(user, conversation_id, message_id,
                                                  expected=False)["messages"]
        field = "message_id" if message_id is not None else "conversation_id"
    else:
        spans, chosen = _spans(trace_id, span_id)
        _, messages = _from_spans(spans, chosen)
        if not messages:
            case = _run_case(user, trace_id_of(trace_id), expected=False)
            if case is None:
                raise Invalid({"trace_id": [NO_CONTENT]})
            messages = case["messages"]
        field = "span_id" if span_id else "trace_id"
    if not messages or messages[-1]["role"] != "user":
        raise Invalid({field: ["that turn's question has no text to send again"]})
    return messages


def case_from_trace(user: Any, trace_id: Any, span_id: Any = None, *,
                    expected: bool = True) -> dict[str, Any]:
    """*Add to dataset* from a trace: Tanglaw's own turn from its conversation (the
    history, the question and its reply), otherwise the span's input messages and, as
    the expected answer, its output. `source` names the trace and span."""
    spans, chosen = _spans(trace_id, span_id)
    trace = trace_id_of(trace_id)
    if chosen is None or not chosen.external:
        found = _run_case(user, trace, expected)
        if found is not None:
            found["source"]["trace_id"] = trace
            return found
    span, messages = _from_spans(spans, chosen)
    if not messages:
        raise Invalid({"trace_id": [NO_CONTENT]})
    out = _json(span.attributes.get("gen_ai.output.messages"))
    answer = "\n".join(_text(m.get("content", m.get("parts"))) for m in out
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
                       ) if isinstance(out, list) else ""
    case: dict[str, Any] = {"id": f"span-{span.span_id}", "messages": messages,
                            "source": {"trace_id": trace, "span_id": span.span_id}}
    if expected and answer.strip():
        case["expected"] = answer
    return case
