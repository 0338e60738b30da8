"""Spans into rows, off the request path: the OTLP receiver and Tanglaw's own turns queue
span dicts (traces.otlp's shape) and one thread per process writes them in batches
(console.batch), merging each batch into its traces' summaries, so a span that arrives
before its parent, or after its trace was summed up, still joins it.

What senders wrote is untrusted: secret-looking values are masked (console.redact), and
a batch the database refuses is split until the row it refuses is found and dropped, so
one bad span never holds up the others. With TANGLAW_TRACE_FLUSH_S = 0 (the tests) the
caller writes its spans itself.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from console.batch import Batcher
from console.redact import MASK, SECRET_NAME, redact
from traces import export
from traces.choices import SpanStatus
from traces.facts import MODEL_OPERATIONS, agent_of, count, derive
from traces.models import ExternalAgent, Span, Trace

log = logging.getLogger("tanglaw.traces")
SPAN_FIELDS = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns",
               "status", "status_message", "service", "scope", "attributes", "events",
               "resource", "links", "external")
TRACE_FIELDS = ["started_at", "ended_at", "duration_ms", "name", "has_root", "service", "agent",
                "agent_rank", "agent_id", "external", "status", "model", "tokens_in",
                "tokens_out", "usage", "span_count", "error_count", "external_errors",
                "conversation_id", "request_id"]
# failures of a row's values (not of the database): the row is dropped, not retried
BAD_ROW = (DataError, IntegrityError, ValueError, OverflowError, TypeError)


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


def scrub(attributes: dict[str, Any]) -> dict[str, Any]:
    """Secret-looking values masked: text under a key whose last part names a secret
    (`http.request.header.authorization`, `db.password`; a number such as
    `gen_ai.server.time_to_first_token` is no secret), and bearer tokens, `?api_key=`
    and keys inside any string."""
    return {k: MASK if isinstance(v, str | list) and v and SECRET_NAME.search(
        k.rsplit(".", 1)[-1]) else redact(v) for k, v in attributes.items()}


def _write(batch: list[dict[str, Any]]) -> None:
    """Write a batch; a batch whose values the database refuses is halved until the bad
    row is alone, and that row is dropped (a database that is away is raised: the
    batch is kept and retried)."""
    try:
        _write_batch(batch)
    except BAD_ROW as exc:
        if len(batch) == 1:
            log.warning("a span was dropped: %s (%s)", batch[0].get("name"), exc)
            return
        half = len(batch) // 2
        _write(batch[:half])
        _write(batch[half:])


def _write_batch(batch: list[dict[str, Any]]) -> None:
    now = timezone.now()
    by_trace: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in batch:
        by_trace[row["trace_id"]][row["span_id"]] = row  # a repeat within the batch: once
    # the Python work before the transaction: on SQLite it holds the one write lock
    made = {(t, i): _span(row, now) for t, spans in by_trace.items()
            for i, row in spans.items()}
    with transaction.atomic():
        traces = _lock_traces(by_trace)
        # after the lock: a retried export two workers took at once is stored once
        for trace_id, span_id in Span.objects.filter(trace_id__in=list(by_trace)).values_list(
                "trace_id", "span_id"):
            by_trace[trace_id].pop(span_id, None)
        fresh = [row for spans in by_trace.values() for row in spans.values()]
        if not fresh:
            return
        Span.objects.bulk_create([made[r["trace_id"], r["span_id"]] for r in fresh],
                                 batch_size=500, ignore_conflicts=True)
        changed = [t for t in traces if by_trace[t.trace_id]]
        for trace in changed:
            _fold(trace, list(by_trace[trace.trace_id].values()))
        _save(changed)
        _see_agents(fresh, now)
    export.export(fresh)  # to a collector too, when OTEL_EXPORTER_OTLP_* names one


def _lock_traces(by_trace: dict[str, dict[str, dict[str, Any]]]) -> list[Trace]:
    """The batch's traces, made first where missing (a concurrent writer making the same
    one is ignored), then locked in one order: two workers merging spans of one trace
    neither lose counts nor deadlock (PostgreSQL; SQLite writes one at a time anyway)."""
    ids = sorted(by_trace)
    known = set(Trace.objects.filter(trace_id__in=ids).values_list("trace_id", flat=True))
    missing = []
    for trace_id in ids:
        if trace_id not in known:
            first = min(by_trace[trace_id].values(), key=lambda r: r["start_ns"])
            missing.append(Trace(trace_id=trace_id, started_at=when(first["start_ns"]),
                                 ended_at=when(first["end_ns"]), name=first["name"]))
    Trace.objects.bulk_create(missing, batch_size=500, ignore_conflicts=True)
    return list(Trace.objects.select_for_update().filter(trace_id__in=ids).order_by("trace_id"))


def _save(traces: list[Trace]) -> None:
    """The summaries back, one parameterised UPDATE per row in one executemany (Django's
    bulk_update builds a CASE per field and row: 7 s for 1,000 traces, measured)."""
    if not traces:
        return
    fields = [f for f in (Trace._meta.get_field(name) for name in TRACE_FIELDS)
              if isinstance(f, Field)]
    quote = connection.ops.quote_name
    # identifiers from the model's own metadata, quoted; every value a parameter
    columns = ", ".join(f"{quote(str(f.column))} = %s" for f in fields)
    sql = f"UPDATE {quote(Trace._meta.db_table)} SET {columns} WHERE {quote('id')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[f.get_db_prep_save(getattr(t, f.attname), connection)
                                  for f in fields] + [t.pk] for t in traces])


def _span(row: dict[str, Any], now: datetime) -> Span:
    values = {f: row[f] for f in SPAN_FIELDS if row.get(f) is not None}
    values["attributes"] = scrub(values.get("attributes") or {})
    values["events"] = [{**e, "attributes": scrub(e.get("attributes") or {})}
                        for e in values.get("events") or []]
    values["status_message"] = redact(values.get("status_message") or "")
    return Span(**values, **derive(row), received_at=now,
                duration_ms=(row["end_ns"] - row["start_ns"]) / 1e6)


def _agent_rank(external: bool, root: bool) -> int:
    """Whose agent name a trace shows: an external root's over an external step's over
    Tanglaw's (a MAF agent calling Tanglaw's agent is the run the operator looks for)."""
    return 1 + (2 if external else 0) + (1 if root else 0)


def _fold(trace: Trace, rows: list[dict[str, Any]]) -> None:
    """Add spans to a trace's summary (in any order, any number of batches)."""
    usage = {"own": [0, 0], "external": [0, 0], **(trace.usage or {})}
    for row in sorted(rows, key=lambda r: r["start_ns"]):
        facts = derive(row)
        a = row.get("attributes") or {}
        start, end = when(row["start_ns"]), when(row["end_ns"])
        root = not row.get("parent_id")
        external = bool(row.get("external"))
        if start < trace.started_at:
            trace.started_at = start
            if not trace.has_root:
                trace.name = row["name"]
        trace.ended_at = max(trace.ended_at, end)
        if root and not trace.has_root:
            trace.has_root, trace.name = True, row["name"]
        if root or not trace.service:
            trace.service = row.get("service") or trace.service
        trace.external = trace.external or external
        if facts["agent"] and _agent_rank(external, root) > trace.agent_rank:
            trace.agent, trace.agent_rank = facts["agent"], _agent_rank(external, root)
        if facts["model"] and not trace.model:
            trace.model = facts["model"]
        if facts["operation"] in MODEL_OPERATIONS:
            side = usage["external" if external else "own"]
            side[0] += facts["tokens_in"] or 0
            side[1] += facts["tokens_out"] or 0
        if row.get("status") == SpanStatus.ERROR:
            trace.error_count += 1
            trace.external_errors += 1 if external else 0
            trace.status = SpanStatus.ERROR
        elif row.get("status") == SpanStatus.OK and trace.status == SpanStatus.UNSET:
            trace.status = SpanStatus.OK
        if not external:  # Tanglaw's own facts, never a sender's claim about them
            if trace.agent_id is None and count(a.get("tanglaw.agent.id")):
                trace.agent_id = count(a.get("tanglaw.agent.id"))
            if trace.conversation_id is None and count(a.get("tanglaw.conversation.id")):
                trace.conversation_id = count(a.get("tanglaw.conversation.id"))
            if not trace.request_id and a.get("tanglaw.request.id"):
                trace.request_id = str(a["tanglaw.request.id"])[:64]
        trace.span_count += 1
    # one model call seen from both sides (a MAF agent through the gateway) counts once:
    # the caller's spans when it sent any, Tanglaw's otherwise
    trace.usage = usage
    counted = usage["external"] if any(usage["external"]) else usage["own"]
    trace.tokens_in, trace.tokens_out = counted
    trace.duration_ms = (trace.ended_at - trace.started_at).total_seconds() * 1000


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
# small batches with a rest between them: on SQLite each batch holds the one write lock
# for its transaction, and a chat turn's save waits behind it (docs/benchmarks.md)
writer = Batcher("traces", lambda batch: _write(batch), flush_interval, max_batch=500,
                 max_pending=100_000, pause_s=0.02)
