"""An experiment's numbers: per target, the pass rate with a 95 % Wilson interval,
latency percentiles, tokens per second; and what changed between two runs of a target."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from evals.models import CaseResult, ExperimentTarget

Z95 = 1.959963984540054


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % Wilson score interval of a pass rate (sound for small n and for 0 or n
    passes, unlike p ± z·√(p(1−p)/n))."""
    if n == 0:
        return 0.0, 0.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exact at the ends (no rounding error off 0 and 1)
    return (0.0 if passed == 0 else max(0.0, centre - half),
            1.0 if passed == n else min(1.0, centre + half))


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


@dataclass
class TargetStats:
    target: ExperimentTarget
    runs: int = 0
    passed: int = 0
    errors: int = 0
    ci: tuple[float, float] = (0.0, 0.0)
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    total_p50: float | None = None
    total_p95: float | None = None
    tokens_per_s: float | None = None  # the median
    tokens_out: float | None = None  # the mean
    judge_mean: float | None = None
    judge_errors: int = 0
    first_error: str = ""
    failed_checks: dict[str, int] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.runs if self.runs else None

    @property
    def all_failed(self) -> bool:
        return self.runs > 0 and self.errors == self.runs

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {"target": self.target.position, "label": self.target.label,
                "runs": self.runs, "passed": self.passed, "errors": self.errors,
                "pass_rate": None if self.pass_rate is None else round(self.pass_rate, 4),
                "pass_rate_ci95": [round(self.ci[0], 4), round(self.ci[1], 4)],
                "ttft_ms_p50": r(self.ttft_p50), "ttft_ms_p95": r(self.ttft_p95),
                "total_ms_p50": r(self.total_p50), "total_ms_p95": r(self.total_p95),
                "tokens_per_s_p50": r(self.tokens_per_s), "tokens_out_mean": r(self.tokens_out),
                "judge_mean": None if self.judge_mean is None else round(self.judge_mean, 2),
                "judge_errors": self.judge_errors, "all_failed": self.all_failed,
                "first_error": self.first_error, "failed_checks": self.failed_checks}


def summarise(target: ExperimentTarget, results: list[CaseResult]) -> TargetStats:
    stats = TargetStats(target, runs=len(results))
    stats.passed = sum(r.passed for r in results)
    stats.errors = sum(bool(r.error) for r in results)
    stats.ci = wilson(stats.passed, stats.runs)
    ttft = [r.ttft_ms for r in results if r.ttft_ms is not None and not r.error]
    total = [r.total_ms for r in results if r.total_ms is not None and not r.error]
    speed = [r.tokens_per_s for r in results if r.tokens_per_s]
    out = [r.tokens_out for r in results if r.tokens_out is not None and not r.error]
    stats.ttft_p50, stats.ttft_p95 = percentile(ttft, 0.5), percentile(ttft, 0.95)
    stats.total_p50, stats.total_p95 = percentile(total, 0.5), percentile(total, 0.95)
    stats.tokens_per_s = percentile(speed, 0.5)
    stats.tokens_out = sum(out) / len(out) if out else None
    scores = [r.judge["score"] for r in results if r.judge and r.judge.get("score") is not None]
    stats.judge_mean = sum(scores) / len(scores) if scores else None
    stats.judge_errors = sum(1 for r in results if r.judge and r.judge.get("error"))
    stats.first_error = next((r.error for r in results if r.error), "")[:300]
    for r in results:
        for check in r.checks:
            if not check.get("passed"):
                stats.failed_checks[check["kind"]] = stats.failed_checks.get(check["kind"], 0) + 1
    return stats


def experiment_stats(targets: list[ExperimentTarget],
                     results: list[CaseResult]) -> list[TargetStats]:
    """Each target's numbers, from the experiment's targets and results as loaded once
    by the caller (a page and the API show the results too)."""
    by_target: dict[int, list[CaseResult]] = {}
    for result in results:
        by_target.setdefault(result.target_id, []).append(result)
    return [summarise(t, by_target.get(t.pk, [])) for t in targets]


@dataclass
class Change:
    case_id: str
    before: CaseResult
    after: CaseResult

    @property
    def slower_ms(self) -> float | None:
        if self.before.total_ms is None or self.after.total_ms is None:
            return None
        return self.after.total_ms - self.before.total_ms


@dataclass
class RunDiff:
    """Two runs of a target on the same cases: what regressed, what was fixed."""

    before: ExperimentTarget
    after: ExperimentTarget
    regressed: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    still_failing: int = 0
    still_passing: int = 0
    only_before: int = 0
    only_after: int = 0
    median_ms_before: float | None = None
    median_ms_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        def change(c: Change) -> dict[str, Any]:
            return {"case_id": c.case_id,
                    "before": [k["kind"] for k in c.before.checks if not k["passed"]],
                    "after": [k["kind"] for k in c.after.checks if not k["passed"]],
                    "after_error": c.after.error}
        return {"before": {"experiment": self.before.experiment_id, "target": self.before.label},
                "after": {"experiment": self.after.experiment_id, "target": self.after.label},
                "regressed": [change(c) for c in self.regressed],
                "fixed": [change(c) for c in self.fixed],
                "still_failing": self.still_failing, "still_passing": self.still_passing,
                "only_before": self.only_before, "only_after": self.only_after,
                "median_ms_before": self.median_ms_before,
                "median_ms_after": self.median_ms_after}


def diff(before: ExperimentTarget, after: ExperimentTarget) -> RunDiff:
    a = {r.case_id: r for r in before.results.all()}
    b = {r.case_id: r for r in after.results.all()}
    out = RunDiff(before, after, only_before=len(a.keys() - b.keys()),
                  only_after=len(b.keys() - a.keys()))
    for case_id in sorted(a.keys() & b.keys(), key=lambda c: b[c].position):
        old, new = a[case_id], b[case_id]
        if old.passed and not new.passed:
            out.regressed.append(Change(case_id, old, new))
        elif new.passed and not old.passed:
            out.fixed.append(Change(case_id, old, new))
        elif new.passed:
            out.still_passing += 1
        else:
            out.still_failing += 1
    shared = a.keys() & b.keys()
    out.median_ms_before = percentile([t for c in shared
                                       if (t := a[c].total_ms) is not None], 0.5)
    out.median_ms_after = percentile([t for c in shared
                                      if (t := b[c].total_ms) is not None], 0.5)
    return out


def verdict(base: TargetStats, other: TargetStats) -> str:
    """`other` against `base` in one sentence: as good or not (the 95 % intervals), and
    how much faster or slower (the median time of a whole reply)."""
    if other.runs == 0 or base.runs == 0:
        return ""
    if other.all_failed:
        return f"{other.target.label} failed every call: {other.first_error}"
    a, b = base.pass_rate or 0.0, other.pass_rate or 0.0
    if other.ci[0] > base.ci[1]:
        quality = f"passes more often than {base.target.label} ({b:.0%} against {a:.0%})"
    elif other.ci[1] < base.ci[0]:
        quality = f"passes less often than {base.target.label} ({b:.0%} against {a:.0%})"
    else:
        quality = (f"is as good as {base.target.label} within the 95 % intervals "
                   f"({b:.0%} against {a:.0%}; {base.runs} cases)")
    speed = ""
    if base.total_p50 and other.total_p50:
        ratio = base.total_p50 / other.total_p50
        if ratio >= 1.05:
            speed = f", and {ratio:.1f}× faster"
        elif ratio <= 0.95:
            speed = f", and {1 / ratio:.1f}× slower"
        else:
            speed = ", at about the same speed"
        speed += f" (median {other.total_p50:.0f} ms against {base.total_p50:.0f} ms)"
    return f"{other.target.label} {quality}{speed}."
