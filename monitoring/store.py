"""Writing samples, rolling them up, pruning tiers and reading series for charts.

Tiers: raw samples (kept `TANGLAW_RAW_RETENTION_H`, default 48 h), 1-minute
buckets (default 30 days) and 1-hour buckets (default 2 years). A bucket holds
count, sum, min, max and counts per fixed histogram edge, so means and
percentiles can be read from any tier. Rollups recompute the last few buckets
each round (idempotent upserts), so a sample that arrives late still lands.
Charts read the finest tier that fits the window in at most ~1,500 points, and the finer
tiers after its newest bucket (see `series`).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, Sum
from django.utils import timezone

from monitoring.collectors import Reading
from monitoring.models import Rollup, Sample, State

MINUTE, HOUR = 60, 3600
# histogram edges (upper bounds), shared by all metrics: log-spaced 1-2-5 steps
EDGES = [0.0] + [m * 10 ** e for e in range(-2, 10) for m in (1, 2, 5)]
# counters: a bucket's value is the sum (requests per minute), not the mean
SUMMED = {"requests", "errors", "tokens_in", "tokens_out", "tool_calls", "tool_errors"}
# derived from two summed series
RATIOS = {"error_rate": ("errors", "requests")}
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 1500


def record(readings: Iterable[Reading], ts: datetime | None = None) -> int:
    ts = ts or timezone.now()
    rows = [Sample(ts=ts, metric=r.metric, scope=r.scope, value=float(r.value))
            for r in readings if r.value is not None and math.isfinite(r.value)]
    Sample.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def _floor(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=ts.tzinfo or UTC)


def _hist_index(value: float) -> int:
    return min(bisect.bisect_left(EDGES, value), len(EDGES) - 1)


def _empty() -> dict[str, Any]:
    return {"count": 0, "sum": 0.0, "min": math.inf, "max": -math.inf,
            "hist": [0] * len(EDGES)}


def _upsert(tier: int, buckets: dict[tuple, dict[str, Any]]) -> int:
    rows = [Rollup(tier=tier, bucket=bucket, metric=metric, scope=scope, count=b["count"],
                   sum=b["sum"], min=b["min"], max=b["max"], hist=_trim(b["hist"]))
            for (metric, scope, bucket), b in buckets.items()]
    Rollup.objects.bulk_create(rows, batch_size=500, update_conflicts=True,
                               unique_fields=["tier", "metric", "scope", "bucket"],
                               update_fields=["count", "sum", "min", "max", "hist"])
    return len(rows)


def _trim(hist: list[int]) -> list[int]:
    while hist and hist[-1] == 0:
        hist = hist[:-1]
    return hist


def _cursor(key: str, default: datetime) -> datetime:
    state = State.objects.filter(key=key).first()
    return datetime.fromisoformat(state.value) if state else default


def _set_cursor(key: str, value: datetime) -> None:
    State.objects.update_or_create(key=key, defaults={"value": value.isoformat()})


def rollup(now: datetime | None = None, *, redo_minutes: int = 5) -> dict[str, int]:
    """Roll raw samples into minutes, and minutes into hours, up to the last whole bucket."""
    now = now or timezone.now()
    minute_end = _floor(now, MINUTE)
    oldest = Sample.objects.aggregate(t=Min("ts"))["t"]
    start = _cursor("rollup_60", oldest or minute_end) - timedelta(minutes=redo_minutes)
    if oldest:
        start = max(start, _floor(oldest, MINUTE))
    buckets: dict[tuple, dict[str, Any]] = defaultdict(_empty)
    for metric, scope, ts, value in Sample.objects.filter(
            ts__gte=start, ts__lt=minute_end).values_list("metric", "scope", "ts", "value"):
        b = buckets[(metric, scope, _floor(ts, MINUTE))]
        b["count"] += 1
        b["sum"] += value
        b["min"], b["max"] = min(b["min"], value), max(b["max"], value)
        b["hist"][_hist_index(value)] += 1
    minutes = _upsert(MINUTE, buckets)
    _set_cursor("rollup_60", minute_end)

    hour_end = _floor(now, HOUR)
    first_minute = Rollup.objects.filter(tier=MINUTE).aggregate(t=Min("bucket"))["t"]
    hour_start = _cursor("rollup_3600", _floor(first_minute or hour_end, HOUR)) - timedelta(
        hours=1)
    hours: dict[tuple, dict[str, Any]] = defaultdict(_empty)
    for r in Rollup.objects.filter(tier=MINUTE, bucket__gte=hour_start, bucket__lt=hour_end):
        b = hours[(r.metric, r.scope, _floor(r.bucket, HOUR))]
        b["count"] += r.count
        b["sum"] += r.sum
        b["min"], b["max"] = min(b["min"], r.min), max(b["max"], r.max)
        for i, n in enumerate(r.hist):
            b["hist"][i] += n
    hourly = _upsert(HOUR, hours)
    _set_cursor("rollup_3600", hour_end)
    return {"minute_buckets": minutes, "hour_buckets": hourly}


def retention() -> dict[str, timedelta]:
    return {"raw": timedelta(hours=settings.TANGLAW_RAW_RETENTION_H),
            "minute": timedelta(days=settings.TANGLAW_MINUTE_RETENTION_D),
            "hour": timedelta(days=settings.TANGLAW_HOUR_RETENTION_D)}


def prune(now: datetime | None = None) -> dict[str, int]:
    now, keep = now or timezone.now(), retention()
    raw = Sample.objects.filter(ts__lt=now - keep["raw"]).delete()[0]
    minute = Rollup.objects.filter(tier=MINUTE, bucket__lt=now - keep["minute"]).delete()[0]
    hour = Rollup.objects.filter(tier=HOUR, bucket__lt=now - keep["hour"]).delete()[0]
    return {"raw": raw, "minute": minute, "hour": hour}


def percentile(hist: list[int], q: float, low: float, high: float) -> float | None:
    """Estimate the q-quantile (0–1) from histogram counts, clamped to [low, high]."""
    total = sum(hist)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            lower = EDGES[i - 1] if i else low
            upper = EDGES[i]
            lower, upper = max(lower, low), min(upper, high)
            fraction = (rank - seen) / n
            return lower + (upper - lower) * fraction if upper >= lower else upper
        seen += n
    return high


def tier_for(window_s: int) -> int:
    """0 (raw), 60 or 3600: the finest tier that draws the window in ≤ MAX_POINTS points."""
    if window_s <= 2 * HOUR:
        return 0
    if window_s <= MAX_POINTS * MINUTE:
        return MINUTE
    return HOUR


def series(metric: str, scope: str, window_s: int, now: datetime | None = None
           ) -> dict[str, Any]:
    """Points [[unix_ts, value or None]] of [now - window, now] for a chart, and those bounds
    (`start`, `end`), so the x axis spans the window however few points there are.

    The tier for the window is read first, then the finer tiers after its newest bucket:
    an hour has a bucket only once it is over and a minute once it is rolled up, so without
    them a 7-day chart would be empty for the first hour of data. Counters read per minute
    in every tier; a None point marks an idle gap, where the line breaks. One query per
    tier read (a ratio reads two series), whatever the data size."""
    now = now or timezone.now()
    since = now - timedelta(seconds=window_s)
    tier = tier_for(window_s)
    bounds = {"start": int(since.timestamp()), "end": int(now.timestamp())}
    if metric in RATIOS:
        num, den = (_rows(m, scope, since, tier) for m in RATIOS[metric])
        least = _least(window_s, max(len(num), len(den)))
        shares = {t: total for t, _w, _n, total in _fit(num, least)}
        valued = [(t, width, round(shares.get(t, 0.0) / total, 4))
                  for t, width, _n, total in _fit(den, least) if total]
    else:
        rows = _rows(metric, scope, since, tier)
        fitted = _fit(rows, _least(window_s, len(rows)))
        if metric in SUMMED:
            valued = [(t, width, round(total * MINUTE / width, 3))
                      for t, width, _n, total in fitted]
        else:
            valued = [(t, width, round(total / n, 3)) for t, width, n, total in fitted if n]
    # only the first bucket can start before the window; it is drawn at the window's edge
    points = [(max(t, bounds["start"]), width, value) for t, width, value in valued]
    per_minute = metric in SUMMED or metric in RATIOS
    return {"metric": metric, "tier": tier or (MINUTE if per_minute else 0), **bounds,
            "points": _with_gaps(points)}


# (start, width in seconds, count, sum); width 0 is a single raw sample
Row = tuple[int, int, int, float]


def _rows(metric: str, scope: str, since: datetime, tier: int) -> list[Row]:
    """`tier`'s buckets from `since`, then each finer tier's after the newest one so far.
    Raw samples stay single points only on a raw chart of a gauge; elsewhere they are
    summed per minute like the minute rollups they stand in for."""
    rows: list[Row] = []
    after = since
    for t in (HOUR, MINUTE, 0):
        if t > tier:
            continue
        if t:
            found = [(int(b.timestamp()), t, n, total) for b, n, total in Rollup.objects.filter(
                tier=t, metric=metric, scope=scope, bucket__gte=after).order_by(
                "bucket").values_list("bucket", "count", "sum")]
        else:
            samples = Sample.objects.filter(metric=metric, scope=scope, ts__gte=after
                                            ).order_by("ts").values_list("ts", "value")
            if tier == 0 and metric not in SUMMED:
                found = [(int(ts.timestamp()), 0, 1, v) for ts, v in samples]
            else:
                minutes: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
                for ts, v in samples:
                    bucket = minutes[int(ts.timestamp()) // MINUTE * MINUTE]
                    bucket[0] += 1
                    bucket[1] += v
                found = [(m, MINUTE, int(n), total) for m, (n, total) in minutes.items()]
        if found:
            rows += found
            last, width = found[-1][0], found[-1][1]
            after = datetime.fromtimestamp(last + width, tz=UTC)
    return rows


def _least(window_s: int, count: int) -> int:
    """The narrowest bucket that keeps `count` rows within MAX_POINTS (0: they fit)."""
    return 0 if count <= MAX_POINTS else math.ceil(window_s / MAX_POINTS)


def _fit(rows: list[Row], least: int) -> list[Row]:
    """Merge rows narrower than `least` seconds into buckets of a whole number of their own
    width (so minutes never straddle a bucket), summing counts and sums: a mean or a sum
    per minute stays exact, where dropping every n-th row would lose data."""
    if not least:
        return rows
    out: list[Row] = []
    for t, width, n, total in rows:
        if width >= least:
            out.append((t, width, n, total))
            continue
        span = math.ceil(least / width) * width if width else least
        start = t - t % span
        if out and out[-1][0] == start and out[-1][1] == span:
            out[-1] = (start, span, out[-1][2] + n, out[-1][3] + total)
        else:
            out.append((start, span, n, total))
    return out


def _with_gaps(points: list[tuple[int, int, float]]) -> list[list[Any]]:
    """[t, value] pairs, with [t, None] where nothing came for longer than twice the step.

    A bucket covers its width; a raw sample covers the usual interval between samples
    (their median), so one or two late ticks are not a gap, a stopped monitor or an idle
    backend is. The None sits inside the idle stretch, so the chart breaks the line there
    rather than drawing it across."""
    intervals = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False)
                 if not a[1] and not b[1]]
    usual = max(round(statistics.median(intervals)), 1) if intervals else MINUTE
    out: list[list[Any]] = []
    for i, (t, width, value) in enumerate(points):
        out.append([t, value])
        if i + 1 == len(points):
            break
        following = points[i + 1]
        end = t + (width or usual)
        step = min(width or usual, following[1] or usual)
        if following[0] - end > 2 * step:
            out.append([end + (following[0] - end) // 2, None])
    return out


def window_stats(metric: str, scope: str, window_s: int, now: datetime | None = None
                 ) -> dict[str, Any]:
    """avg/min/max/p50/p95/p99/count of a metric over a window, from the right tier."""
    now = now or timezone.now()
    since = now - timedelta(seconds=window_s)
    if window_s <= 2 * HOUR:
        values = sorted(Sample.objects.filter(metric=metric, scope=scope, ts__gte=since)
                        .values_list("value", flat=True))
        if not values:
            return {"count": 0, "avg": None, "min": None, "max": None, "p50": None,
                    "p95": None, "p99": None, "sum": 0.0}

        def q(p: float) -> float:
            return values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))]

        return {"count": len(values), "sum": sum(values), "avg": sum(values) / len(values),
                "min": values[0], "max": values[-1], "p50": q(0.5), "p95": q(0.95),
                "p99": q(0.99)}
    tier = MINUTE if window_s <= 2 * 86400 else HOUR
    rows = list(Rollup.objects.filter(tier=tier, metric=metric, scope=scope,
                                      bucket__gte=since).values_list(
        "count", "sum", "min", "max", "hist"))
    count = sum(r[0] for r in rows)
    if not count:
        return {"count": 0, "avg": None, "min": None, "max": None, "p50": None,
                "p95": None, "p99": None, "sum": 0.0}
    low, high = min(r[2] for r in rows), max(r[3] for r in rows)
    hist = [0] * len(EDGES)
    for r in rows:
        for i, n in enumerate(r[4]):
            hist[i] += n
    total = sum(r[1] for r in rows)
    return {"count": count, "sum": total, "avg": total / count, "min": low, "max": high,
            "p50": percentile(hist, 0.5, low, high), "p95": percentile(hist, 0.95, low, high),
            "p99": percentile(hist, 0.99, low, high)}


def latest(metric: str, scope: str) -> float | None:
    row = Sample.objects.filter(metric=metric, scope=scope).order_by("-ts").values_list(
        "value", flat=True).first()
    return row


def latest_many(scopes_metrics: list[tuple[str, str]], since: datetime) -> dict[tuple, float]:
    """The newest value of several series in one query (overview tiles)."""
    rows = Sample.objects.filter(ts__gte=since).filter(
        metric__in={m for m, _ in scopes_metrics}, scope__in={s for _, s in scopes_metrics})
    newest = rows.values("metric", "scope").annotate(t=Max("ts"))
    stamps = {(r["metric"], r["scope"]): r["t"] for r in newest}
    out: dict[tuple, float] = {}
    if not stamps:
        return out
    for metric, scope, ts, value in rows.filter(ts__in=set(stamps.values())).values_list(
            "metric", "scope", "ts", "value"):
        if stamps.get((metric, scope)) == ts:
            out[(metric, scope)] = value
    return out


def total(metric: str, scope: str, since: datetime) -> float:
    return Sample.objects.filter(metric=metric, scope=scope, ts__gte=since).aggregate(
        s=Sum("value"))["s"] or 0.0
