"""The monitoring step of the overview's first-run checklist (console.first_run)."""

from __future__ import annotations

from django.urls import reverse

from console.first_run import Step
from monitoring.models import Channel


def steps(request) -> list[Step]:
    return [Step("Add an alert channel", Channel.objects.exists(), reverse("alert_list"),
                 "Alerts", "a webhook or email for when a backend goes down")]
