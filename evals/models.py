"""Datasets: named, versioned sets of cases (input messages, an optional expected
output, checks). Every change is a new version; a case remembers the turn it came from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Dataset(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1, help_text="the current version")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_label(self) -> str:
        return f"dataset {self.name}"


class DatasetVersion(models.Model):
    """One version of a dataset: its cases and the checks every case gets, as they were."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    # [{id, messages: [{role, content}], expected?, checks: [...], source?: {...}}]
    cases = models.JSONField(default=list)
    checks = models.JSONField(default=list, help_text="checks every case gets")
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"],
                                               name="evals_dataset_version_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"


class Experiment(models.Model):
    """A dataset version run against targets: a job the monitor runs (evals.runner),
    cancelled and resumed at will; each case on each target is a CaseResult."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    name = models.CharField(max_length=200, blank=True, default="")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="experiments")
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE,
                                related_name="experiments")
    concurrency = models.PositiveSmallIntegerField(default=2)
    seed = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    detail = models.CharField(max_length=300, blank=True, default="")
    error = models.TextField(blank=True, default="")
    done = models.PositiveIntegerField(default=0, help_text="case results recorded")
    total = models.PositiveIntegerField(default=0, help_text="cases × targets")
    cancel_requested = models.BooleanField(default=False)
    owner = models.CharField(max_length=200, null=True, blank=True,
                             help_text="the monitor running it")
    lease_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"], name="evals_exp_state")]

    def __str__(self) -> str:
        return self.name or f"Experiment {self.pk}"

    @property
    def audit_label(self) -> str:
        return f"experiment {self.pk} of {self.dataset.name}"

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in self.ACTIVE


class ExperimentTarget(models.Model):
    """One agent (a model target runs as its quick agent) with its parameters, and what
    it ran on: engine, version, model file or digest, quantization, host."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="targets")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=[("agent", "agent"), ("model", "model")])
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+")
    agent_version = models.PositiveIntegerField(null=True, blank=True)
    backend = models.ForeignKey("console.Backend", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="+")
    model = models.CharField(max_length=200, blank=True, default="")
    params = models.JSONField(default=dict)
    environment = models.JSONField(default=dict)

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [models.UniqueConstraint(fields=["experiment", "position"],
                                               name="evals_target_position")]

    def __str__(self) -> str:
        return self.label


class CaseResult(models.Model):
    """What one target answered to one case, and how the checks went."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="results")
    target = models.ForeignKey(ExperimentTarget, on_delete=models.CASCADE,
                               related_name="results")
    case_id = models.CharField(max_length=64)
    position = models.PositiveIntegerField(help_text="the case's place in the dataset")
    passed = models.BooleanField(default=False)
    text = models.TextField(blank=True, default="")
    tool_calls = models.JSONField(default=list)
    checks = models.JSONField(default=list)  # [{kind, passed, detail}]
    judge = models.JSONField(null=True, blank=True)  # {score, reason, prompt, reply, error}
    error = models.TextField(blank=True, default="")
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, default="",
                             help_text="the model that answered (a fallback's, maybe)")
    conversation_id = models.IntegerField(null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["experiment", "position", "target"]
        constraints = [models.UniqueConstraint(fields=["target", "case_id"],
                                               name="evals_result_once")]

    def __str__(self) -> str:
        return f"{self.case_id} on {self.target_id}: {'passed' if self.passed else 'failed'}"


class RegressionSet(models.Model):
    """The dataset an agent's changes are checked against: saving a new version offers to
    run it, and the version pages show each version's results beside the one before.
    Kept here, not on the agent: agents knows nothing of evals."""

    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE,
                                 related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE,
                                related_name="regression_sets")
    set_by = models.CharField(max_length=150, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.dataset.name} for agent {self.agent_id}"

    @property
    def audit_label(self) -> str:
        return f"regression set of agent {self.agent_id}"
