"""Usage of the gateway over a window, from its Request rows: per key, user, agent,
backend or model — requests, errors, tokens in and out, TTFT p50/p95 — and the same
over time for the charts.

Three queries whatever the window: the counts grouped by group and time bucket, the
TTFT values (percentiles are exact: linear interpolation between the closest ranks),
and the names of what the groups are. The TTFT read grows with the requests in the
window; charts of long windows at high volume belong in monitoring's rollups.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from agents.models import Agent
from console.csvcells import safe_row
from console.models import ApiToken, Backend, User
from gateway import quota

WINDOWS = {"24h": (timedelta(hours=24), "hour"), "7d": (timedelta(days=7), "hour"),
           "30d": (timedelta(days=30), "day")}
GROUPS = {"key": "token_id", "user": "user_id", "agent": "agent_id",
          "backend": "backend_id", "model": "model"}
GROUP_LABELS = {"key": "Key", "user": "User", "agent": "Agent", "backend": "Backend",
                "model": "Model"}
# what a request without that part was: refused before its key was known, or not an agent
NONE_LABELS = {"key": "no valid key", "user": "no valid key",
               "agent": "pass-through (no agent)", "backend": "not routed to a backend",
               "model": "no model"}
CHART_GROUPS = 5  # the busiest groups get a line each; the rest are summed as "others"
METRICS = ("requests", "errors", "limited", "tokens_in", "tokens_out")


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0–1) of sorted `values`, interpolated between the closest ranks."""
    if not values:
        return None
    pos = (len(values) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    value = values[low] + (values[high] - values[low]) * (pos - low)
    return round(value, 1)


def _axis(start: datetime, now: datetime, step: str) -> list[int]:
    """Every bucket's start (unix seconds) from the one `start` falls in to the one `now`
    falls in: hours or days of the budget time zone, as the database truncates them."""
    zone = quota.zone()
    local = start.astimezone(zone)
    if step == "hour":
        first = int(local.replace(minute=0, second=0, microsecond=0).timestamp())
        return list(range(first, int(now.timestamp()) + 1, 3600))
    out, day = [], local.date()
    while day <= now.astimezone(zone).date():
        out.append(int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()))
        day += timedelta(days=1)
    return out


@dataclass
class Group:
    key: Any
    label: str
    detail: str = ""
    requests: int = 0
    errors: int = 0
    limited: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return round(self.errors / self.requests, 4) if self.requests else None

    def as_dict(self) -> dict[str, Any]:
        return {"key": None if self.key is None else str(self.key), "label": self.label,
                "detail": self.detail, "requests": self.requests, "errors": self.errors,
                "limited": self.limited, "error_rate": self.error_rate,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "ttft_p50_ms": self.ttft_p50_ms, "ttft_p95_ms": self.ttft_p95_ms}


def _labels(group: str, keys: set) -> dict[Any, tuple[str, str]]:
    ids = [k for k in keys if k is not None]
    if not ids or group == "model":
        return {k: (str(k), "") for k in ids}
    if group == "key":
        return {pk: (f"{name} ({hint}…)", owner) for pk, name, hint, owner in
                ApiToken.objects.filter(pk__in=ids).values_list("pk", "name", "hint",
                                                                "user__username")}
    rows: QuerySet = {"user": User.objects, "agent": Agent.objects,
                      "backend": Backend.objects}[group].all()
    field = "username" if group == "user" else "name"
    names = dict(rows.filter(pk__in=ids).values_list("pk", field))
    return {pk: (names.get(pk) or f"{group} {pk} (deleted)", "") for pk in ids}


def report(rows: QuerySet, window: str, group: str, now: datetime | None = None) -> dict:
    """The usage of `rows` (Request rows the viewer may see) over the last `window`,
    grouped by `group`: totals, one entry per group (busiest first) and the series."""
    now = now or timezone.now()
    span, step = WINDOWS[window]
    start = now - span
    field = GROUPS[group]
    bucket = (TruncHour if step == "hour" else TruncDay)("ts", tzinfo=quota.zone())
    within = rows.filter(ts__gte=start, ts__lte=now).order_by()
    counted = within.values(field, b=bucket).annotate(
        requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)),
        limited=Count("pk", filter=Q(status=429)), tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"))
    axis = _axis(start, now, step)
    index = {ts: i for i, ts in enumerate(axis)}
    groups: dict[Any, Group] = {}
    per_bucket: dict[Any, list[int]] = defaultdict(lambda: [0] * len(axis))
    totals = {m: [0] * len(axis) for m in METRICS}
    for row in counted:
        key, i = row[field], index.get(int(row["b"].timestamp()))
        g = groups.setdefault(key, Group(key, ""))
        for m in METRICS:
            value = row[m] or 0
            setattr(g, m, getattr(g, m) + value)
            if i is not None:
                totals[m][i] += value
        if i is not None:
            per_bucket[key][i] += row["requests"]
    ttfts: dict[Any, list[float]] = defaultdict(list)
    bucket_ttfts: list[list[float]] = [[] for _ in axis]
    for key, b, value in within.filter(ttft_ms__isnull=False).values_list(field, bucket,
                                                                         "ttft_ms"):
        ttfts[key].append(value)
        i = index.get(int(b.timestamp()))
        if i is not None:
            bucket_ttfts[i].append(value)
    labels = _labels(group, set(groups))
    for key, g in groups.items():
        g.label, g.detail = labels.get(key, (NONE_LABELS[group], "")) if key is not None \
            else (NONE_LABELS[group], "")
        values = sorted(ttfts.get(key, ()))
        g.ttft_p50_ms, g.ttft_p95_ms = percentile(values, 0.5), percentile(values, 0.95)
    ordered = sorted(groups.values(), key=lambda g: (-g.requests, g.label))
    everything = sorted(v for vs in ttfts.values() for v in vs)
    total = Group(None, "all", requests=sum(g.requests for g in ordered),
                  errors=sum(g.errors for g in ordered),
                  limited=sum(g.limited for g in ordered),
                  tokens_in=sum(g.tokens_in for g in ordered),
                  tokens_out=sum(g.tokens_out for g in ordered),
                  ttft_p50_ms=percentile(everything, 0.5),
                  ttft_p95_ms=percentile(everything, 0.95))
    lines = [{"label": g.label, "requests": per_bucket[g.key]} for g in ordered[:CHART_GROUPS]]
    if len(ordered) > CHART_GROUPS:
        rest = [per_bucket[g.key] for g in ordered[CHART_GROUPS:]]
        lines.append({"label": f"{len(rest)} others",
                      "requests": [sum(c) for c in zip(*rest, strict=True)]})
    return {"window": window, "group": group, "start": start, "end": now,
            "totals": total.as_dict(), "groups": [g.as_dict() for g in ordered],
            "series": {"step": step, "ts": axis, **totals,
                       "ttft_p95_ms": [percentile(sorted(v), 0.95) for v in bucket_ttfts],
                       "by_group": lines}}


CSV_COLUMNS = ["window_start", "window_end", "group", "key", "label", "detail", "requests",
               "errors", "rate_limited", "tokens_in", "tokens_out", "ttft_p50_ms",
               "ttft_p95_ms"]


def as_csv(data: dict) -> str:
    """The report's groups as CSV, one row per group; text cells a spreadsheet would run
    as a formula are made inert (console.csvcells)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    start, end = data["start"].isoformat(), data["end"].isoformat()
    for g in data["groups"]:
        writer.writerow(safe_row([start, end, data["group"], g["key"] or "", g["label"],
                                  g["detail"], g["requests"], g["errors"], g["limited"],
                                  g["tokens_in"], g["tokens_out"],
                                  "" if g["ttft_p50_ms"] is None else g["ttft_p50_ms"],
                                  "" if g["ttft_p95_ms"] is None else g["ttft_p95_ms"]]))
    return out.getvalue()
