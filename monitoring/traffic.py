"""Traffic metrics from the agents' runs: each finished run becomes samples per backend,
per model (``model:<backend id>:<model>``) and per agent (requests, errors, TTFT,
latency, tokens/s, tokens in and out).

A cursor (the last run id read) makes this incremental and safe to repeat; the
samples carry the time the run finished, so charts place them where they happened.
"""

from __future__ import annotations

from datetime import timedelta

from agents.choices import RunOutcome
from agents.models import Run
from monitoring.models import Sample, State

CURSOR = "runs_cursor"
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
        model = (f"model:{run['backend_id']}:{run['model']}"[:64]
                 if run["backend_id"] and run["model"] else None)
        for scope in (f"backend:{run['backend_id']}" if run["backend_id"] else None,
                      f"agent:{run['agent_id']}" if run["agent_id"] else None, model):
            if scope is None:
                continue
            rows += [Sample(ts=ended, metric=m, scope=scope, value=v)
                     for m, v in values.items() if v is not None]
    Sample.objects.bulk_create(rows, batch_size=1000)
    if runs:
        State.objects.update_or_create(key=CURSOR, defaults={"value": runs[-1]["pk"]})
    return len(runs)
