"""Alert notifications: deliveries to each channel (monitoring.notifiers), retried.

Deliveries are rows (one per alert event and channel). The worker claims due
rows with a conditional UPDATE, so two monitors never send the same one; a
failure is stored with its error and retried at 30 s, 1, 2, 4 min, then
given up — at once, marked `permanent`, when the notifier says a retry cannot
succeed (a 404 or 410 from a hook, a mailbox that does not exist, a channel
misconfigured). One channel failing never holds up another. In-app
notification is the alerts list itself (no delivery needed).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from monitoring.models import Delivery
from monitoring.notifiers import NotifierError, sender

log = logging.getLogger("tanglaw.monitor")

MAX_ATTEMPTS = 5
BASE_DELAY_S = 30
TIMEOUT_S = 10.0


def deliver(one: Delivery) -> bool:
    """Try once. Stores the outcome on the row and schedules a retry on failure."""
    now = timezone.now()
    one.attempts += 1
    failure: NotifierError | None = None
    try:
        sender(one.channel.kind)(one.channel, one.event)
    except NotifierError as exc:
        failure = exc
    except Exception as exc:  # noqa: BLE001 - a notifier's bug fails its channel, not the rest
        log.exception("the %s notifier failed unexpectedly", one.channel.kind)
        failure = NotifierError(f"{type(exc).__name__}: {exc}")
    if failure is None:
        one.delivered_at, one.error, one.next_attempt_at = now, "", None
    else:
        one.permanent = failure.permanent
        kind = "permanent failure, not retried" if failure.permanent else "failed"
        one.error = f"attempt {one.attempts} ({kind}): {failure.message}"[:1000]
        one.next_attempt_at = (
            now + timedelta(seconds=BASE_DELAY_S * 2 ** (one.attempts - 1))
            if one.attempts < MAX_ATTEMPTS and not failure.permanent else None)
    one.claimed_by, one.claimed_until = "", None
    one.save()
    return failure is None


def run_due(worker: str, limit: int = 50) -> dict[str, int]:
    """Claim and send every delivery that is due. Safe with several monitors running."""
    now = timezone.now()
    # a channel turned off takes nothing more, queued retries included
    due = list(Delivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now,
                                       channel__enabled=True)
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
