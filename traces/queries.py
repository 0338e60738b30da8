"""Reading traces: the list's filters and keyset pages, and one trace as a tree of spans
laid out for the waterfall (shared by the pages and the JSON API)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from console.actions import Invalid
from console.safeinput import digits
from traces.choices import SpanStatus
from traces.models import Span, Trace

MAX_LIMIT = 200
RELATIVE = re.compile(r"^(\d{1,4})([mhd])$")
FILTERS = ("agent", "service", "status", "model", "external", "since", "until", "min_ms",
           "conversation", "request")
LIST_FIELDS = ("id", "trace_id", "started_at", "duration_ms", "name", "service", "agent",
               "agent_id", "external", "status", "model", "tokens_in", "tokens_out",
               "span_count", "error_count", "conversation_id", "request_id")


def _when(value: str, field: str) -> datetime:
    relative = RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return timezone.now() - timedelta(**{{"m": "minutes", "h": "hours",
                                              "d": "days"}[unit]: amount})
    when = parse_datetime(value)
    if when is None:
        raise Invalid({field: ["Give an ISO 8601 time or a span back such as 15m, 24h, 7d."]})
    return when if timezone.is_aware(when) else timezone.make_aware(when)


def filtered(params: dict[str, Any]) -> QuerySet[Trace]:
    """Traces matching the filters (Invalid naming a bad one), newest first."""
    qs = Trace.objects.all()
    p = {k: str(v).strip() for k, v in params.items() if k in FILTERS and v not in (None, "")}
    if "agent" in p:  # an agent's name, or the service of an app without agent spans
        qs = qs.filter(Q(agent=p["agent"]) | Q(agent="", service=p["agent"]))
    if "service" in p:
        qs = qs.filter(service=p["service"])
    if "status" in p:
        if p["status"] not in SpanStatus.values:
            raise Invalid({"status": [f"One of {', '.join(SpanStatus.values)}."]})
        qs = qs.filter(status=p["status"])
    if "model" in p:
        qs = qs.filter(model=p["model"])
    if "external" in p:
        if p["external"].lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise Invalid({"external": ["true or false."]})
        qs = qs.filter(external=p["external"].lower() in ("true", "1", "yes"))
    if "since" in p:
        qs = qs.filter(started_at__gte=_when(p["since"], "since"))
    if "until" in p:
        qs = qs.filter(started_at__lt=_when(p["until"], "until"))
    if "min_ms" in p:
        try:
            qs = qs.filter(duration_ms__gte=float(p["min_ms"]))
        except ValueError:
            raise Invalid({"min_ms": ["A number of milliseconds."]}) from None
    if "conversation" in p:
        if not digits(p["conversation"]) or len(p["conversation"]) > 18:
            raise Invalid({"conversation": ["A conversation id."]})
        qs = qs.filter(conversation_id=int(p["conversation"]))
    if "request" in p:
        qs = qs.filter(request_id=p["request"][:64])
    return qs.order_by("-started_at", "-id")


def _cursor(trace: dict[str, Any]) -> str:
    return f"{int(trace['started_at'].timestamp() * 1_000_000)}.{trace['id']}"


def page(qs: QuerySet[Trace], cursor: str = "", limit: int = 50
         ) -> tuple[list[dict[str, Any]], str | None]:
    """One page after `cursor` (keyset on started_at, id) and the next page's cursor."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid({"limit": [f"Use a limit between 1 and {MAX_LIMIT}."]})
    if cursor:
        micros, _, ident = cursor.partition(".")
        if not (digits(micros) and digits(ident) and len(micros) < 20 and len(ident) < 19):
            raise Invalid({"cursor": ["Use the next_cursor of the previous page."]})
        at = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
        qs = qs.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=int(ident)))
    rows = list(qs.values(*LIST_FIELDS)[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_cursor(rows[-1]) if more and rows else None)


@dataclass
class Step:
    """A span placed on the waterfall."""

    span: Span
    depth: int
    offset_pct: float
    width_pct: float
    label: str  # fallback, escalation, router, approval… (empty: a plain step)


def label_of(span: Span) -> str:
    a = span.attributes
    if a.get("tanglaw.escalation"):
        return "escalation"
    if a.get("tanglaw.fallback"):
        return "fallback"
    if a.get("tanglaw.router") or span.name == "route":
        return "router"
    if span.name.startswith("await_approval"):
        return "approval"
    return ""


def tree(spans: list[Span]) -> list[Step]:
    """Spans in reading order (each parent before its children, siblings by start), with
    their depth and place on the time axis. A span whose parent never arrived starts a
    branch of its own."""
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    roots = []
    for span in sorted(spans, key=lambda s: (s.start_ns, s.pk or 0)):
        if span.parent_id and span.parent_id in ids and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    out: list[Step] = []
    seen: set[str] = set()
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue  # a cycle of parents in a bad payload: shown once
        seen.add(span.span_id)
        out.append(Step(span, depth, round((span.start_ns - start) / total * 100, 3),
                        round(max((span.end_ns - span.start_ns) / total * 100, 0.4), 3),
                        label_of(span)))
        stack += [(child, depth + 1) for child in reversed(children.get(span.span_id, []))]
    return out


MAX_SPANS = 5000  # one page of a trace: a larger one shows its first spans by start


def spans_of(trace: Trace, limit: int = MAX_SPANS) -> list[Span]:
    return list(Span.objects.filter(trace_id=trace.trace_id).order_by("start_ns", "id")
                [:limit])


def tools_offered(span: Span) -> list[dict[str, Any]]:
    """The tools a model call was offered (gen_ai.tool.definitions: JSON text or a list)."""
    value = span.attributes.get("gen_ai.tool.definitions")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    out = []
    for tool in value:
        if isinstance(tool, dict):
            inner = tool.get("function")
            function: dict[str, Any] = inner if isinstance(inner, dict) else tool
            out.append({"name": str(function.get("name", "")),
                        "description": str(function.get("description", ""))[:300]})
    return out


def span_out(span: Span) -> dict[str, Any]:
    return {"span_id": span.span_id, "parent_id": span.parent_id or None, "name": span.name,
            "kind": span.kind, "start": datetime.fromtimestamp(span.start_ns / 1e9, tz=UTC),
            "end": datetime.fromtimestamp(span.end_ns / 1e9, tz=UTC),
            "start_ns": span.start_ns, "end_ns": span.end_ns,
            "duration_ms": round(span.duration_ms, 3), "status": span.status,
            "status_message": span.status_message, "service": span.service,
            "scope": span.scope, "operation": span.operation, "agent": span.agent,
            "model": span.model, "tokens_in": span.tokens_in, "tokens_out": span.tokens_out,
            "external": span.external, "attributes": span.attributes, "events": span.events,
            "links": span.links, "resource": span.resource}
