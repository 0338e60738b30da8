"""Email through Django's mail settings (EMAIL_HOST etc.); the body is the alert as JSON.

SMTP says itself whether to try again: 4xx replies are transient, 5xx permanent
(RFC 5321 §4.2.1).
"""

from __future__ import annotations

import json
import smtplib
import ssl

from django.conf import settings
from django.core.mail import send_mail

from monitoring.notifiers import NotifierError
from monitoring.notifiers.message import headline, payload


def send(channel, event) -> None:
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    if not recipients:
        raise NotifierError("the channel has no email addresses", permanent=True)
    try:
        send_mail(subject=headline(event)[:150], message=json.dumps(payload(event), indent=2),
                  from_email=settings.TANGLAW_ALERT_EMAIL_FROM, recipient_list=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{address}: {code} {_text(reply)}"
                            for address, (code, reply) in exc.recipients.items())
        raise NotifierError(f"the mail server refused {refused}", permanent=all(
            code >= 500 for code, _reply in exc.recipients.values())) from exc
    except smtplib.SMTPResponseException as exc:  # sender, data, auth, greeting
        raise NotifierError(f"the mail server answered {exc.smtp_code} {_text(exc.smtp_error)}",
                            permanent=exc.smtp_code >= 500) from exc
    except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
        raise NotifierError(f"the mail settings do not work with this server: {exc}",
                            permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out: may pass
        raise NotifierError(f"{type(exc).__name__}: {exc}") from exc


def _text(reply: bytes | str) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else reply)[:200]
