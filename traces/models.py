"""Traces and their spans (OpenTelemetry, GenAI semantic conventions), from code-first
agents over OTLP and from Tanglaw's own turns, and the external agents they name.

Spans are rows with their attributes and events as JSON; a Trace row is the summary the
list page reads, kept current as spans arrive in any order (traces.store). Spans point
at their trace by its hex id, not a foreign key: a child may arrive before its trace.
"""

from __future__ import annotations

from django.db import models

from traces.choices import SpanKind, SpanStatus


class Trace(models.Model):
    """One trace: what its spans add up to (time, agent, model, tokens, status)."""

    trace_id = models.CharField(max_length=32, unique=True)  # 32 hex digits
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    # the root span's name, or the earliest span's until the root arrives
    name = models.CharField(max_length=200, default="")
    has_root = models.BooleanField(default=False)
    service = models.CharField(max_length=200, default="")
    # gen_ai.agent.name (a Tanglaw agent's name for its own turns), else service.name
    agent = models.CharField(max_length=200, default="")
    # whose name `agent` is: 0 none, 1 Tanglaw's, 3 an external step's, 4 an external root's
    agent_rank = models.PositiveSmallIntegerField(default=0)
    agent_id = models.IntegerField(null=True, blank=True)  # a Tanglaw agent
    external = models.BooleanField(default=False)  # spans came from outside (OTLP)
    status = models.CharField(max_length=8, choices=SpanStatus.choices,
                              default=SpanStatus.UNSET)
    model = models.CharField(max_length=200, default="")
    tokens_in = models.IntegerField(default=0)
    tokens_out = models.IntegerField(default=0)
    # model calls' usage from each side, {"own": [in, out], "external": [in, out]}: the
    # tokens above are the caller's when it sent spans of its own (one call, counted once)
    usage = models.JSONField(default=dict)
    span_count = models.IntegerField(default=0)
    error_count = models.IntegerField(default=0)
    external_errors = models.IntegerField(default=0)  # failed spans a sender reported
    conversation_id = models.IntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=64, default="", blank=True)  # a gateway request

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # trace list: newest first, keyset-paged on (started_at, id)
            models.Index(fields=["-started_at", "-id"], name="traces_trace_started"),
            # trace list filtered by agent (and the agents page's last-seen)
            models.Index(fields=["agent", "-started_at"], name="traces_trace_agent"),
            # trace list filtered by status (errors first look)
            models.Index(fields=["status", "-started_at"], name="traces_trace_status"),
            # conversation page: its turns' traces; gateway usage: a request's trace
            models.Index(fields=["conversation_id"], name="traces_trace_conversation"),
            models.Index(fields=["request_id"], name="traces_trace_request"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.trace_id} ({self.trace_id[:8]})"


class Span(models.Model):
    """One span as it arrived (content attributes only where the sender and the operator
    allowed them; traces.content)."""

    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_id = models.CharField(max_length=16, default="", blank=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=SpanKind.choices, default=SpanKind.INTERNAL)
    start_ns = models.BigIntegerField()  # Unix epoch nanoseconds, as OTLP sends them
    end_ns = models.BigIntegerField()
    duration_ms = models.FloatField(default=0)
    status = models.CharField(max_length=8, choices=SpanStatus.choices,
                              default=SpanStatus.UNSET)
    status_message = models.CharField(max_length=500, default="", blank=True)
    service = models.CharField(max_length=200, default="")
    scope = models.CharField(max_length=200, default="", blank=True)  # instrumentation scope
    operation = models.CharField(max_length=64, default="", blank=True)  # gen_ai.operation.name
    agent = models.CharField(max_length=200, default="", blank=True)  # gen_ai.agent.name
    model = models.CharField(max_length=200, default="", blank=True)
    tokens_in = models.IntegerField(null=True, blank=True)
    tokens_out = models.IntegerField(null=True, blank=True)
    external = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    resource = models.JSONField(default=dict)
    links = models.JSONField(default=list)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["start_ns", "id"]
        constraints = [
            # a retried export sends the same span twice: stored once
            models.UniqueConstraint(fields=["trace_id", "span_id"], name="traces_span_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.span_id})"


class ExternalAgent(models.Model):
    """An agent Tanglaw does not run that reports its spans here, named by
    gen_ai.agent.name (or service.name); monitoring charts and alerts it like ours."""

    name = models.CharField(max_length=200, unique=True)
    service = models.CharField(max_length=200, default="", blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
