"""Scaling recommendations from measured windows, each with its evidence.

Every rule looks at samples over a window and either recommends (with the
metric, value, window and threshold that triggered it, a severity and a plain
action) or not. A recommendation stays open while its evidence holds, is
updated in place, and resolves itself when the evidence goes away. Where Tanglaw can
act (unload idle models, stop, restart or start a managed engine), `apply` carries it
out — one click for an operator, or automatically (monitoring.automation) where the
operator allowed it for that rule.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from agents.models import Agent
from console import audit, sizing
from console.actions import Invalid, Refused
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.choices import AuditAction, Status
from console.models import Backend
from engines import actions as engine_actions
from engines.choices import Desired, EngineState
from engines.models import ManagedEngine
from monitoring import fleet, queries, store
from monitoring.choices import AutoOutcome, RecState, Severity
from monitoring.models import AutoAction, Recommendation, Sample, State
from traces.models import ExternalAgent

LATENCY_TARGET_MS = 3000
IDLE_MINUTES = 30
RETURN_MINUTES = 5
ALWAYS_UNLOAD = ("ollama", "foundry_local")  # llama-server: only in router mode


def _evidence(metric: str, value: float, window: str, threshold: float, scope: str
              ) -> dict[str, Any]:
    return {"metric": metric, "value": round(value, 3), "window": window,
            "threshold": threshold, "scope": scope}


def _backend_rules(backend: Backend, now) -> list[dict[str, Any]]:
    scope, out = f"backend:{backend.pk}", []
    latency = store.window_stats("latency_ms", scope, 900, now)
    if latency["count"] >= 5 and (latency["p95"] or 0) > LATENCY_TARGET_MS:
        out.append({"rule": "latency_over_target", "severity": Severity.WARNING,
                    "title": f"{backend.name} answers slowly: scale up",
                    "action": "Turns take longer than the target. Use a faster GPU, a smaller "
                              "model or quantization (e.g. Q4_K_M), or on vLLM raise "
                              "--tensor-parallel-size across more GPUs.",
                    "evidence": [_evidence("latency_ms p95", latency["p95"], "15m",
                                           LATENCY_TARGET_MS, scope)]})
    waiting = store.window_stats("engine_requests_waiting", scope, 900, now)
    if waiting["count"] and (waiting["avg"] or 0) > 5:
        out.append({"rule": "queue_backlog", "severity": Severity.WARNING,
                    "title": f"{backend.name} queues requests: scale out",
                    "action": "Requests wait for a free slot. Add a replica or node and list "
                              "it as a fallback, or raise the engine's parallel slots "
                              "(llama-server --parallel, vLLM --max-num-seqs).",
                    "evidence": [_evidence("engine_requests_waiting avg", waiting["avg"], "15m",
                                           5, scope)]})
    requests = store.window_stats("requests", scope, 900, now)
    errors = store.window_stats("errors", scope, 900, now)
    if requests["sum"] >= 10 and errors["sum"] / requests["sum"] > 0.2:
        healthy = Backend.objects.filter(enabled=True, status=Status.HEALTHY).exclude(
            pk=backend.pk).values_list("name", flat=True).first()
        if healthy:
            rate = errors["sum"] / requests["sum"]
            out.append({"rule": "error_spike", "severity": Severity.CRITICAL,
                        "title": f"{backend.name} fails often: route agents to {healthy}",
                        "action": f"{rate:.0%} of turns on {backend.name} failed in the last "
                                  f"15 minutes while {healthy} is healthy. Make {healthy} the "
                                  f"agents' first fallback, or move them to it.",
                        "evidence": [_evidence("error_rate", rate, "15m", 0.2, scope)]})
    return out


def _fit_rules(now) -> list[dict[str, Any]]:
    """Models the engines list but that will not load into the memory free now on the
    host each backend runs on (this machine, or its fleet host)."""
    scopes = fleet.host_scopes()
    free_by_host: dict[str, dict] = {}
    out = []
    for backend in Backend.objects.filter(enabled=True):
        host = scopes.get(backend.pk, "host")
        if host not in free_by_host:
            free_by_host[host] = queries.memory(now, host)
        free = free_by_host[host]
        ram, vram = free["free_ram"], free["free_vram"]
        room = max(x for x in (ram, vram, 0.0) if x is not None)
        if not room:
            continue
        state = State.objects.filter(key=f"models:{backend.pk}").first()
        for model in (state.value if state else []):
            size = model.get("size_bytes")
            if model.get("loaded") or not size or size * sizing.OVERHEAD <= room:
                continue
            params = sizing.parameters(model.get("parameter_size", ""))
            fit = sizing.best_fit(params, room) if params else None
            where = "GPU memory" if vram is not None and vram >= (ram or 0) else "RAM"
            advice = (f"Use {fit[0]} instead (about {fit[1] / 1e9:.1f} GB)." if fit else
                      "No common quantization of it fits: pick a smaller model.")
            out.append({
                "rule": "model_too_big", "severity": Severity.WARNING,
                "scope": f"backend:{backend.pk}",
                "title": f"{model['id']} on {backend.name} does not fit in free {where}",
                "action": f"{model['id']} ({model.get('quantization') or 'unknown quantization'}"
                          f", {size / 1e9:.1f} GB) needs about "
                          f"{size * sizing.OVERHEAD / 1e9:.1f} GB with overhead, but only "
                          f"{room / 1e9:.1f} GB is free. {advice}",
                "evidence": [_evidence("model size × overhead (GB)",
                                       size * sizing.OVERHEAD / 1e9, "now", round(room / 1e9, 2),
                                       f"backend:{backend.pk}")]})
    return out


def _host_rules(now) -> list[dict[str, Any]]:
    out = []
    gpu_scopes = sorted(set(Sample.objects.filter(
        metric="gpu_utilization_percent", ts__gte=now - timedelta(hours=1))
        .values_list("scope", flat=True)))
    for scope in gpu_scopes:
        busy = store.window_stats("gpu_utilization_percent", scope, 900, now)
        if busy["count"] and (busy["avg"] or 0) > 95:
            out.append({"rule": "gpu_saturated", "severity": Severity.WARNING,
                        "title": f"{scope.replace(':', ' ').upper()} is saturated: scale out",
                        "action": "The GPU is fully busy. Add another replica or node, or "
                                  "move some agents to a smaller model.",
                        "evidence": [_evidence("gpu_utilization_percent avg", busy["avg"],
                                               "15m", 95, scope)]})
        hour = store.window_stats("gpu_utilization_percent", scope, 3600, now)
        traffic = Sample.objects.filter(metric="requests", ts__gte=now - timedelta(hours=1))
        per_minute = sum(traffic.values_list("value", flat=True)) / 60
        if hour["count"] >= 10 and (hour["avg"] or 0) < 20 and per_minute < 1:
            out.append({"rule": "gpu_idle", "severity": Severity.INFO,
                        "title": f"{scope.replace(':', ' ').upper()} is mostly idle: scale down",
                        "action": "Less than 20 % GPU use and under one request a minute for "
                                  "an hour. Consolidate models onto fewer GPUs or nodes.",
                        "evidence": [_evidence("gpu_utilization_percent avg", hour["avg"],
                                               "1h", 20, scope),
                                     _evidence("requests per minute", per_minute, "1h", 1,
                                               "all")]})
    scopes = fleet.host_scopes()
    for host in ["host", *sorted(set(scopes.values()))]:
        memory = store.window_stats("memory_percent", host, 600, now)
        if memory["count"] and (memory["avg"] or 0) > 80:
            out += _unload_idle(memory["avg"], now, host, scopes)
    return out


def _unload_idle(memory: float, now, host: str,
                 scopes: dict[int, str]) -> list[dict[str, Any]]:
    """Memory is tight on `host`: recommend unloading models that are loaded but had no
    traffic on the backends there (`scopes`: each backend's host, this machine when not
    named), or stopping the managed engine that serves them."""
    out = []
    since = now - timedelta(minutes=IDLE_MINUTES)
    running = {e.backend_id: e for e in ManagedEngine.objects.filter(
        state=EngineState.RUNNING, backend__isnull=False)}
    # what the last probe saw: Ollama and Foundry Local always unload, llama-server in
    # router mode (monitoring.worker records it)
    unloads = {int(key.split(":")[1]) for key in State.objects.filter(
        key__startswith="unloads:", value=True).values_list("key", flat=True)}
    for backend in Backend.objects.filter(enabled=True):
        if scopes.get(backend.pk, "host") != host:
            continue
        scope = f"backend:{backend.pk}"
        engine = running.get(backend.pk)
        if engine is None and backend.pk not in unloads and backend.kind not in ALWAYS_UNLOAD:
            continue
        recent = Sample.objects.filter(metric="requests", scope=scope, ts__gte=since).exists()
        loaded = store.latest("models_loaded", scope) or 0
        if recent or (engine is None and loaded < 1):
            continue
        if engine is not None:
            what = (f"Stop the managed engine {engine.name}; it starts again when traffic "
                    f"returns (with that rule applied automatically) or from Engines.")
            apply = {"kind": "stop_engine", "engine_id": engine.pk}
        else:
            what = "Unload them; they load again on the next request."
            apply = {"kind": "unload_loaded", "backend_id": backend.pk}
        out.append({"rule": "unload_idle", "severity": Severity.WARNING,
                    "title": f"Memory is tight: free {backend.name}'s idle memory",
                    "action": f"No turns reached {backend.name} in {IDLE_MINUTES} minutes, "
                              f"yet it keeps its model(s) in memory. {what}",
                    "evidence": [_evidence("memory_percent avg", memory, "10m", 80, host),
                                 _evidence("requests", 0, f"{IDLE_MINUTES}m", 0, scope)],
                    "scope": scope, "apply": apply})
    return out


def _engine_rules(now) -> list[dict[str, Any]]:
    """Managed engines: one that failed (restart it), and one the automation stopped while
    idle that traffic came back to (start it)."""
    out = []
    since = now - timedelta(minutes=RETURN_MINUTES)
    for engine in ManagedEngine.objects.all():
        scope = f"engine:{engine.pk}"
        if engine.state == EngineState.FAILED:
            out.append({"rule": "engine_failed", "severity": Severity.CRITICAL,
                        "title": f"The managed engine {engine.name} failed: restart it",
                        "action": f"It stopped: {engine.state_reason or 'see its log'}. "
                                  f"Restart it; its log on the Engines page says why it "
                                  f"failed if it fails again.",
                        "evidence": [_evidence("last_exit_code", engine.last_exit_code or 0,
                                               "now", 0, scope)],
                        "scope": scope,
                        "apply": {"kind": "restart_engine", "engine_id": engine.pk}})
            continue
        if engine.desired != Desired.STOPPED or not engine.backend_id \
                or not _stopped_by_automation(engine):
            continue
        backend_scope = f"backend:{engine.backend_id}"
        wanted = Sample.objects.filter(metric="requests", scope=backend_scope,
                                       ts__gte=since).aggregate(n=Sum("value"))["n"] or 0
        if wanted >= 1:
            out.append({"rule": "traffic_returned", "severity": Severity.WARNING,
                        "title": f"Traffic is back for {engine.name}: start it again",
                        "action": f"{wanted:.0f} turn(s) asked for its backend in the last "
                                  f"{RETURN_MINUTES} minutes since the automation stopped it "
                                  f"while idle. Start it again.",
                        "evidence": [_evidence("requests", wanted, f"{RETURN_MINUTES}m", 1,
                                               backend_scope)],
                        "scope": scope,
                        "apply": {"kind": "start_engine", "engine_id": engine.pk}})
    return out


def _stopped_by_automation(engine: ManagedEngine) -> bool:
    stop = AutoAction.objects.filter(outcome=AutoOutcome.DONE, rule="unload_idle",
                                     scope=f"backend:{engine.backend_id}").first()
    return stop is not None and (engine.stopped_at is None or engine.stopped_at >= stop.at)


def _agent_rules(now) -> list[dict[str, Any]]:
    """Agents, Tanglaw's and external ones (traces), whose runs fail often: where to look
    (their failing traces) and what usually helps. One grouped query over the last 15
    minutes' samples, however many agents there are."""
    since = now - timedelta(minutes=15)
    sums: dict[str, dict[str, float]] = {}
    for scope, metric, total in (Sample.objects.filter(
            ts__gte=since, ts__lte=now, metric__in=("requests", "errors", "tool_errors"))
            .filter(Q(scope__startswith="agent:") | Q(scope__startswith="xagent:"))
            .values("scope", "metric").annotate(total=Sum("value"))
            .values_list("scope", "metric", "total")):
        sums.setdefault(scope, {})[metric] = total or 0
    failing = {scope: s for scope, s in sums.items() if s.get("requests", 0) >= 10
               and s.get("errors", 0) / s["requests"] > 0.2}
    names = {f"agent:{pk}": name for pk, name in Agent.objects.filter(
        enabled=True, pk__in=[int(k[6:]) for k in failing if k.startswith("agent:")]
    ).values_list("pk", "name")}
    names.update({f"xagent:{pk}": name for pk, name in ExternalAgent.objects.filter(
        pk__in=[int(k[7:]) for k in failing if k.startswith("xagent:")]
    ).values_list("pk", "name")})
    out = []
    for scope, s in failing.items():
        if scope not in names:
            continue
        name, external = names[scope], scope.startswith("xagent:")
        requests, errors, tools = s["requests"], s.get("errors", 0), s.get("tool_errors", 0)
        rate = errors / requests
        where = (f"{tools:.0f} of its tool calls raised: fix or guard that tool"
                 if tools else "see which step fails: the model call, a tool or a deadline")
        fix = ("" if external else " If its model is what fails, give it a fallback "
               "backend or an escalation target.")
        out.append({"rule": "agent_failing", "severity": Severity.WARNING,
                    "title": f"{name} fails {rate:.0%} of its runs",
                    "action": f"{errors:.0f} of {requests:.0f} runs of "
                              f"{'the external agent ' if external else ''}{name} failed in "
                              f"the last 15 minutes; {where}. Its failing traces show the "
                              f"step: Traces, agent {name}, status error.{fix}",
                    "scope": scope,
                    "evidence": [_evidence("error_rate", rate, "15m", 0.2, scope)]})
    return out


def run(now=None) -> dict[str, int]:
    now = now or timezone.now()
    found: list[dict[str, Any]] = []
    for backend in Backend.objects.filter(enabled=True):
        for item in _backend_rules(backend, now):
            found.append({"scope": f"backend:{backend.pk}", **item})
    for item in _host_rules(now) + _fit_rules(now) + _agent_rules(now) + _engine_rules(now):
        found.append({"scope": item.get("scope") or item["evidence"][0]["scope"], **item})
    keys = set()
    with transaction.atomic():
        for item in found:
            key = f"{item['rule']}:{item['scope']}"
            keys.add(key)
            Recommendation.objects.update_or_create(
                key=key, state=RecState.OPEN,
                defaults={"rule": item["rule"], "scope": item["scope"],
                          "severity": item["severity"], "title": item["title"],
                          "action": item["action"], "evidence": item["evidence"],
                          "apply": item.get("apply"), "updated_at": now})
        resolved = Recommendation.objects.filter(state=RecState.OPEN).exclude(
            key__in=keys).update(state=RecState.RESOLVED, resolved_at=now)
    return {"open": len(keys), "resolved": resolved}


def describe(apply: dict[str, Any] | None) -> str:
    """What applying does, in words (the automation's dry run says this)."""
    apply = apply or {}
    kind = apply.get("kind")
    if kind == "unload_loaded":
        backend = Backend.objects.filter(pk=apply.get("backend_id") or 0).first()
        return f"unload every model loaded on {backend.name if backend else 'a deleted backend'}"
    engine = ManagedEngine.objects.filter(pk=apply.get("engine_id") or 0).first()
    verb = {"stop_engine": "stop", "restart_engine": "restart", "start_engine": "start"}.get(
        kind or "", "act on")
    return f"{verb} the managed engine {engine.name if engine else '(deleted)'}"


def apply(actor: Actor, rec: Recommendation) -> str:
    """Carry out a recommendation's action (confirmed in the UI, or by the automation where
    allowed). Audited with the evidence."""
    if rec.state != RecState.OPEN or not rec.apply:
        raise Refused("this recommendation has no action to apply now")
    kind = rec.apply.get("kind")
    target: Backend | ManagedEngine
    if kind == "unload_loaded":
        target, done = _unload_loaded(rec)
    elif kind in ("stop_engine", "restart_engine", "start_engine"):
        target, done = _engine_action(actor, rec, kind)
    else:
        raise Refused(f"Tanglaw cannot apply {kind!r}")
    with transaction.atomic():
        rec.state, rec.applied_by, rec.resolved_at = RecState.APPLIED, actor.username, \
            timezone.now()
        rec.save(update_fields=["state", "applied_by", "resolved_at"])
        audit.record(AuditAction.RECOMMENDATION_APPLIED, actor, target=target,
                     after={"recommendation": rec.title, "rule": rec.rule, "done": done,
                            "evidence": rec.evidence,
                            "automatic": actor.role == "system"})
    return done


def _unload_loaded(rec: Recommendation) -> tuple[Backend, str]:
    backend = Backend.objects.filter(pk=(rec.apply or {}).get("backend_id") or 0).first()
    if backend is None:
        raise Refused("its backend no longer exists")
    adapter = adapter_for(backend)
    if "unload" not in adapter.capabilities:
        raise Refused(f"{backend.get_kind_display()} cannot unload models from here")

    async def unload_all() -> list[str]:
        async with adapter.session():
            loaded = [m.id for m in await adapter.loaded_models()]
            for model in loaded:
                await adapter.unload_model(model)
            return loaded

    try:
        unloaded = async_to_sync(unload_all)()  # on the server's loop, under ASGI
    except BackendError as exc:
        raise Refused(f"{backend.name}: {exc.message}") from None
    return backend, (f"Unloaded {', '.join(unloaded) or 'nothing (no model was loaded)'} on "
                     f"{backend.name}.")


def _engine_action(actor: Actor, rec: Recommendation, kind: str
                   ) -> tuple[ManagedEngine, str]:
    engine = ManagedEngine.objects.filter(pk=(rec.apply or {}).get("engine_id") or 0).first()
    if engine is None:
        raise Refused("its managed engine no longer exists")
    do = {"stop_engine": engine_actions.stop_engine,
          "restart_engine": engine_actions.restart_engine,
          "start_engine": engine_actions.start_engine}[kind]
    try:
        do(actor, engine)
    except Invalid as exc:
        raise Refused(exc.messages) from None
    verb = {"stop_engine": "Stopping", "restart_engine": "Restarting",
            "start_engine": "Starting"}[kind]
    return engine, f"{verb} the managed engine {engine.name}."


def last_traffic(scope: str):
    return Sample.objects.filter(metric="requests", scope=scope).aggregate(t=Max("ts"))["t"]
