"""Notification channels: validated and audited. The in-app list needs no channel."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction, Outcome
from console.urlsafety import UnsafeURL, check_backend_url
from monitoring.choices import ChannelKind, Severity
from monitoring.models import Alert, AlertEvent, AlertRule, Channel

FIELDS = ("name", "kind", "target", "slack", "min_severity", "enabled")


def state(channel: Channel) -> dict[str, Any]:
    """What the audit log records of a channel: the target masked like a key."""
    return {"name": channel.name, "kind": channel.kind, "target": channel.target_display,
            "slack": channel.slack, "min_severity": channel.min_severity,
            "enabled": channel.enabled}


def _clean(data: dict[str, Any], channel: Channel | None) -> dict[str, Any]:
    """The channel's fields from `data` on top of what it has (a new one: the defaults);
    Invalid naming each bad field. A webhook URL goes through the same outbound checks as
    every address Tanglaw calls."""
    base = ({f: getattr(channel, f) for f in FIELDS} if channel else
            {"slack": False, "min_severity": Severity.WARNING, "enabled": True})
    out = {**base, **{k: v for k, v in data.items() if k in FIELDS}}
    errors: dict[str, list[str]] = {}
    name = out.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name (at most 100 characters)."]
    elif Channel.objects.filter(name=name).exclude(pk=channel.pk if channel else -1).exists():
        errors["name"] = [f"A channel named {name} already exists."]
    kind = out.get("kind")
    if channel is not None and kind != channel.kind:
        errors["kind"] = ["A channel keeps its kind: add a new channel for another kind."]
    raw = out.get("target")
    target = raw.strip() if isinstance(raw, str) else ""
    if channel is not None and "target" not in data:
        target = channel.target  # unchanged: the stored (unmasked) value
    elif kind == ChannelKind.WEBHOOK:
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
    elif "kind" not in errors:
        errors["kind"] = ["webhook or email"]
    if out.get("min_severity") not in Severity.values:
        errors["min_severity"] = [f"One of {', '.join(Severity.values)}."]
    for flag in ("slack", "enabled"):
        if not isinstance(out.get(flag), bool):
            errors[flag] = ["true or false"]
    if errors:
        raise Invalid(errors)
    return {"name": name, "kind": kind, "target": target, "slack": out["slack"],
            "min_severity": out["min_severity"], "enabled": out["enabled"]}


def create_channel(actor: Actor, data: dict[str, Any]) -> Channel:
    fields = _clean(data, None)
    with transaction.atomic():
        channel = Channel.objects.create(**fields)
        audit.record(AuditAction.CHANNEL_CREATED, actor, target=channel, after=state(channel))
    return channel


def update_channel(actor: Actor, channel: Channel, data: dict[str, Any]) -> Channel:
    """Rename, enable or disable, change its target, severity or payload."""
    fields = _clean(data, channel)
    with transaction.atomic():
        before = state(channel)
        for key, value in fields.items():
            setattr(channel, key, value)
        channel.save()
        after = state(channel)
        if after != before or "target" in data:
            audit.record(AuditAction.CHANNEL_UPDATED, actor, target=channel, before=before,
                         after=after)
    return channel


def delete_channel(actor: Actor, channel: Channel) -> None:
    """Gone with its delivery history (alerts themselves stay in the in-app list)."""
    with transaction.atomic():
        before, pk = state(channel), channel.pk
        channel.delete()
        audit.record(AuditAction.CHANNEL_DELETED, actor, target_type="monitoring.channel",
                     target_id=pk, before=before)


def test_channel(actor: Actor, channel: Channel) -> tuple[bool, str]:
    """Send a test notification now, through the channel's own notifier (so a test that
    passes means real alerts arrive), and say what happened. Nothing is stored but the
    audit event; a disabled channel can be tested too (before it is turned on)."""
    from monitoring.notifiers import NotifierError, sender

    now = timezone.now()
    rule = AlertRule(name="Test notification", metric="test", scope="test",
                     severity=channel.min_severity)
    alert = Alert(rule=rule, scope="test", message=f"A test notification from Tanglaw to the "
                                                   f"channel {channel.name}, sent by "
                                                   f"{actor.username or 'the system'}.",
                  started_at=now)
    event = AlertEvent(alert=alert, state="test", ts=now, reason="test")
    try:
        sender(channel.kind)(channel, event)
    except NotifierError as exc:
        ok, said = False, exc.message
    except Exception as exc:  # noqa: BLE001 - a notifier's bug is this test's answer
        ok, said = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, said = True, ("the webhook accepted it" if channel.kind == ChannelKind.WEBHOOK
                          else "the mail server accepted it")
    audit.record(AuditAction.CHANNEL_TESTED, actor, target=channel,
                 after={"name": channel.name, "ok": ok},
                 outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
                 # what failed, without the answer's body (the page shows that to the
                 # operator who asked; the log is read by every role)
                 detail="" if ok else said.split(": ", 1)[0][:200])
    return ok, said
