"""Choices for alerts, channels and recommendations."""

from django.db import models


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Comparator(models.TextChoices):
    GT = ">", "above"
    GE = ">=", "at or above"
    LT = "<", "below"
    LE = "<=", "at or below"


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"  # the condition holds, not yet for long enough
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON)"
    EMAIL = "email", "Email"


class RecState(models.TextChoices):
    OPEN = "open", "Open"
    APPLIED = "applied", "Applied"
    RESOLVED = "resolved", "Resolved"
