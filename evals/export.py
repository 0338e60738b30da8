"""An experiment as data: the API's body, the JSON download and the CSV download (one row
per case and target), and how two experiments' targets pair up for a run-vs-run diff."""

from __future__ import annotations

import csv
import io
from typing import Any

from console.csvcells import safe_row
from evals import stats
from evals.models import CaseResult, Experiment, ExperimentTarget


def target_dict(target: ExperimentTarget) -> dict[str, Any]:
    return {"position": target.position, "label": target.label, "kind": target.kind,
            "agent_id": target.agent_id, "agent_version": target.agent_version,
            "backend_id": target.backend_id, "model": target.model, "params": target.params,
            "environment": target.environment}


def result_dict(result: CaseResult, positions: dict[int, int]) -> dict[str, Any]:
    return {"target": positions[result.target_id], "case_id": result.case_id,
            "position": result.position, "passed": result.passed, "text": result.text,
            "tool_calls": result.tool_calls, "checks": result.checks, "judge": result.judge,
            "error": result.error, "ttft_ms": result.ttft_ms, "total_ms": result.total_ms,
            "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
            "tokens_per_s": result.tokens_per_s, "model": result.model,
            "conversation_id": result.conversation_id, "trace_id": result.trace_id}


def experiment_dict(experiment: Experiment, *, results: bool = True) -> dict[str, Any]:
    targets = list(experiment.targets.all())
    positions = {t.pk: t.position for t in targets}
    body: dict[str, Any] = {
        "id": experiment.pk, "name": str(experiment), "dataset_id": experiment.dataset_id,
        "dataset": experiment.dataset.name, "version": experiment.version.number,
        "state": experiment.state, "detail": experiment.detail, "error": experiment.error,
        "done": experiment.done, "total": experiment.total,
        "percent": round(experiment.percent, 1), "concurrency": experiment.concurrency,
        "seed": experiment.seed, "cancel_requested": experiment.cancel_requested,
        "created_by": experiment.created_by.get_username() if experiment.created_by else "",
        "created_at": experiment.created_at, "started_at": experiment.started_at,
        "finished_at": experiment.finished_at,
        "targets": [target_dict(t) for t in targets]}
    if results:
        rows = list(experiment.results.all())
        body["summary"] = [s.as_dict() for s in stats.experiment_stats(targets, rows)]
        body["results"] = [result_dict(r, positions) for r in rows]
    return body


CSV_COLUMNS = ["case_id", "target", "passed", "failed_checks", "error", "ttft_ms",
               "total_ms", "tokens_in", "tokens_out", "tokens_per_s", "judge_score",
               "model", "reply"]


def csv_text(experiment: Experiment) -> str:
    labels = {t.pk: t.label for t in experiment.targets.all()}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in experiment.results.all():
        failed = " ".join(c["kind"] for c in r.checks if not c.get("passed"))
        writer.writerow(safe_row([
            r.case_id, labels[r.target_id], "yes" if r.passed else "no", failed, r.error,
            r.ttft_ms, r.total_ms, r.tokens_in, r.tokens_out, r.tokens_per_s,
            (r.judge or {}).get("score"), r.model, r.text]))
    return out.getvalue()


def identity(target: ExperimentTarget) -> tuple:
    return (target.agent_id, tuple(sorted(target.params.items())))


def pairs(before: Experiment, after: Experiment) -> list[tuple[ExperimentTarget,
                                                                 ExperimentTarget]]:
    """The targets two experiments share: the same agent with the same parameters, else
    the same label; a single target each pairs up whatever it is."""
    old, new = list(before.targets.all()), list(after.targets.all())
    if len(old) == 1 and len(new) == 1:
        return [(old[0], new[0])]
    found = []
    for target in new:
        match = next((t for t in old if identity(t) == identity(target)), None) or next(
            (t for t in old if t.label == target.label), None)
        if match is not None:
            found.append((match, target))
    return found


def regressions(before: Experiment, after: Experiment) -> list[stats.RunDiff]:
    return [stats.diff(a, b) for a, b in pairs(before, after)]
