"""Spans into rows, off the request path: the OTLP receiver and Tanglaw's own turns queue
span dicts (traces.otlp's shape) and one thread per process writes them in batches
(console.batch), merging each batch into its traces' summaries, so a span that arrives
before its parent, or after its trace was summed up, still joins it.

With TANGLAW_TRACE_FLUSH_S = 0 (the tests) the caller writes its spans itself.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.batch import Batcher
from traces import export
from traces.choices import SpanStatus
from traces.models import ExternalAgent, Span, Trace

TANGLAW_SERVICE = "tanglaw"
# spans that stand for a call to a model: their usage adds up to the trace's tokens
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "responses"})
SPAN_FIELDS = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns",
               "status", "status_message", "service", "scope", "attributes", "events",
               "resource", "links", "external")


def flush_interval() -> float:
    return float(settings.TANGLAW_TRACE_FLUSH_S)


def add(spans: list[dict[str, Any]]) -> bool:
    """Queue span dicts; True when the caller must `flush` (no writer thread)."""
    return writer.add(spans) if spans else False


def flush() -> int:
    return writer.flush()


def backlog() -> int:
    return writer.backlog()


def when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """The GenAI facts a span's attributes state, as columns the pages filter on."""
    a = row.get("attributes") or {}
    return {"operation": str(a.get("gen_ai.operation.name") or "")[:64],
            "agent": str(a.get("gen_ai.agent.name") or "")[:200],
            "model": str(a.get("gen_ai.request.model") or a.get("gen_ai.response.model")
                         or "")[:200],
            "tokens_in": _int(a.get("gen_ai.usage.input_tokens")),
            "tokens_out": _int(a.get("gen_ai.usage.output_tokens"))}


def _write(batch: list[dict[str, Any]]) -> None:
    now = timezone.now()
    by_trace: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in batch:
        by_trace[row["trace_id"]][row["span_id"]] = row  # a repeat within the batch: once
    with transaction.atomic():
        for trace_id, span_id in Span.objects.filter(trace_id__in=list(by_trace)).values_list(
                "trace_id", "span_id"):
            by_trace[trace_id].pop(span_id, None)  # stored already (a retried export)
        fresh = [row for spans in by_trace.values() for row in spans.values()]
        if not fresh:
            return
        Span.objects.bulk_create([_span(row, now) for row in fresh], batch_size=500,
                                 ignore_conflicts=True)
        _merge_traces({t: list(s.values()) for t, s in by_trace.items() if s})
        _see_agents(fresh, now)
    export.export(fresh)  # to a collector too, when OTEL_EXPORTER_OTLP_* names one


def _span(row: dict[str, Any], now: datetime) -> Span:
    values = {f: row[f] for f in SPAN_FIELDS if row.get(f) is not None}
    return Span(**values, **derive(row), received_at=now,
                duration_ms=(row["end_ns"] - row["start_ns"]) / 1e6)


def _merge_traces(spans_by_trace: dict[str, list[dict[str, Any]]]) -> None:
    """Fold new spans into their traces' summaries. The traces are made first where
    missing (a concurrent writer making the same one is ignored), then locked in one
    order and updated, so two workers merging spans of one trace neither lose counts nor
    deadlock (PostgreSQL; SQLite writes one transaction at a time anyway)."""
    ids = sorted(spans_by_trace)
    known = set(Trace.objects.filter(trace_id__in=ids).values_list("trace_id", flat=True))
    missing = []
    for trace_id in ids:
        if trace_id not in known:
            first = min(spans_by_trace[trace_id], key=lambda r: r["start_ns"])
            missing.append(Trace(trace_id=trace_id, started_at=when(first["start_ns"]),
                                 ended_at=when(first["end_ns"]), name=first["name"]))
    Trace.objects.bulk_create(missing, batch_size=500, ignore_conflicts=True)
    traces = list(Trace.objects.select_for_update().filter(trace_id__in=ids)
                  .order_by("trace_id"))
    for trace in traces:
        _fold(trace, spans_by_trace[trace.trace_id])
    Trace.objects.bulk_update(traces, [
        "started_at", "ended_at", "duration_ms", "name", "has_root", "service", "agent",
        "agent_id", "external", "status", "model", "tokens_in", "tokens_out", "span_count",
        "error_count", "conversation_id", "request_id"], batch_size=500)


def _fold(trace: Trace, rows: list[dict[str, Any]]) -> None:
    """Add spans to a trace's summary (in any order, any number of batches)."""
    for row in sorted(rows, key=lambda r: r["start_ns"]):
        facts = derive(row)
        a = row.get("attributes") or {}
        start, end = when(row["start_ns"]), when(row["end_ns"])
        root = not row.get("parent_id")
        if start < trace.started_at:
            trace.started_at = start
            if not trace.has_root:
                trace.name = row["name"]
        trace.ended_at = max(trace.ended_at, end)
        if root and not trace.has_root:
            trace.has_root, trace.name = True, row["name"]
        if root or not trace.service:
            trace.service = row.get("service") or trace.service
        external = bool(row.get("external"))
        trace.external = trace.external or external
        # the agent: an external agent's name wins over Tanglaw's (its turn is the outer)
        if facts["agent"] and (not trace.agent or (external and trace.agent_id is not None
                                                   and not trace.external)):
            trace.agent = facts["agent"]
        if a.get("tanglaw.agent.id") is not None and trace.agent_id is None:
            trace.agent_id = _int(a.get("tanglaw.agent.id"))
        if facts["model"] and not trace.model:
            trace.model = facts["model"]
        if facts["operation"] in MODEL_OPERATIONS:
            trace.tokens_in += facts["tokens_in"] or 0
            trace.tokens_out += facts["tokens_out"] or 0
        if row.get("status") == SpanStatus.ERROR:
            trace.error_count += 1
            trace.status = SpanStatus.ERROR
        elif row.get("status") == SpanStatus.OK and trace.status == SpanStatus.UNSET:
            trace.status = SpanStatus.OK
        if trace.conversation_id is None and _int(a.get("tanglaw.conversation.id")):
            trace.conversation_id = _int(a.get("tanglaw.conversation.id"))
        if not trace.request_id and a.get("tanglaw.request.id"):
            trace.request_id = str(a["tanglaw.request.id"])[:64]
        trace.span_count += 1
    trace.duration_ms = (trace.ended_at - trace.started_at).total_seconds() * 1000


def agent_of(row: dict[str, Any]) -> str:
    """The external agent a span names: its gen_ai.agent.name or, for a GenAI span at
    the root (an instrumented app calling a model, no agent span), its service.name."""
    facts = derive(row)
    if facts["agent"]:
        return facts["agent"]
    if facts["operation"] and not row.get("parent_id"):
        return (row.get("service") or "")[:200]
    return ""


def _see_agents(rows: list[dict[str, Any]], now: datetime) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        if row.get("external") and (name := agent_of(row)):
            seen.setdefault(name, row.get("service") or "")
    if not seen:
        return
    ExternalAgent.objects.bulk_create(
        [ExternalAgent(name=n, service=s[:200], first_seen=now, last_seen=now)
         for n, s in seen.items()], ignore_conflicts=True)
    ExternalAgent.objects.filter(name__in=list(seen)).update(last_seen=now)


# `_write` looked up at each call, so a test can stand in for it
writer = Batcher("traces", lambda batch: _write(batch), flush_interval, max_batch=1000,
                 max_pending=100_000)
