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


class AutoMode(models.TextChoices):
    """Per recommendation rule: what the automation does with an open recommendation."""

    SUGGEST = "suggest", "Suggest (record what it would do)"
    APPLY = "apply", "Apply automatically"


class AutoOutcome(models.TextChoices):
    WOULD = "would_do", "Would have done"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    LIMITED = "rate_limited", "Held back (rate limit)"


AUTO_OUTCOME_COLOURS: dict[str, str] = {
    AutoOutcome.WOULD: "grey", AutoOutcome.DONE: "green", AutoOutcome.FAILED: "red",
    AutoOutcome.LIMITED: "amber",
}
