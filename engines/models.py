from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.models import Backend, DeploymentPlan
from engines.choices import Desired, EngineKind, EngineState


class ManagedEngine(models.Model):
    """An engine process Tanglaw runs on the console's machine (llama-server or vLLM):
    what to run, what the operator wants of it (running or stopped), and what the
    supervisor last saw. The monitor that owns it holds a lease (`worker`,
    `lease_until`) and renews it; only the owner starts, watches and stops the process."""

    name = models.CharField(max_length=100, unique=True,
                            help_text="also the name of the backend it registers")
    kind = models.CharField(max_length=16, choices=EngineKind.choices)
    command = models.CharField(max_length=500,
                               help_text="one of TANGLAW_ENGINE_COMMANDS, word for word")
    model_path = models.CharField(max_length=1000)
    host = models.CharField(max_length=64, default="127.0.0.1")
    port = models.PositiveIntegerField()
    context = models.PositiveIntegerField(null=True, blank=True)
    threads = models.PositiveIntegerField(null=True, blank=True)
    extra_args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    auto_restart = models.BooleanField(default=True)
    ready_timeout_s = models.PositiveIntegerField(default=300)
    plan = models.ForeignKey(DeploymentPlan, on_delete=models.SET_NULL, null=True,
                             blank=True, related_name="engines")
    backend = models.ForeignKey(Backend, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="managed_engines")
    desired = models.CharField(max_length=16, choices=Desired.choices,
                               default=Desired.STOPPED)
    # +1 for each restart asked for: the supervisor restarts a process of an older one
    generation = models.PositiveIntegerField(default=0)
    # what the supervisor saw
    state = models.CharField(max_length=16, choices=EngineState.choices,
                             default=EngineState.STOPPED)
    state_reason = models.CharField(max_length=500, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    hostname = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    restarts = models.PositiveIntegerField(default=0)
    last_exit_code = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    next_start_at = models.DateTimeField(null=True, blank=True)
    # the settings its process was started with (changes apply at the next start)
    running_config = models.JSONField(null=True, blank=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                # two engines on one port would fight over it: the form says which has it
                fields=["host", "port"], name="engines_engine_host_port"),
        ]
        indexes = [
            models.Index(
                # supervisor: engines wanted running whose lease ran out (to claim)
                fields=["desired", "lease_until"], name="engines_engine_desired_lease"),
        ]

    def __str__(self) -> str:
        return self.name

    def audit_snapshot(self) -> dict:
        return {"name": self.name, "kind": self.kind, "command": self.command,
                "model_path": self.model_path, "host": self.host, "port": self.port,
                "context": self.context, "threads": self.threads,
                "extra_args": list(self.extra_args), "env": dict(self.env),
                "auto_restart": self.auto_restart, "ready_timeout_s": self.ready_timeout_s,
                "plan": self.plan_id}

    @property
    def active(self) -> bool:
        """A process is (or is about to be) running."""
        return self.state in (EngineState.STARTING, EngineState.RUNNING,
                              EngineState.STOPPING, EngineState.BACKOFF)

    @property
    def changes_pending(self) -> bool:
        return self.active and self.running_config is not None \
            and self.running_config != self.audit_snapshot()

    def uptime_s(self) -> float | None:
        if self.state != EngineState.RUNNING or self.started_at is None:
            return None
        return (timezone.now() - self.started_at).total_seconds()


class EngineEvent(models.Model):
    """What happened to a managed engine: asked to start or stop, started (pid), ready,
    exited (code), restarted after a backoff, failed, stopped."""

    engine = models.ForeignKey(ManagedEngine, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=EngineState.choices)
    pid = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(
                # engine page: its latest events
                fields=["engine", "-at"], name="engines_event_engine_at"),
        ]

    def __str__(self) -> str:
        return f"{self.engine_id}: {self.state} at {self.at:%Y-%m-%d %H:%M:%S}"
