"""Percentiles and the 'median of round medians' the benchmarks report."""

from __future__ import annotations

import statistics


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90),
            "p99": pct(values, 99), "max": max(values) if values else None}


def median_of(rounds: list[dict[str, float | None]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def rounds_summary(rounds: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each statistic's median over the rounds (rounds interleave the paths)."""
    keys = ("p50", "p90", "p99", "max")
    out: dict[str, float | None] = {k: median_of(rounds, k) for k in keys}
    out["n"] = sum(int(r.get("n") or 0) for r in rounds)
    return out
