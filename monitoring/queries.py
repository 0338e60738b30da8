"""What the dashboards, the API and /metrics read: fleet health, uptime, reports.

Each function runs a fixed number of queries whatever the data size.
"""

from __future__ import annotations

import csv
import io
import socket
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from agents.models import Agent
from console.choices import Status
from console.csvcells import safe_cell
from console.models import Backend, BackendStatusChange
from monitoring import store
from monitoring.choices import AlertState, RecState
from monitoring.models import Alert, Heartbeat, Host, Recommendation, Sample, State
from traces.models import ExternalAgent

HOST_METRICS = ("cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes",
                "swap_percent", "disk_percent", "disk_free_bytes", "load_1m",
                "net_sent_bytes_per_s", "net_recv_bytes_per_s")
GPU_METRICS = ("gpu_utilization_percent", "gpu_memory_used_bytes", "gpu_memory_total_bytes",
               "gpu_memory_percent", "gpu_temperature_c", "gpu_power_w", "gpu_power_limit_w")


def monitor_status() -> dict[str, Any]:
    beat = Heartbeat.objects.order_by("-seen_at").first()
    stale_after = max(3 * settings.TANGLAW_HOST_INTERVAL_S, 60)
    running = bool(beat and (timezone.now() - beat.seen_at).total_seconds() < stale_after)
    return {"running": running, "last_round_at": beat.last_round_at if beat else None,
            "seen_at": beat.seen_at if beat else None, "workers": Heartbeat.objects.count()}


def uptime(backend_ids: list[int], window: timedelta) -> dict[int, float | None]:
    """Share of the window each backend was not unhealthy, from its status-change rows."""
    now = timezone.now()
    since = now - window
    changes: dict[int, list] = {pk: [] for pk in backend_ids}
    for row in BackendStatusChange.objects.filter(backend_id__in=backend_ids,
                                                  ts__gte=since).order_by("ts").values_list(
            "backend_id", "ts", "status", "previous"):
        changes[row[0]].append(row[1:])
    before: dict[int, str | None] = {}
    for pk in backend_ids:  # the status at the start of the window
        before[pk] = BackendStatusChange.objects.filter(backend_id=pk, ts__lt=since).order_by(
            "-ts").values_list("status", flat=True).first()
    out: dict[int, float | None] = {}
    for pk in backend_ids:
        rows = changes[pk]
        state = before[pk] or (rows[0][2] if rows else None)
        if state is None and not rows:
            out[pk] = None
            continue
        down, cursor = 0.0, since
        for ts, status, _previous in rows:
            if state == Status.UNHEALTHY:
                down += (ts - cursor).total_seconds()
            state, cursor = status, ts
        if state == Status.UNHEALTHY:
            down += (now - cursor).total_seconds()
        out[pk] = round(100 * (1 - down / window.total_seconds()), 2)
    return out


def gpu_state() -> dict[str, Any]:
    state = State.objects.filter(key=f"gpu:{socket.gethostname()}").first() or \
        State.objects.filter(key__startswith="gpu:").first()
    return state.value if state else {"available": False,
                                      "reason": "no GPU reading yet (is the monitor running?)",
                                      "devices": []}


def gpu_prefix(host: str) -> str:
    """What a host scope's GPU scopes begin with: `gpu:` for this machine (`host`: its
    GPUs are `gpu:N`), `gpu:ID/` for the fleet host `host:ID`."""
    return "gpu:" if host == "host" else f"gpu:{host.partition(':')[2]}/"


def memory(now: datetime | None = None, host: str = "host") -> dict[str, float | None]:
    """A host's RAM (total, used, free) and the most free VRAM on one of its GPUs, from the
    newest samples (10 minutes at most), in bytes; None where nothing was measured. `host`:
    this machine, or a fleet host's scope (`host:ID`)."""
    since = (now or timezone.now()) - timedelta(minutes=10)
    gpus = sorted(s for s in set(Sample.objects.filter(
        metric="gpu_memory_total_bytes", ts__gte=since, scope__startswith=gpu_prefix(host))
        .values_list("scope", flat=True)) if host != "host" or "/" not in s)
    wanted = [("memory_total_bytes", host), ("memory_used_bytes", host)] + [
        (m, g) for g in gpus for m in ("gpu_memory_total_bytes", "gpu_memory_used_bytes")]
    latest = store.latest_many(wanted, since)
    total = latest.get(("memory_total_bytes", host))
    used = latest.get(("memory_used_bytes", host))
    vram = [latest[("gpu_memory_total_bytes", g)] - latest[("gpu_memory_used_bytes", g)]
            for g in gpus if ("gpu_memory_used_bytes", g) in latest
            and ("gpu_memory_total_bytes", g) in latest]
    return {"total": total, "used": used,
            "free_ram": total - used if total is not None and used is not None else None,
            "free_vram": max(vram) if vram else None}


def health() -> dict[str, Any]:
    backends = list(Backend.objects.order_by("name"))
    up = uptime([b.pk for b in backends], timedelta(hours=24))
    since = timezone.now() - timedelta(minutes=10)
    gpu = gpu_state()
    wanted = [(m, "host") for m in HOST_METRICS] + [
        (m, f"gpu:{d['index']}") for d in gpu.get("devices", []) for m in GPU_METRICS] + [
        (m, f"backend:{b.pk}") for b in backends for m in ("tokens_per_s", "ttft_ms")]
    latest = store.latest_many(wanted, since)
    hour = timezone.now() - timedelta(hours=1)
    # tokens/s from the last hour's turns; without traffic, what the engine reports
    rates = {b.pk: store.window_stats("tokens_per_s", f"backend:{b.pk}", 3600)["avg"]
             for b in backends}
    fallbacks = ("probe_tokens_per_s", "engine_tokens_per_s")  # the active probe, the engine
    measured = store.latest_many([(m, f"backend:{b.pk}") for b in backends for m in fallbacks],
                                 since)
    for b in backends:
        for metric in fallbacks:
            if rates[b.pk] is None:
                rates[b.pk] = measured.get((metric, f"backend:{b.pk}")) or None
    statuses = [b.status for b in backends if b.enabled]
    overall = ("unhealthy" if Status.UNHEALTHY in statuses else
               "degraded" if Status.DEGRADED in statuses or Status.UNKNOWN in statuses else
               "healthy")
    return {
        "status": overall if backends else "unknown",
        "backends": [{"id": b.pk, "name": b.name, "kind": b.kind, "enabled": b.enabled,
                      "status": b.status, "reason": b.status_reason, "latency_ms": b.latency_ms,
                      "models": b.model_count, "uptime_24h": up.get(b.pk),
                      "tokens_per_s_1h": _r(rates.get(b.pk)),
                      "checked_at": b.last_checked_at} for b in backends],
        "host": {m: _r(latest.get((m, "host"))) for m in HOST_METRICS},
        "gpus": [{**d, **{m: _r(latest.get((m, f"gpu:{d['index']}"))) for m in GPU_METRICS}}
                 for d in gpu.get("devices", [])],
        "gpu_reason": gpu.get("reason", ""),
        "alerts_firing": Alert.objects.filter(state=AlertState.FIRING).count(),
        "recommendations_open": Recommendation.objects.filter(state=RecState.OPEN).count(),
        "monitor": monitor_status(),
        "since_hour": hour,
    }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


REPORT_COLUMNS = ["scope", "name", "requests", "errors", "error_rate", "latency_avg_ms",
                  "latency_min_ms", "latency_max_ms", "latency_p95_ms", "ttft_avg_ms",
                  "ttft_p95_ms", "tokens_per_s_avg", "tokens_out", "requests_per_min",
                  "uptime_pct", "host"]


def performance(window_s: int, host: Any = None) -> list[dict[str, Any]]:
    """Per backend and per agent: latency, TTFT, tokens/s, errors, throughput, uptime, and
    the fleet host each backend is on. `host`: only what is on that host."""
    from monitoring import fleet  # fleet reads these queries' samples too

    owners = fleet.host_scopes()
    names = dict(Host.objects.values_list("pk", "name"))
    wanted = fleet.scopes_on(host)[0] if host is not None else None
    rows = []
    backends = list(Backend.objects.order_by("name"))
    up = uptime([b.pk for b in backends], timedelta(seconds=window_s))
    targets = [(f"backend:{b.pk}", b.name, up.get(b.pk)) for b in backends] + [
        (f"agent:{a.pk}", a.name, None) for a in Agent.objects.order_by("name")] + [
        (f"xagent:{x.pk}", f"{x.name} (external)", None)
        for x in ExternalAgent.objects.order_by("name")]
    for scope, name, uptime_pct in targets:
        if wanted is not None and scope not in wanted:
            continue
        latency = store.window_stats("latency_ms", scope, window_s)
        ttft = store.window_stats("ttft_ms", scope, window_s)
        rate = store.window_stats("tokens_per_s", scope, window_s)
        requests = store.window_stats("requests", scope, window_s)["sum"] or 0
        errors = store.window_stats("errors", scope, window_s)["sum"] or 0
        tokens = store.window_stats("tokens_out", scope, window_s)["sum"] or 0
        rows.append({
            "scope": scope, "name": name, "requests": int(requests), "errors": int(errors),
            "error_rate": _r(errors / requests, 4) if requests else None,
            "latency_avg_ms": _r(latency["avg"], 1), "latency_min_ms": _r(latency["min"], 1),
            "latency_max_ms": _r(latency["max"], 1), "latency_p95_ms": _r(latency["p95"], 1),
            "ttft_avg_ms": _r(ttft["avg"], 1), "ttft_p95_ms": _r(ttft["p95"], 1),
            "tokens_per_s_avg": _r(rate["avg"]), "tokens_out": int(tokens),
            "requests_per_min": _r(requests / (window_s / 60), 3), "uptime_pct": uptime_pct,
            "host": _host_name(scope, owners, names)})
    return rows


def _host_name(scope: str, owners: dict[int, str], names: dict[int, str]) -> str:
    kind, _, ident = scope.partition(":")
    if kind != "backend" or not ident.isascii() or not ident.isdigit():
        return ""
    owner = owners.get(int(ident), "host")
    return "this machine" if owner == "host" else names.get(int(owner.partition(":")[2]), "")


def performance_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else safe_cell(row[k])
                         for k in REPORT_COLUMNS})
    return out.getvalue()


def stored_models(backend_ids: list[int]) -> dict[int, list[dict]]:
    """The model lists the monitor stored on its last probe of each backend."""
    from monitoring.models import State

    keys = {f"models:{pk}": pk for pk in backend_ids}
    rows = State.objects.filter(key__in=list(keys)).values_list("key", "value")
    return {keys[key]: value for key, value in rows if isinstance(value, list)}
