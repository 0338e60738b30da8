"""Traces in the JSON API (mounted on console's /api/): the list with its filters, one
trace with its spans, and the external agents that reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Router, Schema

from console.api import found, need
from traces import queries
from traces.models import ExternalAgent, Trace

router = Router(tags=["traces"])


class TraceOut(Schema):
    trace_id: str
    started_at: datetime
    duration_ms: float
    name: str
    service: str
    agent: str
    agent_id: int | None
    external: bool
    status: str
    model: str
    tokens_in: int
    tokens_out: int
    span_count: int
    error_count: int
    conversation_id: int | None
    request_id: str


class TracePage(Schema):
    items: list[TraceOut]
    next_cursor: str | None


class SpanOut(Schema):
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start: datetime
    end: datetime
    start_ns: int
    end_ns: int
    duration_ms: float
    status: str
    status_message: str
    service: str
    scope: str
    operation: str
    agent: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    external: bool
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    resource: dict[str, Any]


class TraceDetail(TraceOut):
    spans: list[SpanOut]


class ExternalAgentOut(Schema):
    id: int
    name: str
    service: str
    first_seen: datetime
    last_seen: datetime


@router.get("/traces", response=TracePage)
def list_traces(request, agent: str = "", service: str = "", status: str = "",
                model: str = "", external: str = "", since: str = "", until: str = "",
                min_ms: str = "", conversation: str = "", cursor: str = "", limit: int = 50):
    """Traces newest first. `agent`: a Tanglaw agent's name or an external agent's
    gen_ai.agent.name; `since`/`until`: ISO 8601 or `15m`, `24h`, `7d`; `min_ms`: the
    slowest only. Keyset-paged: pass `next_cursor` back as `cursor`."""
    need(request, "traces.view")
    qs = queries.filtered({"agent": agent, "service": service, "status": status,
                           "model": model, "external": external, "since": since,
                           "until": until, "min_ms": min_ms, "conversation": conversation})
    items, next_cursor = queries.page(qs, cursor, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/traces/{trace_id}", response=TraceDetail)
def get_trace(request, trace_id: str):
    """One trace and its spans (name, kind, parent, start, end, status, attributes,
    events), in start order: the first 5,000 of a larger trace (`span_count` says how
    many it has)."""
    need(request, "traces.view")
    trace = found(Trace.objects.all(), "trace", trace_id=trace_id.lower()[:32])
    spans = queries.spans_of(trace)
    out = {f: getattr(trace, f) for f in TraceOut.model_fields}
    return {**out, "spans": [queries.span_out(s) for s in spans]}


@router.get("/external-agents", response=list[ExternalAgentOut])
def list_external_agents(request):
    """Agents Tanglaw does not run that sent spans (gen_ai.agent.name or service.name)."""
    need(request, "agents.view")
    return list(ExternalAgent.objects.order_by("name"))
