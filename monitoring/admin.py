"""Monitoring in the Django admin: browse only (changes go through the audited actions)."""

from django.contrib import admin

from console.admin import ReadOnlyAdmin as ReadOnly
from monitoring.models import (
    Alert,
    AlertEvent,
    AlertRule,
    Channel,
    Delivery,
    Heartbeat,
    Lease,
    Recommendation,
    Rollup,
    Sample,
)


@admin.register(Sample)
class SampleAdmin(ReadOnly):
    list_display = ["ts", "metric", "scope", "value"]
    list_filter = ["metric"]
    search_fields = ["scope"]
    show_full_result_count = False  # millions of rows: no COUNT(*) per page


@admin.register(Rollup)
class RollupAdmin(ReadOnly):
    list_display = ["bucket", "tier", "metric", "scope", "count", "min", "max"]
    list_filter = ["tier", "metric"]
    show_full_result_count = False


@admin.register(AlertRule)
class AlertRuleAdmin(ReadOnly):
    list_display = ["name", "metric", "scope", "comparator", "threshold", "severity", "enabled"]


@admin.register(Alert)
class AlertAdmin(ReadOnly):
    list_display = ["rule", "scope", "state", "value", "started_at", "resolved_at"]
    list_filter = ["state", "rule"]


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnly):
    list_display = ["alert", "state", "ts", "by"]


@admin.register(Channel)
class ChannelAdmin(ReadOnly):
    list_display = ["name", "kind", "target", "min_severity", "enabled"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = ["event", "channel", "attempts", "delivered_at", "permanent", "error"]


@admin.register(Recommendation)
class RecommendationAdmin(ReadOnly):
    list_display = ["title", "severity", "state", "updated_at"]
    list_filter = ["state", "rule"]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnly):
    list_display = ["worker", "seen_at", "last_round_at", "rounds"]


@admin.register(Lease)
class LeaseAdmin(ReadOnly):
    list_display = ["name", "owner", "until"]
