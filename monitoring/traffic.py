"""Traffic metrics from the agents' runs, the gateway's pass-through requests and the
spans external agents send: each finished run or request becomes samples per backend,
per model (``model:<backend id>:<model>``) and per agent (requests, errors, TTFT,
latency, tokens/s, tokens in and out); an external agent's spans become samples of
``xagent:<id>`` (the same, and tool calls). A gateway request that ran an agent is
already a run.

A cursor (the last run id read) makes this incremental and safe to repeat; the
samples carry the time the run finished, so charts place them where they happened.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from agents.choices import RunOutcome
from agents.models import Run
from gateway.models import Request
from monitoring.models import Sample, State
from traces.facts import MODEL_OPERATIONS, agent_named, ttft_ms
from traces.models import ExternalAgent, Span, Trace
from traces.store import when

CURSOR = "runs_cursor"
GATEWAY_CURSOR = "gateway_cursor"
SPANS_CURSOR = "spans_cursor"
HOLD_S = 120  # how long a step waits for the span that names its agent
BATCH = 5000


def ingest_runs() -> int:
    state = State.objects.filter(key=CURSOR).first()
    last = int(state.value) if state else 0
    runs = list(Run.objects.filter(pk__gt=last).order_by("pk").values(
        "pk", "backend_id", "agent_id", "model", "started_at", "ttft_ms", "total_ms", "tokens_in",
        "tokens_out", "tokens_per_s", "outcome", "error")[:BATCH])
    rows: list[Sample] = []
    for run in runs:
        ended = run["started_at"] + timedelta(milliseconds=run["total_ms"] or 0)
        failed = run["outcome"] == RunOutcome.ERROR or (
            run["outcome"] == RunOutcome.INCOMPLETE and bool(run["error"]))
        values = {"requests": 1.0, "errors": 1.0 if failed else 0.0,
                  "ttft_ms": run["ttft_ms"], "latency_ms": run["total_ms"],
                  "tokens_per_s": run["tokens_per_s"],
                  "tokens_in": float(run["tokens_in"] or 0),
                  "tokens_out": float(run["tokens_out"] or 0)}
        if run["outcome"] == RunOutcome.CANCELLED:
            values["latency_ms"] = None  # a stopped reply says nothing about latency
        rows += _samples(ended, values, run["backend_id"], run["agent_id"], run["model"])
    Sample.objects.bulk_create(rows, batch_size=1000)
    if runs:
        State.objects.update_or_create(key=CURSOR, defaults={"value": runs[-1]["pk"]})
    return len(runs)


def _samples(ended, values: dict, backend_id, agent_id, model_name) -> list[Sample]:
    model = (f"model:{backend_id}:{model_name}"[:64] if backend_id and model_name else None)
    rows: list[Sample] = []
    for scope in (f"backend:{backend_id}" if backend_id else None,
                  f"agent:{agent_id}" if agent_id else None, model):
        if scope is not None:
            rows += [Sample(ts=ended, metric=m, scope=scope, value=v)
                     for m, v in values.items() if v is not None]
    return rows


def ingest_gateway() -> int:
    """The gateway's pass-through requests that reached a backend, as backend and model
    traffic (incremental, like ingest_runs)."""
    state = State.objects.filter(key=GATEWAY_CURSOR).first()
    last = int(state.value) if state else 0
    requests = list(Request.objects.filter(pk__gt=last).order_by("pk").values(
        "pk", "backend_id", "agent_id", "upstream_model", "ts", "ttft_ms", "total_ms",
        "tokens_in", "tokens_out", "status")[:BATCH])
    rows: list[Sample] = []
    for r in requests:
        if r["agent_id"] is not None or r["backend_id"] is None:
            continue  # an agent's run is counted from its Run; unrouted refusals nowhere
        seconds = ((r["total_ms"] or 0) - (r["ttft_ms"] or 0)) / 1000
        values = {"requests": 1.0, "errors": 1.0 if r["status"] >= 500 else 0.0,
                  "ttft_ms": r["ttft_ms"], "latency_ms": r["total_ms"],
                  "tokens_per_s": (round(r["tokens_out"] / seconds, 2)
                                   if r["ttft_ms"] is not None and seconds > 0 and
                                   r["tokens_out"] else None),
                  "tokens_in": float(r["tokens_in"]), "tokens_out": float(r["tokens_out"])}
        if r["status"] == 499:
            values["latency_ms"] = None  # the client went away: says nothing about latency
        ended = r["ts"] + timedelta(milliseconds=r["total_ms"] or 0)
        rows += _samples(ended, values, r["backend_id"], None, r["upstream_model"])
    Sample.objects.bulk_create(rows, batch_size=1000)
    if requests:
        State.objects.update_or_create(key=GATEWAY_CURSOR,
                                       defaults={"value": requests[-1]["pk"]})
    return len(requests)


def ingest_spans(now=None) -> int:
    """External agents' spans as their traffic (incremental, like ingest_runs): an
    `invoke_agent` span (or a model call at the root of an app without agent spans) is
    a request — an error when it, or a step its sender reported in its trace so far (a
    tool that raised), failed —, a model call gives its time to first chunk when it
    states one, and an `execute_tool` span a tool call.

    A step whose agent is not known yet (exporters send children before their parent)
    holds the cursor for up to HOLD_S, so it is counted once its parent has arrived."""
    now = now or timezone.now()
    state = State.objects.filter(key=SPANS_CURSOR).first()
    last = int(state.value) if state else 0
    found = Span.objects.filter(pk__gt=last, external=True).exclude(operation="").order_by(
        "pk").values("pk", "trace_id", "parent_id", "operation", "agent", "service", "status",
                     "end_ns", "duration_ms", "tokens_in", "tokens_out", "attributes",
                     "received_at")[:BATCH]
    spans: list[dict[str, Any]] = [dict(s) for s in found]
    if not spans:
        return 0
    traces: dict[str, Any] = {t["trace_id"]: t for t in Trace.objects.filter(
        trace_id__in={s["trace_id"] for s in spans}).values("trace_id", "agent",
                                                            "external_errors")}
    for s in spans:
        s["named"] = agent_named(s["agent"] or traces.get(s["trace_id"], {}).get("agent", ""),
                                 s["operation"], s["parent_id"], s["service"])
    agents = dict(ExternalAgent.objects.filter(
        name__in={s["named"] for s in spans} - {""}).values_list("name", "pk"))
    rows: list[Sample] = []
    cursor = last
    for s in spans:
        if s["named"] not in agents:
            if now - s["received_at"] < timedelta(seconds=HOLD_S):
                break  # its parent may still come: this and what follows wait
            cursor = s["pk"]
            continue
        cursor = s["pk"]
        rows += _span_samples(s, f"xagent:{agents[s['named']]}",
                              traces.get(s["trace_id"], {}))
    Sample.objects.bulk_create(rows, batch_size=1000)
    if cursor != last:
        State.objects.update_or_create(key=SPANS_CURSOR, defaults={"value": cursor})
    return sum(1 for s in spans if s["pk"] <= cursor)


def _span_samples(s: dict[str, Any], scope: str, trace: dict[str, Any]) -> list[Sample]:
    ended, values = when(s["end_ns"]), {}
    root_call = s["operation"] in MODEL_OPERATIONS and not s["parent_id"]
    if s["operation"] == "invoke_agent" or root_call:
        values = {"requests": 1.0,
                  "errors": 1.0 if s["status"] == "error" or trace.get("external_errors")
                  else 0.0,
                  "latency_ms": s["duration_ms"], "tokens_in": float(s["tokens_in"] or 0),
                  "tokens_out": float(s["tokens_out"] or 0)}
    if s["operation"] in MODEL_OPERATIONS:
        values["ttft_ms"] = ttft_ms(s["attributes"])
    elif s["operation"] == "execute_tool":
        values = {"tool_calls": 1.0, "tool_errors": 1.0 if s["status"] == "error" else 0.0}
    return [Sample(ts=ended, metric=m, scope=scope, value=v)
            for m, v in values.items() if v is not None]
