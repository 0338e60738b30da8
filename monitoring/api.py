"""Monitoring in the JSON API: series, fleet health, alerts and rules, recommendations,
performance reports and the monitor's settings (mounted on console's /api/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from console import audit
from console.actions import Invalid
from console.api import found, given, need
from console.audit import Actor
from console.choices import AuditAction
from monitoring import advisor, alerts, automation, channels, fleet, queries, store
from monitoring.choices import AlertState, AutoOutcome, RecState
from monitoring.models import (
    Alert,
    AlertRule,
    AutoAction,
    Channel,
    Host,
    Recommendation,
    State,
)

router = Router(tags=["monitoring"])


def _scope(backend: int | None, agent: int | None, scope: str | None) -> str:
    if backend is not None:
        return f"backend:{backend}"
    if agent is not None:
        return f"agent:{agent}"
    return scope or "host"


def _window(window: str) -> int:
    if window not in store.WINDOWS:
        raise HttpError(422, f"window must be one of {', '.join(store.WINDOWS)}")
    return store.WINDOWS[window]


class SeriesOut(Schema):
    metric: str
    scope: str
    tier: int
    start: int
    end: int
    points: list[list[float | None]]


@router.get("/metrics/series", response=SeriesOut)
def series(request, metric: str, backend: int | None = None, agent: int | None = None,
           scope: str | None = None, window: str = "1h"):
    """Points `[unix_ts, value]` of the window `[start, end]` (unix seconds) from the tier
    that fills it in ≤ ~1,500 points, and finer tiers where that one has no buckets yet.
    `tier` is 0 for raw samples, 60 or 3600 for rollups; counters are per minute; a
    `[unix_ts, null]` point marks a gap with no samples, where a chart breaks its line."""
    need(request, "dashboard.view")
    where = _scope(backend, agent, scope)
    return {**store.series(metric, where, _window(window)), "scope": where}


@router.get("/health")
def health(request) -> dict[str, Any]:
    """The fleet at a glance: backends with uptime, host, GPUs, alerts, the monitor."""
    need(request, "dashboard.view")
    data = queries.health()
    data.pop("since_hour", None)
    return data


class AlertOut(Schema):
    id: int
    rule: str
    metric: str
    severity: str
    state: str
    scope: str
    value: float | None
    threshold: float
    message: str
    started_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None
    resolved_reason: str

    @staticmethod
    def resolve_rule(alert: Alert) -> str:
        return alert.rule.name

    @staticmethod
    def resolve_metric(alert: Alert) -> str:
        return alert.rule.metric

    @staticmethod
    def resolve_severity(alert: Alert) -> str:
        return alert.rule.severity


@router.get("/alerts", response=list[AlertOut])
def list_alerts(request, state: str | None = None, limit: int = 100):
    need(request, "dashboard.view")
    rows = Alert.objects.select_related("rule").exclude(state=AlertState.PENDING)
    if state:
        if state not in AlertState.values:
            raise HttpError(422, f"state must be one of {', '.join(AlertState.values)}")
        rows = rows.filter(state=state)
    return list(rows.order_by("-pending_since")[:max(1, min(limit, 500))])


@router.post("/alerts/{pk}/ack", response={200: AlertOut, 409: dict})
def ack_alert(request, pk: int):
    need(request, "alerts.manage")
    alert = found(Alert.objects.select_related("rule"), "alert", pk=pk)
    return alerts.acknowledge(Actor.from_request(request), alert)


class RuleIn(Schema):
    name: str
    metric: str
    scope: str = "backends"
    comparator: str = ">"
    threshold: float
    for_s: int = 0
    for_samples: int = 0
    window_s: int = 300
    severity: str = "warning"
    enabled: bool = True


class RulePatch(Schema):
    name: str | None = None
    metric: str | None = None
    scope: str | None = None
    comparator: str | None = None
    threshold: float | None = None
    for_s: int | None = None
    for_samples: int | None = None
    window_s: int | None = None
    severity: str | None = None
    enabled: bool | None = None


class RuleOut(RuleIn):
    id: int


@router.get("/alert-rules", response=list[RuleOut])
def list_rules(request):
    need(request, "dashboard.view")
    return list(AlertRule.objects.all())


@router.post("/alert-rules", response={201: RuleOut, 422: dict})
def create_rule(request, payload: RuleIn):
    need(request, "alerts.manage")
    return Status(201, alerts.save_rule(Actor.from_request(request), payload.dict()))


def _rule(pk: int) -> AlertRule:
    return found(AlertRule.objects, "alert rule", pk=pk)


@router.get("/alert-rules/{pk}", response=RuleOut)
def get_rule(request, pk: int):
    need(request, "dashboard.view")
    return _rule(pk)


@router.patch("/alert-rules/{pk}", response={200: RuleOut, 422: dict})
def patch_rule(request, pk: int, payload: RulePatch):
    need(request, "alerts.manage")
    return alerts.save_rule(Actor.from_request(request), payload.dict(exclude_unset=True),
                            _rule(pk))


@router.delete("/alert-rules/{pk}", response={204: None})
def delete_rule(request, pk: int):
    need(request, "alerts.manage")
    alerts.delete_rule(Actor.from_request(request), _rule(pk))
    return Status(204, None)


class ChannelIn(Schema):
    name: str
    kind: str
    target: str
    slack: bool = False
    min_severity: str = "warning"
    enabled: bool = True


class ChannelOut(Schema):
    id: int
    name: str
    kind: str
    # write-only like a key: a webhook URL carries its token, so only a masked form
    target: str = Field(..., alias="target_display")
    slack: bool
    min_severity: str
    enabled: bool


@router.get("/channels", response=list[ChannelOut])
def list_channels(request):
    need(request, "alerts.manage")
    return list(Channel.objects.all())


@router.post("/channels", response={201: ChannelOut, 422: dict})
def create_channel(request, payload: ChannelIn):
    need(request, "alerts.manage")
    return Status(201, channels.create_channel(Actor.from_request(request), payload.dict()))


class ChannelPatch(Schema):
    name: Any = None
    target: Any = None
    slack: Any = None
    min_severity: Any = None
    enabled: Any = None


@router.patch("/channels/{pk}", response={200: ChannelOut, 422: dict})
def patch_channel(request, pk: int, payload: ChannelPatch):
    """Rename, enable or disable, a new target (write-only), severity, Slack payload."""
    need(request, "alerts.manage")
    return channels.update_channel(Actor.from_request(request),
                                   found(Channel.objects, "channel", pk=pk),
                                   payload.dict(exclude_unset=True))


class ChannelTestOut(Schema):
    ok: bool
    detail: str


@router.post("/channels/{pk}/test", response=ChannelTestOut)
def test_channel(request, pk: int):
    """Send a test notification through the channel now and say what happened."""
    need(request, "alerts.manage")
    ok, detail = channels.test_channel(Actor.from_request(request),
                                       found(Channel.objects, "channel", pk=pk))
    return {"ok": ok, "detail": detail}


@router.delete("/channels/{pk}", response={204: None})
def delete_channel(request, pk: int):
    need(request, "alerts.manage")
    channels.delete_channel(Actor.from_request(request),
                            found(Channel.objects, "channel", pk=pk))
    return Status(204, None)


class RecommendationOut(Schema):
    id: int
    rule: str
    scope: str
    severity: str
    title: str
    action: str
    evidence: list[dict[str, Any]]
    can_apply: bool
    state: str
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_can_apply(rec: Recommendation) -> bool:
        return bool(rec.apply) and rec.state == RecState.OPEN


@router.get("/recommendations", response=list[RecommendationOut])
def list_recommendations(request, state: str = "open"):
    need(request, "dashboard.view")
    return list(Recommendation.objects.filter(state=state)[:200])


@router.post("/recommendations/{pk}/apply", response={200: dict, 409: dict})
def apply_recommendation(request, pk: int):
    need(request, "recommendations.apply")
    rec = found(Recommendation.objects, "recommendation", pk=pk)
    return {"detail": advisor.apply(Actor.from_request(request), rec)}


class PolicyOut(Schema):
    rule: str
    description: str
    mode: str
    max_per_hour: int
    updated_by: str


class PolicyIn(Schema):
    mode: str
    max_per_hour: int | None = None


class AutoActionOut(Schema):
    at: datetime
    rule: str
    scope: str
    recommendation_id: int | None
    outcome: str
    description: str
    reason: str
    evidence: list[dict[str, Any]]
    detail: str


def _policy_out(policy) -> dict[str, Any]:
    return {"rule": policy.rule, "description": automation.RULES[policy.rule],
            "mode": policy.mode, "max_per_hour": policy.max_per_hour,
            "updated_by": policy.updated_by}


@router.get("/automation/policies", response=list[PolicyOut])
def list_policies(request):
    """Per automatable recommendation rule: suggest (the default) or apply automatically."""
    need(request, "dashboard.view")
    return [_policy_out(p) for p in automation.policies().values()]


@router.put("/automation/policies/{rule}", response={200: PolicyOut, 422: dict})
def set_policy(request, rule: str, payload: PolicyIn):
    need(request, "recommendations.apply")
    return _policy_out(automation.set_policy(Actor.from_request(request), rule, payload.mode,
                                             payload.max_per_hour))


@router.get("/automation/actions", response=list[AutoActionOut])
def list_auto_actions(request, outcome: str | None = None, limit: int = 100):
    """What the automation did, and (outcome `would_do`: the dry run) what it would have."""
    need(request, "dashboard.view")
    rows = AutoAction.objects.all()
    if outcome:
        if outcome not in AutoOutcome.values:
            raise HttpError(422, f"outcome must be one of {', '.join(AutoOutcome.values)}")
        rows = rows.filter(outcome=outcome)
    return list(rows[:max(1, min(limit, 500))])


@router.get("/reports/performance")
def performance(request, window: str = "24h", format: str = "json",  # noqa: A002
                host: int | None = None):
    """avg/min/max/p95 latency, TTFT, tokens/s, uptime %, errors and throughput per backend
    and agent, with the host each backend is on; `host` keeps one fleet host's backends
    and agents; `format=csv` for a spreadsheet."""
    need(request, "dashboard.view")
    chosen = found(Host.objects, "host", pk=host) if host is not None else None
    rows = queries.performance(_window(window), chosen)
    if format == "csv":
        response = HttpResponse(queries.performance_csv(rows), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="performance-{window}.csv"'
        return response
    if format != "json":
        raise HttpError(422, "format must be json or csv")
    return {"window": window, "rows": rows}


class MonitorSettings(Schema):
    probe_interval_s: int


@router.get("/monitor/settings", response=MonitorSettings)
def get_monitor_settings(request):
    need(request, "dashboard.view")
    from monitoring.worker import probe_interval

    return {"probe_interval_s": probe_interval()}


@router.put("/monitor/settings", response={200: MonitorSettings, 422: dict})
def put_monitor_settings(request, payload: MonitorSettings):
    need(request, "alerts.manage")
    return set_probe_interval(Actor.from_request(request), payload.probe_interval_s)


def set_probe_interval(actor: Actor, seconds: Any) -> dict[str, int]:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 5 <= seconds <= 3600:
        raise Invalid({"probe_interval_s": ["Seconds from 5 to 3600."]})
    from monitoring.worker import probe_interval

    with transaction.atomic():
        before = probe_interval()
        State.objects.update_or_create(key="probe_interval_s", defaults={"value": seconds})
        audit.record(AuditAction.MONITOR_SETTINGS_CHANGED, actor,
                     before={"probe_interval_s": before}, after={"probe_interval_s": seconds})
    return {"probe_interval_s": seconds}



# -- the fleet ---------------------------------------------------------------------------

class HostIn(Schema):
    name: Any = None
    address: Any = None
    labels: Any = None
    enabled: Any = None
    targets: Any = None
    backend_ids: Any = None


def _host(pk: int) -> Host:
    return found(Host.objects.prefetch_related("targets"), "host", pk=pk)


@router.get("/hosts", response=list[dict], tags=["fleet"])
def list_hosts(request):
    """Every fleet host: status (up, degraded, down, unknown) and why, each exporter's last
    scrape and error, the latest CPU, memory, disk and per-GPU values, its backends."""
    need(request, "hosts.view")
    hosts = list(Host.objects.prefetch_related("targets"))
    owned = fleet.backends_of(hosts)
    return [fleet.host_dict(h, owned[h.pk]) for h in hosts]


@router.post("/hosts", response={201: dict, 403: dict, 422: dict}, tags=["fleet"])
def create_host(request, payload: HostIn):
    """`{name, address, labels?: {site, rack, …}, targets: [{kind: node_exporter |
    dcgm_exporter | nvidia_gpu_exporter | jetson | prometheus, url}], backend_ids?}` →
    the host. Its backends are those whose URL names its address, and `backend_ids`
    (those on it under another name). The monitor scrapes each target once per probe
    interval."""
    need(request, "hosts.change")
    host = fleet.create_host(Actor.from_request(request), given(request))
    return Status(201, fleet.host_dict(_host(host.pk)))


@router.get("/hosts/{pk}", response=dict, tags=["fleet"])
def get_host(request, pk: int):
    need(request, "hosts.view")
    return fleet.host_dict(_host(pk))


@router.patch("/hosts/{pk}", response={200: dict, 403: dict, 422: dict}, tags=["fleet"])
def update_host(request, pk: int, payload: HostIn):
    """Any of the fields; `targets` given replaces the list."""
    need(request, "hosts.change")
    host = fleet.update_host(Actor.from_request(request), _host(pk), given(request))
    return fleet.host_dict(_host(host.pk))


@router.delete("/hosts/{pk}", response={204: None, 403: dict}, tags=["fleet"])
def delete_host(request, pk: int):
    need(request, "hosts.change")
    fleet.delete_host(Actor.from_request(request), _host(pk))
    return Status(204, None)


@router.post("/hosts/{pk}/test", response={200: dict, 403: dict}, tags=["fleet"])
def test_host(request, pk: int):
    """Each exporter scraped once, now: whether it answered, in how long, how many metric
    families, the readings it gives and their values."""
    need(request, "hosts.change")
    return {"targets": fleet.test_host(Actor.from_request(request), _host(pk))}


@router.get("/prometheus/targets", response=list[dict], tags=["fleet"])
def prometheus_targets(request):
    """Prometheus `http_sd_configs`: every host's exporters, every llama-server and vLLM
    backend's /metrics and Tanglaw's own /metrics, with labels (host, site, backend,
    kind) and each target's scheme and path."""
    need(request, "hosts.view")
    return fleet.prometheus_targets(request.get_host(), request.scheme)
