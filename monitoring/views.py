"""Monitoring pages: live panels on the overview and backend pages, host and GPU charts,
alerts and their rules, recommendations and the performance report."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid, Refused
from console.audit import Actor
from console.models import Backend
from console.permissions import has_perm, require
from console.safeinput import small_int
from monitoring import advisor, alerts, automation, channels, fleet, queries, store
from monitoring.api import set_probe_interval
from monitoring.choices import (
    AUTO_OUTCOME_COLOURS,
    AlertState,
    AutoMode,
    ChannelKind,
    Comparator,
    RecState,
    Severity,
)
from monitoring.models import (
    Alert,
    AlertRule,
    AutoAction,
    Channel,
    Host,
    Recommendation,
    State,
)

START_HINT = "start it with `make run` (which starts it beside the web server) or " \
             "`.venv/bin/python manage.py monitor`"


@require("dashboard.view")
def overview_panel(request):
    """The overview's live part (htmx polls it): host, GPUs, alerts, advice, traffic."""
    health = queries.health()
    return render(request, "monitoring/overview_panel.html", {
        "health": health, "start_hint": START_HINT,
        "firing": Alert.objects.select_related("rule").filter(
            state=AlertState.FIRING).order_by("-started_at")[:5],
        "recommendations": Recommendation.objects.filter(state=RecState.OPEN)[:3]})


@require("dashboard.view")
def backend_panel(request, pk: int):
    backend = get_object_or_404(Backend, pk=pk)
    return render(request, "monitoring/backend_panel.html", {
        "backend": backend, "scope": f"backend:{pk}",
        "uptime_24h": queries.uptime([pk], timedelta(hours=24))[pk],
        "uptime_7d": queries.uptime([pk], timedelta(days=7))[pk],
        "history": backend.status_changes.all()[:15],
        "stats": {m: store.window_stats(m, f"backend:{pk}", 3600)
                  for m in ("ttft_ms", "latency_ms", "tokens_per_s")},
        "windows": list(store.WINDOWS)})


@require("dashboard.view")
@require_http_methods(["GET", "POST"])
def host(request):
    """CPU, memory, disk, GPUs (or why there are none), processes, the probe interval."""
    if request.method == "POST":
        if not has_perm(request.user, "alerts.manage"):
            raise PermissionDenied("Your role may not change the monitor's settings.")
        try:
            value = int(request.POST.get("probe_interval_s", ""))
        except ValueError:
            value = -1
        try:
            set_probe_interval(Actor.from_request(request), value)
        except Invalid as exc:
            messages.error(request, " ".join(exc.errors["probe_interval_s"]))
        else:
            messages.success(request, f"Backends are now probed every {value} s.")
        return redirect("monitoring_host")
    from monitoring.worker import probe_interval

    gpu = queries.gpu_state()
    for device in gpu.get("devices", []):
        device["scope"] = f"gpu:{device['index']}"  # this machine's GPUs
    processes = State.objects.filter(key__startswith="gpu_processes:").first()
    return render(request, "monitoring/host.html", {
        "health": queries.health(), "gpu": gpu, "windows": list(store.WINDOWS),
        "gpu_processes": processes.value if processes else [],
        "probe_interval": probe_interval(), "start_hint": START_HINT,
        "backends": Backend.objects.filter(enabled=True)})


@require("dashboard.view")
@require_http_methods(["GET", "POST"])
def alert_list(request):
    state = request.GET.get("state", "")
    rows = Alert.objects.select_related("rule").exclude(state=AlertState.PENDING)
    if state in AlertState.values:
        rows = rows.filter(state=state)
    host, on_host = fleet.host_filter(request.GET.get("host", ""))
    if on_host is not None:
        rows = rows.filter(on_host)
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "alerts.manage"):
            raise PermissionDenied("Your role may not change alert rules.")
        form = request.POST
        ident = form.get("rule", "")
        pk = small_int(ident, max_digits=19)
        if ident and pk is None:
            raise Http404("no such alert rule")
        rule = get_object_or_404(AlertRule, pk=pk) if ident else None
        try:
            data = {"name": form.get("name", ""), "metric": form.get("metric", ""),
                    "scope": form.get("scope", ""), "comparator": form.get("comparator", ""),
                    "threshold": float(form.get("threshold", "")),
                    "for_s": int(form.get("for_s") or 0),
                    "window_s": int(form.get("window_s") or 0),
                    "severity": form.get("severity", ""), "enabled": "enabled" in form}
            if rule is None:
                data["for_samples"] = 0
            saved = alerts.save_rule(Actor.from_request(request), data, rule)
        except ValueError:
            errors = {"threshold": ["Threshold, for and window must be numbers."]}
        except Invalid as exc:
            errors = exc.errors
        else:
            messages.success(request, f"Saved the rule {saved.name}.")
            return redirect("alert_list")
    return render(request, "monitoring/alerts.html", {
        "alerts": rows.order_by("-pending_since")[:200], "state": state,
        "hosts": Host.objects.all(), "host": host,
        "states": [s for s in AlertState.choices if s[0] != AlertState.PENDING],
        "rules": AlertRule.objects.all(), "channels": Channel.objects.all(),
        "metrics": alerts.METRICS, "comparators": Comparator.choices,
        "severities": Severity.choices, "channel_kinds": ChannelKind.choices,
        "errors": errors, "posted": request.POST if errors else _prefill(request)})


def _prefill(request) -> dict[str, str] | None:
    """A new rule's metric and scope from a link (a gateway key's "Alert" link), or the
    rule being edited (?edit=ID)."""
    wanted = small_int(request.GET.get("edit"))
    if wanted is not None:
        rule = AlertRule.objects.filter(pk=wanted).first()
        if rule is not None:
            return {"rule": str(rule.pk), "name": rule.name, "metric": rule.metric,
                    "scope": rule.scope, "comparator": rule.comparator,
                    "threshold": f"{rule.threshold:.15g}", "window_s": str(rule.window_s),
                    "for_s": str(rule.for_s), "severity": rule.severity,
                    "enabled": "on" if rule.enabled else ""}
    wanted_fields = {k: request.GET[k][:100] for k in ("name", "metric", "scope",
                                                       "threshold", "window_s")
                     if k in request.GET}
    return {**wanted_fields, "enabled": "on"} if wanted_fields else None


@require("alerts.manage")
@require_POST
def alert_ack(request, pk: int):
    alert = get_object_or_404(Alert, pk=pk)
    try:
        alerts.acknowledge(Actor.from_request(request), alert)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Acknowledged: {alert.message}")
    return redirect("alert_list")


@require("alerts.manage")
@require_POST
def rule_delete(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    alerts.delete_rule(Actor.from_request(request), rule)
    messages.success(request, f"Deleted the rule {rule.name}.")
    return redirect("alert_list")


@require("alerts.manage")
@require_POST
def rule_enabled(request, pk: int):
    """Turn a rule on or off (its open alerts end when it goes off)."""
    rule = get_object_or_404(AlertRule, pk=pk)
    on = request.POST.get("enabled") == "on"
    try:
        alerts.save_rule(Actor.from_request(request), {"enabled": on}, rule)
    except Invalid as exc:  # the rule's stored scope names something since deleted
        messages.error(request, f"{rule.name} cannot be saved as it is: {exc.messages} Edit "
                                f"it, or delete it.")
    else:
        messages.success(request, f"{'Enabled' if on else 'Disabled'} the rule {rule.name}.")
    return redirect("alert_list")


@require("alerts.manage")
@require_POST
def channel_create(request):
    form = request.POST
    try:
        channel = channels.create_channel(Actor.from_request(request), {
            "name": form.get("name", ""), "kind": form.get("kind", ""),
            "target": form.get("target", ""), "slack": "slack" in form,
            "min_severity": form.get("min_severity", "warning")})
    except Invalid as exc:
        messages.error(request, f"Channel not added: {exc}")
    else:
        messages.success(request, f"Alerts now go to {channel.name} too.")
    return redirect(reverse("alert_list") + "#channels")


@require("alerts.manage")
@require_POST
def channel_update(request, pk: int):
    """Enable or disable a channel, or change the severity it receives from."""
    channel = get_object_or_404(Channel, pk=pk)
    form = request.POST
    changes: dict = {}
    if "enabled" in form:
        changes["enabled"] = form["enabled"] == "on"
    if "min_severity" in form:
        changes["min_severity"] = form["min_severity"]
    try:
        channels.update_channel(Actor.from_request(request), channel, changes)
    except Invalid as exc:
        messages.error(request, f"{channel.name} not changed: {exc.messages}")
    else:
        messages.success(request, f"Saved the channel {channel.name}.")
    return redirect(reverse("alert_list") + "#channels")


@require("alerts.manage")
@require_POST
def channel_delete(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    channels.delete_channel(Actor.from_request(request), channel)
    messages.success(request, f"Deleted the channel {channel.name}; alerts no longer go "
                              f"there.")
    return redirect(reverse("alert_list") + "#channels")


@require("alerts.manage")
@require_POST
def channel_test(request, pk: int):
    """Send a test notification; the page says what the channel answered."""
    channel = get_object_or_404(Channel, pk=pk)
    ok, detail = channels.test_channel(Actor.from_request(request), channel)
    if ok:
        messages.success(request, f"Test notification sent to {channel.name}: {detail}.")
    else:
        messages.error(request, f"The test notification to {channel.name} failed: {detail}")
    return redirect(reverse("alert_list") + "#channels")


@require("dashboard.view")
def recommendation_list(request):
    host, on_host = fleet.host_filter(request.GET.get("host", ""))
    rows = Recommendation.objects.filter(on_host) if on_host is not None \
        else Recommendation.objects.all()
    return render(request, "monitoring/recommendations.html", {
        "open": rows.filter(state=RecState.OPEN),
        "closed": rows.exclude(state=RecState.OPEN)[:20],
        "hosts": Host.objects.all(), "host": host,
        "policies": [{"policy": p, "description": automation.RULES[p.rule]}
                     for p in automation.policies().values()],
        "modes": AutoMode.choices,
        "auto_actions": [{"row": a, "colour": AUTO_OUTCOME_COLOURS.get(a.outcome, "grey")}
                         for a in AutoAction.objects.all()[:30]]})


@require("recommendations.apply")
@require_POST
def automation_policy(request, rule: str):
    try:
        policy = automation.set_policy(Actor.from_request(request), rule,
                                       request.POST.get("mode", ""),
                                       _int_or_none(request.POST.get("max_per_hour")))
    except Invalid as exc:
        messages.error(request, exc.messages)
    else:
        messages.success(request, f"{automation.RULES[rule]}: "
                                  f"{policy.get_mode_display().lower()}.")
    return redirect("recommendation_list")


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        raise Invalid({"max_per_hour": ["a whole number"]}) from None


@require("recommendations.apply")
@require_POST
def recommendation_apply(request, pk: int):
    rec = get_object_or_404(Recommendation, pk=pk)
    try:
        done = advisor.apply(Actor.from_request(request), rec)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect("recommendation_list")


@require("dashboard.view")
def performance(request):
    window = request.GET.get("window", "24h")
    if window not in store.WINDOWS:
        window = "24h"
    host, _ = fleet.host_filter(request.GET.get("host", ""))
    rows = queries.performance(store.WINDOWS[window], host)
    if request.GET.get("format") == "csv":
        response = HttpResponse(queries.performance_csv(rows), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="performance-{window}.csv"'
        return response
    return render(request, "monitoring/performance.html", {
        "rows": rows, "window": window, "windows": list(store.WINDOWS),
        "hosts": Host.objects.all(), "host": host, "generated": timezone.now()})
