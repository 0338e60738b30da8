"""Alert rules evaluated over measured samples; the lifecycle; acknowledgement.

A rule names a metric, a scope (every backend, one backend, every agent, one
agent, the host, every GPU, one GPU, every gateway key with a budget, one key), a
comparator and threshold, the window its value is averaged over (0: the latest
sample; a key's budget is always its count now), how long it must hold
(`for_s`) and — for probe-driven rules — how many consecutive samples
(`for_samples`). States: pending (holds, not long enough) → firing →
acknowledged → resolved; each change is an AlertEvent row, and each firing or
resolution is queued for every channel (monitoring.notify).

An alert also resolves, with the reason on its row, when its target goes: the
backend or agent is deleted or disabled (`resolve_target`, called by those
actions), a GPU stops reporting, the rule is disabled or no longer covers the
scope, a gateway key is revoked or expires. The evaluator sweeps for these too,
so a change made another way (a bulk update, the admin) cannot leave an alert
firing forever.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from agents.models import Agent
from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction
from console.models import ApiToken, Backend
from console.safeinput import digits
from monitoring.choices import SEVERITY_RANK, AlertState, Comparator, Severity
from monitoring.models import Alert, AlertEvent, AlertRule, Channel, Delivery, Host, Sample
from traces.models import ExternalAgent

log = logging.getLogger("tanglaw.alerts")

OPS = {Comparator.GT: operator.gt, Comparator.GE: operator.ge,
       Comparator.LT: operator.lt, Comparator.LE: operator.le}
OPEN = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)
SCOPE_KINDS = ("backends", "agents", "host", "hosts", "audit", "gpus", "keys")
# a gateway key's token budget used, in percent: read from the key's count when the rule
# is evaluated (gateway.budgets), not from samples; scope `keys` or `key:ID`
BUDGET_METRICS = {"budget_day_pct": "day", "budget_month_pct": "month"}
METRICS = {
    "backend_up": "backend up (1) or down (0), from the probes",
    "host_up": "a fleet host's exporters answer (1) or none does (0)",
    "breaker_open": "the chat path's circuit breaker is open (1) or closed (0)",
    "audit_chain_ok": "the audit log verifies (1) or not (0); checked hourly",
    "probe_latency_ms": "health probe latency (ms)",
    "latency_ms": "chat turn latency (ms)", "ttft_ms": "time to first token (ms)",
    "tokens_per_s": "tokens per second", "error_rate": "errors / requests (0–1)",
    "requests": "requests in the window", "engine_requests_waiting": "requests queued",
    "engine_requests_running": "requests running", "engine_kv_cache_usage": "KV cache (0–1)",
    "cpu_percent": "host CPU %", "memory_percent": "host memory %",
    "swap_percent": "host swap %", "disk_percent": "data disk %",
    "gpu_utilization_percent": "GPU utilisation %", "gpu_memory_percent": "GPU memory %",
    "gpu_temperature_c": "GPU temperature (°C)", "gpu_power_w": "GPU power (W)",
    "budget_day_pct": "a gateway key's daily token budget used (%)",
    "budget_month_pct": "a gateway key's monthly token budget used (%)",
    "tool_calls": "an agent's tool calls in the window (external agents, from traces)",
}

# the defaults from the seed guide; created by migration 0002 and by `seed_rules`
DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Backend unhealthy", "metric": "backend_up", "scope": "backends",
     "comparator": "<", "threshold": 1, "window_s": 0, "for_samples": 2,
     "severity": Severity.CRITICAL},
    {"name": "Circuit breaker open", "metric": "breaker_open", "scope": "backends",
     "comparator": ">=", "threshold": 1, "window_s": 0, "severity": Severity.WARNING},
    {"name": "Audit log tampered with", "metric": "audit_chain_ok", "scope": "audit",
     "comparator": "<", "threshold": 1, "window_s": 0, "severity": Severity.CRITICAL},
    {"name": "Slow responses", "metric": "latency_ms", "scope": "backends", "comparator": ">",
     "threshold": 2000, "window_s": 300, "severity": Severity.WARNING},
    {"name": "High latency", "metric": "latency_ms", "scope": "backends", "comparator": ">",
     "threshold": 3000, "window_s": 300, "severity": Severity.CRITICAL},
    {"name": "Error rate", "metric": "error_rate", "scope": "backends", "comparator": ">",
     "threshold": 0.05, "window_s": 600, "severity": Severity.CRITICAL},
    {"name": "Host memory", "metric": "memory_percent", "scope": "host", "comparator": ">",
     "threshold": 85, "window_s": 120, "for_s": 60, "severity": Severity.WARNING},
    {"name": "GPU saturated", "metric": "gpu_utilization_percent", "scope": "gpus",
     "comparator": ">", "threshold": 95, "window_s": 300, "for_s": 120,
     "severity": Severity.WARNING},
    {"name": "Queue backlog", "metric": "engine_requests_waiting", "scope": "backends",
     "comparator": ">", "threshold": 50, "window_s": 120, "severity": Severity.WARNING},
    {"name": "Host down", "metric": "host_up", "scope": "hosts", "comparator": "<",
     "threshold": 1, "window_s": 0, "for_samples": 2, "severity": Severity.CRITICAL},
]


# scopes that name a row: `host:ID` is a fleet host (`host` alone is this machine)
TARGETS: dict[str, Any] = {"backend": Backend, "agent": Agent, "host": Host}


def _live_keys(rule: AlertRule):
    """Keys a budget rule may cover: active (not revoked or expired, owner active), with
    the rule's budget set."""
    field = "tokens_per_day" if BUDGET_METRICS.get(rule.metric) == "day" else \
        "tokens_per_month"
    return ApiToken.objects.active().filter(**{f"{field}__isnull": False})


def scopes_for(rule: AlertRule) -> list[str]:
    """The scopes a rule covers now: enabled targets only, GPUs seen in the last hour,
    live keys with the rule's budget."""
    if rule.scope == "keys":
        return [f"key:{pk}" for pk in _live_keys(rule).values_list("pk", flat=True)]
    if rule.scope == "backends":
        return [f"backend:{pk}" for pk in Backend.objects.filter(enabled=True)
                .values_list("pk", flat=True)]
    if rule.scope == "hosts":  # the fleet's registered hosts
        return [f"host:{pk}" for pk in Host.objects.filter(enabled=True)
                .values_list("pk", flat=True)]
    if rule.scope == "agents":  # Tanglaw's own and the external ones (traces)
        return [f"agent:{pk}" for pk in Agent.objects.filter(enabled=True)
                .values_list("pk", flat=True)] + [
            f"xagent:{pk}" for pk in ExternalAgent.objects.values_list("pk", flat=True)]
    since = timezone.now() - timedelta(hours=1)
    gpus = Sample.objects.filter(metric="gpu_utilization_percent", ts__gte=since)
    if rule.scope == "gpus":
        return sorted(set(gpus.values_list("scope", flat=True)))
    kind, _, ident = rule.scope.partition(":")
    if kind in TARGETS and digits(ident):
        alive = TARGETS[kind].objects.filter(pk=int(ident), enabled=True).exists()
        return [rule.scope] if alive else []
    if kind == "gpu":
        return [rule.scope] if gpus.filter(scope=rule.scope).exists() else []
    if kind == "xagent" and digits(ident):
        return [rule.scope] if ExternalAgent.objects.filter(pk=int(ident)).exists() else []
    if kind == "key" and digits(ident):
        return [rule.scope] if _live_keys(rule).filter(pk=int(ident)).exists() else []
    return [rule.scope]


def why_gone(rule: AlertRule, scope: str) -> str:
    """Why a rule no longer covers a scope it has an open alert for."""
    if not rule.enabled:
        return f"the rule {rule.name} was disabled"
    kind, _, ident = scope.partition(":")
    if kind in TARGETS and digits(ident):
        row = TARGETS[kind].objects.filter(pk=int(ident)).values_list("name", "enabled").first()
        if row is None:
            return f"{kind} {ident} was deleted"
        if not row[1]:
            return f"{kind} {row[0]} is disabled"
    if kind == "gpu" and rule.scope in ("gpus", scope):
        return f"gpu {ident} no longer reports"
    if kind == "xagent":
        return f"external agent {ident} has not reported for the whole trace retention"
    if kind == "key" and digits(ident):
        token = ApiToken.objects.filter(pk=int(ident)).first()
        if token is None:
            return f"key {ident} was deleted"
        if token.revoked_at is not None:
            return f"key {token.name} was revoked"
        if token.expired:
            return f"key {token.name} expired"
        return f"key {token.name} has no such budget any more"
    return f"the rule {rule.name} no longer covers {scope_label(scope)}"


def budget_values(rule: AlertRule, scopes: list[str], now: datetime) -> dict[str, float | None]:
    """A budget rule's value for each key scope, read for all of them at once."""
    from gateway.budgets import percent_used  # monitoring reads the gateway, not back

    ids = [int(s.partition(":")[2]) for s in scopes if digits(s.partition(":")[2])]
    used = percent_used(ApiToken.objects.filter(pk__in=ids), BUDGET_METRICS[rule.metric], now)
    return {f"key:{pk}": value for pk, value in used.items()}


def value_of(rule: AlertRule, scope: str, now: datetime) -> float | None:
    if rule.metric in BUDGET_METRICS:
        return budget_values(rule, [scope], now).get(scope)
    samples = Sample.objects.filter(scope=scope)
    if rule.metric == "error_rate":
        since = now - timedelta(seconds=rule.window_s or 600)
        sums = dict(samples.filter(metric__in=["errors", "requests"], ts__gte=since)
                    .values("metric").annotate(s=Sum("value")).values_list("metric", "s"))
        return (sums.get("errors") or 0) / sums["requests"] if sums.get("requests") else None
    series = samples.filter(metric=rule.metric)
    if rule.metric == "requests":
        return series.filter(ts__gte=now - timedelta(seconds=rule.window_s or 60)).aggregate(
            s=Sum("value"))["s"] or 0.0
    if not rule.window_s:
        return series.order_by("-ts").values_list("value", flat=True).first()
    values = list(series.filter(ts__gte=now - timedelta(seconds=rule.window_s))
                  .values_list("value", flat=True))
    return sum(values) / len(values) if values else None


def _holds_for_samples(rule: AlertRule, scope: str) -> bool:
    recent = list(Sample.objects.filter(metric=rule.metric, scope=scope).order_by("-ts")
                  .values_list("value", flat=True)[:rule.for_samples])
    check = OPS[Comparator(rule.comparator)]
    return len(recent) == rule.for_samples and all(check(v, rule.threshold) for v in recent)


def _change(alert: Alert, state: str, value: float | None, by: str = "", reason: str = "",
            actor: Actor | None = None) -> AlertEvent:
    alert.state = state
    alert.save()
    event = AlertEvent.objects.create(alert=alert, state=state, value=value, by=by,
                                      reason=reason)
    if state in (AlertState.FIRING, AlertState.RESOLVED):
        # in the audit timeline too, beside the changes and chats around it
        after = {"rule": alert.rule.name, "severity": alert.rule.severity,
                 "scope": alert.scope, "value": value, "message": alert.message}
        if reason:
            after["reason"] = reason
        audit.record(AuditAction.ALERT_FIRED if state == AlertState.FIRING
                     else AuditAction.ALERT_RESOLVED, actor or Actor.system("monitor"),
                     target=alert, after=after)
        rank = SEVERITY_RANK[Severity(alert.rule.severity)]
        Delivery.objects.bulk_create(
            [Delivery(event=event, channel=c, next_attempt_at=event.ts)
             for c in Channel.objects.filter(enabled=True)
             if SEVERITY_RANK[Severity(c.min_severity)] <= rank],
            ignore_conflicts=True)
    return event


def describe(rule: AlertRule, scope: str, value: float | None) -> str:
    shown = "no data" if value is None else f"{value:.4g}"
    return (f"{rule.name}: {rule.metric} is {shown} on {scope_label(scope)} "
            f"({Comparator(rule.comparator).label} {rule.threshold:g})")[:500]


def scope_label(scope: str) -> str:
    kind, _, ident = scope.partition(":")
    if kind == "backend" and digits(ident):
        name = Backend.objects.filter(pk=int(ident)).values_list("name", flat=True).first()
        return f"backend {name or ident}"
    if kind == "agent" and digits(ident):
        name = Agent.objects.filter(pk=int(ident)).values_list("name", flat=True).first()
        return f"agent {name or ident}"
    if kind == "key" and digits(ident):
        name = ApiToken.objects.filter(pk=int(ident)).values_list("name", flat=True).first()
        return f"key {name or ident}"
    if kind == "xagent" and digits(ident):
        name = ExternalAgent.objects.filter(pk=int(ident)).values_list("name", flat=True).first()
        return f"external agent {name or ident}"
    if kind == "host" and digits(ident):
        name = Host.objects.filter(pk=int(ident)).values_list("name", flat=True).first()
        return f"host {name or ident}"
    if kind == "gpu" and "/" in ident:
        host, _, index = ident.partition("/")
        name = Host.objects.filter(pk=int(host)).values_list("name", flat=True).first() \
            if digits(host) else None
        return f"GPU {index} of host {name or host}"
    return {"host": "this host"}.get(scope, scope.replace(":", " "))


def _gone(alert: Alert, now: datetime, reason: str, actor: Actor | None = None) -> bool:
    """End an open alert whose target went away; True if that was a resolution (a pending
    alert never fired, so it is dropped: nothing to resolve or notify)."""
    if alert.state == AlertState.PENDING:
        alert.delete()
        return False
    alert.resolved_at, alert.resolved_reason = now, reason[:200]
    _change(alert, AlertState.RESOLVED, alert.value, by=actor.username if actor else "",
            reason=reason[:200], actor=actor)
    return True


def resolve_target(actor: Actor, scope: str, reason: str) -> int:
    """Resolve every open alert on `scope`, whose target is being deleted or disabled.
    Call it inside the action's transaction: the alerts resolve only if the change does."""
    now, resolved = timezone.now(), 0
    for alert in Alert.objects.select_for_update().select_related("rule").filter(
            scope=scope, state__in=OPEN):
        resolved += _gone(alert, now, reason, actor)
    return resolved


def _sweep(rule: AlertRule, covered: set[str], now: datetime) -> int:
    """Resolve the rule's open alerts on scopes it no longer covers."""
    resolved = 0
    for pk, scope in Alert.objects.filter(rule=rule, state__in=OPEN).values_list("pk", "scope"):
        if scope in covered:
            continue
        with transaction.atomic():
            # under the lock: another monitor or an action may have ended it meanwhile
            alert = Alert.objects.select_for_update().filter(pk=pk, state__in=OPEN).first()
            if alert is not None:
                resolved += _gone(alert, now, why_gone(rule, scope))
    return resolved


def evaluate(now: datetime | None = None) -> dict[str, int]:
    """One pass over every enabled rule and scope. Returns counts of state changes."""
    now = now or timezone.now()
    changes = {"fired": 0, "resolved": 0}
    for rule in AlertRule.objects.filter(enabled=False, alerts__state__in=OPEN).distinct():
        try:
            changes["resolved"] += _sweep(rule, set(), now)
        except Exception:  # noqa: BLE001
            log.exception("resolving the alerts of disabled rule %s failed", rule.pk)
    for rule in AlertRule.objects.filter(enabled=True):
        try:  # one broken rule (or scope) must not stop the others being evaluated
            _evaluate_rule(rule, now, changes)
        except Exception:  # noqa: BLE001
            log.exception("evaluating alert rule %s failed", rule.pk)
    return changes


def _evaluate_rule(rule: AlertRule, now: datetime, changes: dict[str, int]) -> None:
    check = OPS[Comparator(rule.comparator)]
    scopes = scopes_for(rule)
    changes["resolved"] += _sweep(rule, set(scopes), now)
    known = budget_values(rule, scopes, now) if rule.metric in BUDGET_METRICS else None
    for scope in scopes:
        try:
            _evaluate_scope(rule, scope, check, now, changes,
                            known.get(scope) if known is not None else _UNKNOWN)
        except Exception:  # noqa: BLE001
            log.exception("evaluating alert rule %s for %s failed", rule.pk, scope)


_UNKNOWN = object()  # the value is still to be read


def _evaluate_scope(rule: AlertRule, scope: str, check, now: datetime,
                    changes: dict[str, int], value: Any = _UNKNOWN) -> None:
    if value is _UNKNOWN:
        value = value_of(rule, scope, now)
    holds = value is not None and check(value, rule.threshold)
    if holds and rule.for_samples:
        holds = _holds_for_samples(rule, scope)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(
            rule=rule, scope=scope, state__in=OPEN).first()
        if holds:
            if alert is None:
                alert = Alert.objects.create(
                    rule=rule, scope=scope, state=AlertState.PENDING, value=value,
                    threshold=rule.threshold, pending_since=now,
                    message=describe(rule, scope, value))
                AlertEvent.objects.create(alert=alert, state=AlertState.PENDING,
                                          value=value)
            alert.value, alert.message = value, describe(rule, scope, value)
            if alert.state == AlertState.PENDING and (
                    now - alert.pending_since).total_seconds() >= rule.for_s:
                alert.started_at = now
                _change(alert, AlertState.FIRING, value)
                changes["fired"] += 1
            else:
                alert.save(update_fields=["value", "message"])
        elif alert is not None:
            if alert.state == AlertState.PENDING:
                alert.delete()  # it never fired: nothing to resolve or notify
            else:
                alert.resolved_at, alert.value = now, value
                _change(alert, AlertState.RESOLVED, value)
                changes["resolved"] += 1


def acknowledge(actor: Actor, alert: Alert) -> Alert:
    if alert.state != AlertState.FIRING:
        raise Refused(f"only a firing alert can be acknowledged; this one is {alert.state}")
    with transaction.atomic():
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), actor.username
        _change(alert, AlertState.ACKNOWLEDGED, alert.value, by=actor.username)
        audit.record(AuditAction.ALERT_ACKNOWLEDGED, actor, target=alert,
                     after={"rule": alert.rule.name, "scope": alert.scope})
    return alert


# -- rules ----------------------------------------------------------------------

RULE_FIELDS = ("name", "metric", "scope", "comparator", "threshold", "for_s", "for_samples",
               "window_s", "severity", "enabled")


def rule_state(rule: AlertRule) -> dict[str, Any]:
    return {f: getattr(rule, f) for f in RULE_FIELDS}


def _clean_rule(data: dict[str, Any], rule: AlertRule | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    out = {**(rule_state(rule) if rule else {"comparator": ">", "for_s": 0, "for_samples": 0,
                                            "window_s": 300, "severity": "warning",
                                            "enabled": True}), **data}
    name = str(out.get("name") or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name (at most 100 characters)."]
    elif AlertRule.objects.filter(name=name).exclude(pk=rule.pk if rule else -1).exists():
        errors["name"] = [f"A rule named {name} already exists."]
    out["name"] = name
    if out.get("metric") not in METRICS:
        errors["metric"] = [f"One of: {', '.join(sorted(METRICS))}."]
    scope = str(out.get("scope") or "")
    kind, _, ident = scope.partition(":")
    if not (scope in SCOPE_KINDS or (kind in ("backend", "agent", "xagent", "gpu", "key",
                                              "host") and digits(ident) and len(ident) < 19)
            or (kind == "gpu" and re.fullmatch(r"\d{1,9}/\d{1,9}", ident))):
        errors["scope"] = ["backends, backend:ID, agents, agent:ID, xagent:ID (an external "
                           "agent), host (this machine), hosts, host:ID (a fleet host), "
                           "audit, gpus, gpu:INDEX, gpu:HOST/INDEX, keys or key:ID."]
    elif (out.get("metric") in BUDGET_METRICS) != (scope == "keys" or kind == "key"):
        errors["scope"] = ["A key's budget (budget_day_pct, budget_month_pct) is measured on "
                           "keys or key:ID, and only it is."]
    elif kind == "key" and not ApiToken.objects.filter(pk=int(ident)).exists():
        errors["scope"] = [f"No key {ident}."]
    elif kind == "xagent" and not ExternalAgent.objects.filter(pk=int(ident)).exists():
        errors["scope"] = [f"No external agent {ident}: it appears once it sent spans."]
    if out.get("metric") in BUDGET_METRICS and out.get("for_samples"):
        errors["for_samples"] = ["A budget is read when the rule is evaluated, not sampled: "
                                 "use for_s."]
    if out.get("comparator") not in Comparator.values:
        errors["comparator"] = [f"One of {', '.join(Comparator.values)}."]
    if out.get("severity") not in Severity.values:
        errors["severity"] = [f"One of {', '.join(Severity.values)}."]
    for field, high in (("threshold", None), ("for_s", 86400), ("for_samples", 100),
                        ("window_s", 86400)):
        value = out.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or abs(value) > 1e15 or (high is not None and not 0 <= value <= high):
            errors[field] = ["Enter a number" + (f" from 0 to {high}." if high else ".")]
    if not isinstance(out.get("enabled"), bool):
        errors["enabled"] = ["true or false"]
    if errors:
        raise Invalid(errors)
    for field in ("for_s", "for_samples", "window_s"):
        out[field] = int(out[field])
    return {f: out[f] for f in RULE_FIELDS}


def save_rule(actor: Actor, data: dict[str, Any], rule: AlertRule | None = None) -> AlertRule:
    fields = _clean_rule(data, rule)
    with transaction.atomic():
        if rule is None:
            rule = AlertRule.objects.create(**fields)
            audit.record(AuditAction.ALERT_RULE_CREATED, actor, target=rule,
                         after=rule_state(rule))
        else:
            before = rule_state(rule)
            for key, value in fields.items():
                setattr(rule, key, value)
            rule.save()
            audit.record(AuditAction.ALERT_RULE_UPDATED, actor, target=rule, before=before,
                         after=rule_state(rule))
            if before["enabled"] and not rule.enabled:
                now, reason = timezone.now(), f"the rule {rule.name} was disabled"
                for alert in Alert.objects.select_for_update().filter(rule=rule,
                                                                      state__in=OPEN):
                    _gone(alert, now, reason, actor)
    return rule


def delete_rule(actor: Actor, rule: AlertRule) -> None:
    with transaction.atomic():
        before, pk = rule_state(rule), rule.pk
        rule.delete()
        audit.record(AuditAction.ALERT_RULE_DELETED, actor, target_type="monitoring.alertrule",
                     target_id=pk, before=before)
