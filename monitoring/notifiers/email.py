"""Email through Django's mail settings (EMAIL_HOST etc.); the body is the alert as JSON."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.mail import send_mail

from monitoring.notifiers.message import headline, payload


def send(channel, event) -> None:
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    send_mail(subject=headline(event)[:150], message=json.dumps(payload(event), indent=2),
              from_email=settings.TANGLAW_ALERT_EMAIL_FROM, recipient_list=recipients)
