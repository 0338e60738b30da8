"""Audit-log actions that are themselves audited: export and verification."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from console import audit
from console.audit import Actor, VerifyResult
from console.choices import AuditAction, Outcome


def record_export(actor: Actor, fmt: str, filters: dict) -> None:
    audit.record(AuditAction.AUDIT_EXPORTED, actor,
                 after={"format": fmt, "filters": {k: v for k, v in filters.items() if v}})


def verify_chain(actor: Actor, also_heads: Sequence[Path] = ()) -> VerifyResult:
    result = audit.verify(also_heads=also_heads)
    audit.record(AuditAction.AUDIT_VERIFIED, actor,
                 outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
                 after={"ok": result.ok, "checked": result.checked,
                        "first_bad": result.first_bad},
                 detail=result.reason)
    return result
