"""Traces kept by age (TANGLAW_TRACE_RETENTION_DAYS, 14 by default) and by count (the
oldest go once all traces together pass TANGLAW_TRACE_MAX_SPANS spans): the monitor
prunes every round, in chunks, so one round never holds the database for long."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from traces.models import ExternalAgent, Span, Trace

CHUNK = 2000  # traces per delete


def _delete(trace_ids: list[str]) -> int:
    # the traces first: a span the writer adds meanwhile makes its trace again (the
    # writer's order), rather than being left without one
    with transaction.atomic():
        Trace.objects.filter(trace_id__in=trace_ids).delete()
        return Span.objects.filter(trace_id__in=trace_ids).delete()[0]


def prune(now: datetime | None = None, *, max_chunks: int = 50) -> dict[str, int]:
    now = now or timezone.now()
    cutoff = now - timedelta(days=float(settings.TANGLAW_TRACE_RETENTION_DAYS))
    traces = spans = 0
    for _ in range(max_chunks):
        old = list(Trace.objects.filter(started_at__lt=cutoff).order_by("started_at")
                   .values_list("trace_id", flat=True)[:CHUNK])
        if not old:
            break
        spans += _delete(old)
        traces += len(old)
    limit = int(settings.TANGLAW_TRACE_MAX_SPANS)
    total = Trace.objects.aggregate(n=Sum("span_count"))["n"] or 0
    for _ in range(max_chunks):
        if total <= limit:
            break
        excess, chosen = total - limit, []
        for trace_id, count in Trace.objects.order_by("started_at", "id").values_list(
                "trace_id", "span_count")[:CHUNK]:
            chosen.append(trace_id)
            excess -= count
            if excess <= 0:
                break
        if not chosen:
            break
        removed = _delete(chosen)
        spans, traces, total = spans + removed, traces + len(chosen), total - removed
    # an external agent not heard from for the whole retention is forgotten
    agents = ExternalAgent.objects.filter(last_seen__lt=cutoff).delete()[0]
    return {"traces": traces, "spans": spans, "external_agents": agents}
