"""Notification channels: validated and audited. The in-app list needs no channel."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from console.urlsafety import UnsafeURL, check_backend_url
from monitoring.choices import ChannelKind, Severity
from monitoring.models import Channel


def create_channel(actor: Actor, data: dict[str, Any]) -> Channel:
    errors: dict[str, list[str]] = {}
    name = str(data.get("name") or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name (at most 100 characters)."]
    elif Channel.objects.filter(name=name).exists():
        errors["name"] = [f"A channel named {name} already exists."]
    kind = str(data.get("kind") or "")
    target = str(data.get("target") or "").strip()
    if kind == ChannelKind.WEBHOOK:
        try:
            target = check_backend_url(target)
        except UnsafeURL as exc:
            errors["target"] = [str(exc)]
    elif kind == ChannelKind.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if not addresses or bad:
            errors["target"] = [f"Enter email addresses separated by commas"
                                f"{' (not valid: ' + ', '.join(bad) + ')' if bad else ''}."]
        target = ", ".join(addresses)
    else:
        errors["kind"] = ["webhook or email"]
    if data.get("min_severity", Severity.WARNING) not in Severity.values:
        errors["min_severity"] = [f"One of {', '.join(Severity.values)}."]
    if errors:
        raise Invalid(errors)
    with transaction.atomic():
        channel = Channel.objects.create(
            name=name, kind=kind, target=target, slack=bool(data.get("slack")),
            min_severity=data.get("min_severity", Severity.WARNING),
            enabled=bool(data.get("enabled", True)))
        audit.record(AuditAction.CHANNEL_CREATED, actor, target=channel,
                     after={"name": name, "kind": kind, "target": channel.target_display,
                            "slack": channel.slack, "min_severity": channel.min_severity})
    return channel
