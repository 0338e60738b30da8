"""Console models: users with roles, API tokens, backends, status history, audit events."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from console.choices import BackendKind, Outcome, Role, Status
from console.crypto import EncryptedTextField


class User(AbstractUser):
    """A person who signs in. Their role decides what they may see and change."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    # set for generated one-time passwords: the user must choose their own first
    must_change_password = models.BooleanField(default=False)
    # "issuer|sub" for a person who signs in with the organisation's identity provider
    # (console.sso); their role follows their groups there
    oidc_subject = models.CharField(max_length=300, unique=True, null=True, blank=True)
    # disabled by single sign-on (out of every group), not by an admin: a later sign-in
    # in a group turns it on again; an account an admin disabled stays off
    sso_suspended = models.BooleanField(default=False)

    @property
    def effective_role(self) -> str:
        return Role.ADMIN if self.is_superuser else self.role


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))

    def for_user(self, user):
        """Admins see every user's tokens (gateway.keys.manage); others their own."""
        from console.permissions import has_perm

        if not (user.is_authenticated and user.is_active):
            return self.none()
        return self if has_perm(user, "gateway.keys.manage") else self.filter(user=user)


class ApiToken(models.Model):
    """A bearer token for scripts and code-first agents (a gateway key). Only its SHA-256
    is stored; shown once at creation. Empty scopes and models and null limits mean no
    limit beyond the owner's role (a token from `create_api_token` is such a token)."""

    PREFIX = "tgl_"
    SCOPES = {"api": "the console's JSON API (/api/)",
              "inference": "models and agents through the gateway (/v1/)",
              "telemetry:write": "send traces and metrics (OTLP)"}

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="first characters, to tell tokens apart")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # what the token may do (ApiToken.SCOPES); empty: everything its owner's role allows
    scopes = models.JSONField(default=list, blank=True)
    # model names it may use through the gateway, as shell patterns (`agent/*`,
    # `llama/qwen*`, `default`); empty: every model and agent
    allowed_models = models.JSONField(default=list, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="requests per minute")
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    max_streams = models.PositiveIntegerField(
        null=True, blank=True, help_text="requests in flight at once, streamed or not")
    # prompts, replies and tool arguments in the spans this key sends (when the sender
    # put them there, e.g. MAF's enable_sensitive_data); otherwise only metadata is kept
    log_content = models.BooleanField(default=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    def allows_scope(self, scope: str) -> bool:
        return not self.scopes or scope in self.scopes

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def limits(self) -> dict:
        """What the audit log and the API show about the token's limits."""
        return {"scopes": list(self.scopes), "models": list(self.allowed_models),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "rpm": self.rpm, "tokens_per_day": self.tokens_per_day,
                "tokens_per_month": self.tokens_per_month, "max_streams": self.max_streams,
                "log_content": self.log_content}

    @staticmethod
    def digest_of(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)


class BackendQuerySet(models.QuerySet):
    def for_user(self, user):
        """Every signed-in role may read backends; anonymous users see none."""
        return self if user.is_authenticated and user.is_active else self.none()


class Backend(models.Model):
    """An inference engine Tanglaw talks to: Ollama, vLLM, llama-server, Foundry Local…"""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=BackendKind.choices)
    base_url = models.CharField(max_length=500, help_text="checked by console.urlsafety")
    api_key = EncryptedTextField(blank=True, default="")
    api_key_last4 = models.CharField(max_length=4, blank=True, default="")
    enabled = models.BooleanField(default=True)
    connect_timeout_s = models.FloatField(default=3.0)
    read_timeout_s = models.FloatField(default=60.0)
    # the monitor's optional active probe: a short completion to measure TTFT when idle
    active_probe_interval_s = models.PositiveIntegerField(
        default=0, help_text="0 = off; e.g. 300 sends an 8-token completion every 5 minutes")
    active_probe_model = models.CharField(max_length=200, blank=True, default="",
                                          help_text="blank: the first model it lists")
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # latest probe, denormalised for the list; the history is BackendStatusChange
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNKNOWN)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    version = models.CharField(max_length=100, blank=True, default="")
    latency_ms = models.FloatField(null=True, blank=True)
    model_count = models.IntegerField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    # the circuit breaker on the chat path (console.breaker): closed, open or half_open
    breaker_state = models.CharField(max_length=16, default="closed")
    breaker_failures = models.PositiveIntegerField(default=0)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)

    objects = BackendQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def api_key_set(self) -> bool:
        return bool(self.api_key_last4)

    def audit_snapshot(self) -> dict:
        """What the audit log records about a backend: never the key itself."""
        return {
            "name": self.name,
            "kind": self.kind,
            "base_url": self.base_url,
            "enabled": self.enabled,
            "api_key_set": self.api_key_set,
            "api_key_last4": self.api_key_last4,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "active_probe_interval_s": self.active_probe_interval_s,
            "active_probe_model": self.active_probe_model,
            "notes": self.notes,
        }


class BackendStatusChange(models.Model):
    """A row each time a backend's status changes (from a probe or a test)."""

    backend = models.ForeignKey(Backend, on_delete=models.CASCADE, related_name="status_changes")
    ts = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices)
    previous = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=500, blank=True, default="")
    latency_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-ts"]
        indexes = [
            models.Index(
                # backend detail: status history, newest first
                fields=["backend", "-ts"], name="console_status_backend_ts",
            )
        ]

    def __str__(self) -> str:
        return f"{self.backend_id}: {self.previous} → {self.status}"


class AuditEvent(models.Model):
    """One append-only, hash-chained record of a change or an action.

    The database refuses UPDATE and DELETE on this table (triggers in the
    migration). Actor fields are copies, not foreign keys, so deleting a user
    never has to touch the log.
    """

    seq = models.BigIntegerField(unique=True)
    ts = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True, default="")
    role = models.CharField(max_length=16, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    # the vocabulary is AuditAction, enforced by audit.record(); no DB choices, so
    # adding an action needs no migration
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    detail = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            # audit page filtered by action, keyset-paged by seq
            models.Index(fields=["action", "-seq"], name="console_audit_action_seq"),
            # audit page filtered by actor
            models.Index(fields=["actor", "-seq"], name="console_audit_actor_seq"),
            # audit page filtered by target (a backend's history)
            models.Index(fields=["target_type", "target_id", "-seq"],
                         name="console_audit_target_seq"),
            # audit page filtered by time range
            models.Index(fields=["ts"], name="console_audit_ts"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor or 'system'}"


class Job(models.Model):
    """A long model operation (a pull) with its progress; it outlives the page that started it."""

    class Kind(models.TextChoices):
        PULL = "pull", "Pull"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    backend = models.ForeignKey(Backend, on_delete=models.CASCADE, related_name="jobs")
    model = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    percent = models.FloatField(default=0)
    completed_bytes = models.BigIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    speed_bps = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True, default="")
    layers = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    # the monitor running it (console.jobs): claimed with a conditional UPDATE and held by
    # a lease it renews; a lease that ran out means the owner died
    owner = models.CharField(max_length=200, null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="retries")
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    ACTIVE = (State.QUEUED, State.RUNNING)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # one pull per model and backend at a time
            models.UniqueConstraint(fields=["backend", "model", "kind"],
                                    condition=models.Q(state__in=["queued", "running"]),
                                    name="console_job_one_active"),
        ]
        indexes = [
            # the jobs tray on every page: active jobs, newest first; also the monitor's
            # queued jobs to claim and leases to check (console.jobs)
            models.Index(fields=["state", "-created_at"], name="console_job_state"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} on {self.backend_id} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def retryable(self) -> bool:
        return self.state in (self.State.FAILED, self.State.CANCELLED)

    def frame(self) -> dict:
        """What the jobs WebSocket and the API say about it."""
        return {"type": "job", "id": self.pk, "kind": self.kind, "backend_id": self.backend_id,
                "model": self.model, "state": self.state, "percent": round(self.percent, 1),
                "completed_bytes": self.completed_bytes, "total_bytes": self.total_bytes,
                "speed_bps": self.speed_bps, "eta_s": self.eta_s, "detail": self.detail,
                "layers": self.layers, "error": self.error, "retry_of": self.retry_of_id,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}


class DeploymentPlan(models.Model):
    """A saved vLLM plan: the inputs, the commands it produced, and the backend that runs it."""

    name = models.CharField(max_length=100, unique=True)
    model = models.CharField(max_length=200)
    scenario = models.CharField(max_length=32)
    quantization = models.CharField(max_length=16, blank=True, default="")
    gpus = models.JSONField(default=list)
    command = models.TextField()
    docker_command = models.TextField()
    fits = models.BooleanField()
    warnings = models.JSONField(default=list)
    backend = models.ForeignKey(Backend, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="plans")
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelRole(models.Model):
    """What a model is for on this site: primary or secondary, and its tasks (from the
    deployment section of the site configuration; shown on the models pages)."""

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        SECONDARY = "secondary", "Secondary"

    backend = models.ForeignKey(Backend, on_delete=models.CASCADE, related_name="model_roles")
    model = models.CharField(max_length=200)
    role = models.CharField(max_length=16, choices=Role.choices)
    tasks = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["backend", "role", "model"]
        constraints = [models.UniqueConstraint(fields=["backend", "model"],
                                               name="console_modelrole_once")]

    def __str__(self) -> str:
        return f"{self.model} on {self.backend_id}: {self.role}"


class SiteSetting(models.Model):
    """Site-wide values set by the site configuration (e.g. the deployment type)."""

    key = models.CharField(max_length=64, primary_key=True)
    value = models.JSONField()

    def __str__(self) -> str:
        return self.key


class AuditCheckpoint(models.Model):
    """A signed statement "the chain up to #seq ends in hash H", made every N events and on
    demand. The HMAC key lives outside the database (TANGLAW_AUDIT_KEY / data/audit.key)."""

    seq = models.PositiveBigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    ts = models.DateTimeField(default=timezone.now)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq}"
