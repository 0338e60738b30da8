"""Alert notifications: one notifier per channel kind, retried with backoff.

Deliveries are rows (one per alert event and channel). The worker claims due
rows with a conditional UPDATE, so two monitors never send the same one; a
failure is stored with its error and retried at 30 s, 1, 2, 4 min, then
given up. One channel failing never holds up another. In-app notification is
the alerts list itself (no delivery needed).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from console.egress import Policy, async_transport
from console.urlsafety import UnsafeURL
from monitoring.choices import ChannelKind
from monitoring.models import Alert, AlertEvent, Channel, Delivery

MAX_ATTEMPTS = 5
BASE_DELAY_S = 30
TIMEOUT_S = 10.0


def payload(event: AlertEvent) -> dict[str, Any]:
    alert: Alert = event.alert
    return {"alert_id": alert.pk, "rule": alert.rule.name, "metric": alert.rule.metric,
            "severity": alert.rule.severity, "state": event.state, "scope": alert.scope,
            "value": alert.value, "threshold": alert.threshold, "message": alert.message,
            "started_at": alert.started_at.isoformat() if alert.started_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "at": event.ts.isoformat()}


def headline(event: AlertEvent) -> str:
    icon = {"firing": "🔴", "resolved": "✅"}.get(event.state, "•")
    return f"{icon} [{event.alert.rule.severity}] {event.state}: {event.alert.message}"


async def send_webhook(channel: Channel, event: AlertEvent) -> None:
    body = {"text": headline(event)} if channel.slack else payload(event)
    host = (urlsplit(channel.target).hostname or "").lower()
    async with httpx.AsyncClient(transport=async_transport(Policy((host,))), timeout=TIMEOUT_S,
                                 trust_env=False, follow_redirects=False) as client:
        response = await client.post(channel.target, json=body)
    if response.status_code >= 300:
        raise RuntimeError(f"HTTP {response.status_code} from {host}: {response.text[:200]}")


def send_email(channel: Channel, event: AlertEvent) -> None:
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    send_mail(subject=headline(event)[:150], message=json.dumps(payload(event), indent=2),
              from_email=settings.TANGLAW_ALERT_EMAIL_FROM, recipient_list=recipients)


def deliver(one: Delivery) -> bool:
    """Try once. Stores the outcome on the row and schedules a retry on failure."""
    now = timezone.now()
    one.attempts += 1
    try:
        if one.channel.kind == ChannelKind.WEBHOOK:
            asyncio.run(send_webhook(one.channel, one.event))
        else:
            send_email(one.channel, one.event)
    except (httpx.HTTPError, UnsafeURL, RuntimeError, OSError) as exc:
        one.error = f"attempt {one.attempts}: {type(exc).__name__}: {exc}"[:1000]
        one.next_attempt_at = (now + timedelta(seconds=BASE_DELAY_S * 2 ** (one.attempts - 1))
                               if one.attempts < MAX_ATTEMPTS else None)
        ok = False
    else:
        one.delivered_at, one.error, one.next_attempt_at, ok = now, "", None, True
    one.claimed_by, one.claimed_until = "", None
    one.save()
    return ok


def run_due(worker: str, limit: int = 50) -> dict[str, int]:
    """Claim and send every delivery that is due. Safe with several monitors running."""
    now = timezone.now()
    due = list(Delivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now)
               .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
               .values_list("pk", flat=True)[:limit])
    sent = failed = 0
    for pk in due:
        claimed = Delivery.objects.filter(pk=pk, delivered_at__isnull=True).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
            claimed_by=worker, claimed_until=now + timedelta(seconds=TIMEOUT_S * 3))
        if not claimed:
            continue  # another monitor has it
        one = Delivery.objects.select_related("channel", "event__alert__rule").get(pk=pk)
        if deliver(one):
            sent += 1
        else:
            failed += 1
    return {"sent": sent, "failed": failed}
