"""A circuit breaker per backend on the chat path: stop hammering a dead backend.

closed: every turn may use the backend; each failure before or during a reply
counts, a success resets the count. After TANGLAW_BREAKER_FAILURES failures in
a row it opens: turns skip it (to their fallbacks) or fail at once with the
reason, without a request. After TANGLAW_BREAKER_COOLDOWN_S one turn is let
through (half-open); its success closes the breaker, its failure opens it again.
State lives on the Backend row, so every worker sees the same breaker, and
changes are conditional updates, so only one worker gets the half-open trial.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from console import audit, generation
from console.audit import Actor
from console.choices import AuditAction
from console.models import Backend

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def allows(backend: Backend) -> bool:
    """May a turn use this backend now? Claims the half-open trial when it is due."""
    if backend.breaker_state == CLOSED:
        return True
    due = timezone.now() - timedelta(seconds=settings.TANGLAW_BREAKER_COOLDOWN_S)
    # open and cooled down, or a half-open trial that never reported back
    claimed = Backend.objects.filter(pk=backend.pk, breaker_opened_at__lte=due).filter(
        Q(breaker_state=OPEN) | Q(breaker_state=HALF_OPEN)).update(
        breaker_state=HALF_OPEN, breaker_opened_at=timezone.now())
    if claimed:
        backend.breaker_state = HALF_OPEN
        generation.bump()  # workers keep the state on their cached rows (agents.blueprints)
    return bool(claimed)


def why_not(backend: Backend) -> str:
    return (f"{backend.name}'s circuit breaker is open after {backend.breaker_failures} "
            f"failures in a row; Tanglaw tries it again "
            f"{settings.TANGLAW_BREAKER_COOLDOWN_S} s after it opened")


def record(backend_id: int, ok: bool) -> None:
    backend = Backend.objects.filter(pk=backend_id).first()
    if backend is None:
        return
    if ok:
        if backend.breaker_state != CLOSED or backend.breaker_failures:
            changed = Backend.objects.filter(pk=backend_id).exclude(
                breaker_state=CLOSED, breaker_failures=0).update(
                breaker_state=CLOSED, breaker_failures=0, breaker_opened_at=None)
            if changed:
                generation.bump()
            if changed and backend.breaker_state != CLOSED:
                audit.record(AuditAction.BREAKER_CLOSED, Actor.system("breaker"),
                             target=backend)
        return
    Backend.objects.filter(pk=backend_id).update(breaker_failures=F("breaker_failures") + 1)
    backend.refresh_from_db(fields=["breaker_state", "breaker_failures"])
    if backend.breaker_state == HALF_OPEN or (
            backend.breaker_state == CLOSED
            and backend.breaker_failures >= settings.TANGLAW_BREAKER_FAILURES):
        opened = Backend.objects.filter(pk=backend_id).exclude(breaker_state=OPEN).update(
            breaker_state=OPEN, breaker_opened_at=timezone.now())
        if opened:
            generation.bump()
            audit.record(AuditAction.BREAKER_OPENED, Actor.system("breaker"), target=backend,
                         after={"failures": backend.breaker_failures})
