"""What the monitor measures and decides: samples, rollups, alerts, recommendations.

Samples are (metric, scope, ts, value) with scope a short string: ``backend:3``,
``agent:7``, ``host``, ``gpu:0``. Raw samples are kept for a short window; the
worker rolls them into 1-minute and 1-hour buckets (count, sum, min, max and a
fixed-bucket histogram for percentiles) and prunes each tier on its own
schedule. Every index below is named for the query that needs it.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.crypto import EncryptedTextField
from console.redact import mask_url
from monitoring.choices import (
    AlertState,
    AutoMode,
    AutoOutcome,
    ChannelKind,
    Comparator,
    RecState,
    Severity,
)


class Sample(models.Model):
    ts = models.DateTimeField()
    metric = models.CharField(max_length=64)
    scope = models.CharField(max_length=64)
    value = models.FloatField()

    class Meta:
        indexes = [
            # charts and alert windows: one series over a time range
            models.Index(fields=["metric", "scope", "ts"], name="monitoring_sample_series"),
            # rollup and pruning: everything in a time range
            models.Index(fields=["ts"], name="monitoring_sample_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.scope}]@{self.ts:%H:%M:%S}={self.value:g}"


class Rollup(models.Model):
    """One bucket of one series at one tier (60 s or 3600 s)."""

    tier = models.PositiveIntegerField()
    bucket = models.DateTimeField()
    metric = models.CharField(max_length=64)
    scope = models.CharField(max_length=64)
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    hist = models.JSONField(default=list, help_text="counts per histogram edge")

    class Meta:
        constraints = [
            # also the chart index: one series at one tier over a time range
            models.UniqueConstraint(fields=["tier", "metric", "scope", "bucket"],
                                    name="monitoring_rollup_series"),
        ]
        indexes = [
            # pruning a tier by age
            models.Index(fields=["tier", "bucket"], name="monitoring_rollup_tier_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.scope}] {self.tier}s @{self.bucket:%Y-%m-%d %H:%M}"


class Lease(models.Model):
    """A piece of periodic work several monitors could do; one claims it per interval."""

    name = models.CharField(max_length=64, primary_key=True)
    owner = models.CharField(max_length=200, blank=True, default="")
    until = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} → {self.owner or 'nobody'}"


class Heartbeat(models.Model):
    """One row per monitor process; the UI says so when none is recent."""

    worker = models.CharField(max_length=200, unique=True)
    pid = models.PositiveIntegerField()
    hostname = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    rounds = models.PositiveIntegerField(default=0)
    last_round_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return self.worker


class State(models.Model):
    """Small durable values for the worker: cursors, the probe interval set in the UI."""

    key = models.CharField(max_length=64, primary_key=True)
    value = models.JSONField()

    def __str__(self) -> str:
        return self.key


class AlertRule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=64)
    scope = models.CharField(max_length=64, default="backends",
                             help_text="backends (every backend), backend:ID, agents, "
                                       "agent:ID, host, gpus, gpu:INDEX")
    comparator = models.CharField(max_length=2, choices=Comparator.choices, default=Comparator.GT)
    threshold = models.FloatField()
    for_s = models.PositiveIntegerField(default=0, help_text="how long it must hold first")
    for_samples = models.PositiveSmallIntegerField(
        default=0, help_text="consecutive samples that must hold (probe-driven rules)")
    window_s = models.PositiveIntegerField(default=300,
                                           help_text="the value is the mean over this window")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One rule firing for one scope, from pending to resolved."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    scope = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=AlertState.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    pending_since = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_reason = models.CharField(
        max_length=200, blank=True, default="",
        help_text="set when it resolved because its target went (deleted, disabled)")
    message = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-pending_since"]
        indexes = [
            # evaluation and the alerts page: open alerts of a rule and scope
            models.Index(fields=["rule", "scope", "state"], name="monitoring_alert_open"),
            # alerts page and API filter by state, newest first
            models.Index(fields=["state", "-pending_since"], name="monitoring_alert_state"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} [{self.scope}] {self.state}"


class AlertEvent(models.Model):
    """Each change of an alert's state; notifications are sent per event."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    ts = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=AlertState.choices)
    value = models.FloatField(null=True, blank=True)
    by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=200, blank=True, default="",
                              help_text="why, when not the measured value (target deleted…)")

    class Meta:
        ordering = ["ts", "id"]

    def __str__(self) -> str:
        return f"{self.alert_id} → {self.state}"


class Channel(models.Model):
    """Where alert changes are sent: the in-app list is always on; webhooks and email here."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    # encrypted: webhook URLs carry their token in the path (Slack, Teams, Discord)
    target = EncryptedTextField(help_text="webhook URL or email addresses")
    slack = models.BooleanField(default=False, help_text="webhook: Slack-compatible payload")
    min_severity = models.CharField(max_length=16, choices=Severity.choices,
                                    default=Severity.WARNING)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target_display(self) -> str:
        """What pages, the API and the audit log show: a webhook URL masked like a key."""
        return mask_url(self.target) if self.kind == ChannelKind.WEBHOOK else self.target


class Delivery(models.Model):
    """One notification of one alert event to one channel, with every attempt's outcome."""

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    attempts = models.PositiveSmallIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    permanent = models.BooleanField(
        default=False, help_text="failed in a way no retry can fix (a 404 from the hook, say)")
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "channel"],
                                               name="monitoring_delivery_once")]
        indexes = [
            # the worker: deliveries due now
            models.Index(fields=["delivered_at", "next_attempt_at"],
                         name="monitoring_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel}"


class Recommendation(models.Model):
    """Advice from measured data: evidence, severity and what to do; resolves by itself."""

    key = models.CharField(max_length=200, help_text="rule and scope; one open per key")
    rule = models.CharField(max_length=64)
    scope = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=200)
    action = models.TextField()
    evidence = models.JSONField(default=list)
    apply = models.JSONField(null=True, blank=True, help_text="a one-click action, if any")
    state = models.CharField(max_length=16, choices=RecState.choices, default=RecState.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["state", "key"], name="monitoring_rec_open")]

    def __str__(self) -> str:
        return self.title



class AutomationPolicy(models.Model):
    """Per recommendation rule (unload_idle, engine_failed, traffic_returned): suggest, or
    apply automatically, and at most how many automatic actions of it an hour."""

    rule = models.CharField(max_length=64, unique=True)
    mode = models.CharField(max_length=16, choices=AutoMode.choices, default=AutoMode.SUGGEST)
    max_per_hour = models.PositiveIntegerField(default=4)
    updated_by = models.CharField(max_length=150, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rule"]

    def __str__(self) -> str:
        return f"{self.rule}: {self.mode}"


class AutoAction(models.Model):
    """What the automation did for an open recommendation, or (suggest mode, the dry run)
    what it would have done: when, what, and because of which evidence."""

    at = models.DateTimeField(default=timezone.now)
    rule = models.CharField(max_length=64)
    scope = models.CharField(max_length=64)
    recommendation = models.ForeignKey(Recommendation, on_delete=models.SET_NULL, null=True,
                                       blank=True, related_name="auto_actions")
    outcome = models.CharField(max_length=16, choices=AutoOutcome.choices)
    description = models.CharField(max_length=300, help_text="what it does, in words")
    reason = models.CharField(max_length=300, help_text="the recommendation's title")
    evidence = models.JSONField(default=list)
    detail = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(
                # automation: actions of a rule in the last hour (the rate limit)
                fields=["rule", "outcome", "at"], name="monitoring_auto_rule_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.outcome}: {self.description}"


class Host(models.Model):
    """A machine of the fleet, watched through the Prometheus exporters it already runs
    (monitoring.fleet, monitoring.scrape). The console's own machine is not a row: it is
    measured locally (scope `host`); a registered host's samples have scope `host:ID`
    and its GPUs `gpu:ID/INDEX`."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "not scraped yet"
        UP = "up", "up"
        DEGRADED = "degraded", "degraded"
        DOWN = "down", "down"

    name = models.CharField(max_length=100, unique=True)
    address = models.CharField(max_length=253, help_text="its host name or IP address; "
                               "backends whose URL names it belong to it")
    labels = models.JSONField(default=dict, blank=True)  # site, rack, … (short strings)
    # backends on it besides those whose URL names its address (a DNS name, a proxy)
    backends = models.ManyToManyField("console.Backend", blank=True, related_name="+")
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.UNKNOWN)
    status_reason = models.CharField(max_length=300, blank=True, default="")
    last_scrape_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        return f"host:{self.pk}"


class HostTarget(models.Model):
    """One exporter of a host, and how its last scrape went."""

    class Kind(models.TextChoices):
        NODE_EXPORTER = "node_exporter", "node exporter (CPU, memory, disk, network)"
        DCGM_EXPORTER = "dcgm_exporter", "NVIDIA DCGM exporter (GPUs)"
        NVIDIA_GPU_EXPORTER = "nvidia_gpu_exporter", "nvidia_gpu_exporter (GeForce GPUs)"
        JETSON = "jetson", "Jetson (node exporter and tegrastats)"
        PROMETHEUS = "prometheus", "any Prometheus endpoint"

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="targets")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    url = models.CharField(max_length=500)
    last_scrape_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    error = models.CharField(max_length=300, blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)
    families = models.PositiveIntegerField(default=0, help_text="metric families it returned")
    latest = models.JSONField(default=dict, blank=True)  # the values it gave, by metric

    class Meta:
        ordering = ["host", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.url}"
