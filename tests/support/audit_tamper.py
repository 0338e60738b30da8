"""What an attacker with write access to the database file could do to the audit log."""

from __future__ import annotations

from django.db import connection

from console import audit
from console.models import AuditEvent


def without_triggers(sql: str, params=()) -> None:
    """Drop the append-only triggers, then run the tampering statement."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER console_auditevent_no_update")
        cursor.execute("DROP TRIGGER console_auditevent_no_delete")
        cursor.execute(sql, params)


def relink() -> None:
    """Recompute every event's prev_hash and hash, so the chain alone verifies again."""
    prev = audit.GENESIS
    for event in AuditEvent.objects.order_by("seq"):
        event.prev_hash = prev
        event.hash = audit.compute_hash(event)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=event.prev_hash,
                                                      hash=event.hash)
        prev = event.hash
