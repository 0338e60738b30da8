"""Traces in the Django admin: browse only (spans arrive over OTLP and from the turns)."""

from django.contrib import admin

from console.admin import ReadOnlyAdmin as ReadOnly
from traces.models import ExternalAgent, Span, Trace


@admin.register(Trace)
class TraceAdmin(ReadOnly):
    list_display = ["started_at", "name", "agent", "service", "status", "duration_ms",
                    "span_count", "external"]
    list_filter = ["status", "external"]
    search_fields = ["trace_id", "agent", "service"]
    show_full_result_count = False  # many rows: no COUNT(*) per page


@admin.register(Span)
class SpanAdmin(ReadOnly):
    list_display = ["name", "trace_id", "operation", "status", "duration_ms", "service"]
    list_filter = ["status", "operation"]
    search_fields = ["trace_id", "span_id"]
    show_full_result_count = False


@admin.register(ExternalAgent)
class ExternalAgentAdmin(ReadOnly):
    list_display = ["name", "service", "first_seen", "last_seen"]
    search_fields = ["name", "service"]
