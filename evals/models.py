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
