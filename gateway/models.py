"""The gateway's records: model aliases with their fallback chains, and one row per
request that went through /v1/ (who, what, where it went, how fast, how it ended)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Alias(models.Model):
    """A model name clients may ask for (`default`, `small`, `escalation`…) that stands
    for an ordered chain of backend+model targets: the first one that answers serves the
    request, the next ones are its fallbacks (tried only before anything was relayed)."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    # [{"backend": <id>, "model": "<model id>"}, ...], in order; checked by gateway.actions
    targets = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return self.name

    def audit_snapshot(self) -> dict:
        return {"name": self.name, "description": self.description,
                "targets": list(self.targets)}


class RequestQuerySet(models.QuerySet):
    def for_user(self, user):
        """Operators and admins see every request (usage.view_all); others the requests
        made with their own keys."""
        from console.permissions import has_perm

        if not (user.is_authenticated and user.is_active):
            return self.none()
        return self if has_perm(user, "usage.view_all") else self.filter(user=user)


class Request(models.Model):
    """One request through the gateway. Written in batches after the response ended
    (gateway.usage), never on the request's own path."""

    request_id = models.CharField(max_length=40)
    ts = models.DateTimeField(default=timezone.now, help_text="when the request arrived")
    token = models.ForeignKey("console.ApiToken", on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="gateway_requests")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                             blank=True, related_name="gateway_requests")
    endpoint = models.CharField(max_length=24)  # chat.completions | responses
    model = models.CharField(max_length=200, help_text="the model name the client asked for")
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="gateway_requests")
    backend = models.ForeignKey("console.Backend", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="gateway_requests")
    upstream_model = models.CharField(max_length=200, blank=True, default="")
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(help_text="the HTTP status returned")
    error_code = models.CharField(max_length=64, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    overhead_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    usage_reported = models.BooleanField(default=False)
    route = models.JSONField(null=True, blank=True, help_text="fallbacks tried, with reasons")
    trace_id = models.CharField(max_length=32, blank=True, default="",
                                help_text="the request's trace (traces.Trace.trace_id)")

    objects = RequestQuerySet.as_manager()

    class Meta:
        ordering = ["-ts"]
        indexes = [
            # usage page and budgets: a window of requests, newest first
            models.Index(fields=["ts"], name="gateway_request_ts"),
            # budgets (tokens today / this month) and the usage page per key
            models.Index(fields=["token", "ts"], name="gateway_request_token_ts"),
            # usage page per user
            models.Index(fields=["user", "ts"], name="gateway_request_user_ts"),
            # monitoring: pass-through traffic per backend since a cursor
            models.Index(fields=["backend", "ts"], name="gateway_request_backend_ts"),
            # usage page: find a request by its x-request-id (and its trace)
            models.Index(fields=["request_id"], name="gateway_request_request_id"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.model} ({self.status})"

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_ms is None or self.total_ms is None or not self.tokens_out:
            return None
        seconds = (self.total_ms - self.ttft_ms) / 1000
        return round(self.tokens_out / seconds, 2) if seconds > 0 else None
