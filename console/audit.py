"""The tamper-evident audit log: append, verify, export.

Each event stores its sequence number, the SHA-256 of its canonical JSON and
the previous event's hash. Appends are serialised (SQLite's IMMEDIATE
transactions; a transaction-scoped advisory lock on PostgreSQL) so the chain
never forks, whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from console.choices import AuditAction, Outcome
from console.models import AuditCheckpoint, AuditEvent
from console.redact import redact

GENESIS = "0" * 64
_PG_LOCK_ID = 0x7A6E_6C61  # arbitrary, constant: "the audit chain"

HASHED_FIELDS = (
    "seq", "ts", "actor_id", "actor", "role", "ip", "user_agent", "action",
    "target_type", "target_id", "target_repr", "before", "after", "outcome",
    "detail", "correlation_id", "prev_hash",
)


@dataclass(frozen=True)
class Actor:
    """Who did it, from where. Built from a request, or `Actor.system()`."""

    user_id: int | None = None
    username: str = ""
    role: str = ""
    ip: str | None = None
    user_agent: str = ""
    correlation_id: str = ""

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(username=name, role="system")

    @classmethod
    def from_request(cls, request, user=None) -> Actor:
        user = user if user is not None else getattr(request, "user", None)
        authenticated = bool(user is not None and user.is_authenticated)
        return cls(
            user_id=user.pk if authenticated else None,
            username=user.get_username() if authenticated else "",
            role=user.effective_role if authenticated else "",
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
            correlation_id=getattr(request, "correlation_id", ""),
        )


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(redact(value), default=str))


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str).encode()


def event_fields(event: AuditEvent) -> dict[str, Any]:
    fields = {name: getattr(event, name) for name in HASHED_FIELDS}
    fields["ts"] = event.ts.astimezone(UTC).isoformat(timespec="microseconds")
    return fields


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event_fields(event))).hexdigest()


def record(
    action: AuditAction | str,
    actor: Actor,
    *,
    target: Any = None,
    target_type: str = "",
    target_id: Any = "",
    before: Any = None,
    after: Any = None,
    outcome: Outcome | str = Outcome.SUCCESS,
    detail: str = "",
) -> AuditEvent:
    """Append one event. Secrets in before/after/detail are masked first."""
    if action not in AuditAction.values:
        raise ValueError(f"unknown audit action {action!r}")
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
        event = AuditEvent(
            seq=(last.seq + 1) if last else 1,
            ts=timezone.now(),
            actor_id=actor.user_id,
            actor=actor.username,
            role=actor.role,
            ip=actor.ip,
            user_agent=actor.user_agent,
            action=str(action),
            target_type=target_type,
            target_id=str(target_id or ""),
            target_repr=str(target)[:200] if target is not None else "",
            before=_jsonable(before),
            after=_jsonable(after),
            outcome=str(outcome),
            detail=redact(detail)[:2000],
            correlation_id=actor.correlation_id,
            prev_hash=last.hash if last else GENESIS,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
        if event.seq % settings.TANGLAW_AUDIT_CHECKPOINT_EVERY == 0:
            _write_checkpoint(event)
    return event


def sign(seq: int, head: str, ts: str) -> str:
    key = settings.TANGLAW_AUDIT_KEY.encode()
    return hmac.new(key, f"{seq}:{head}:{ts}".encode(), hashlib.sha256).hexdigest()


def signed_statement(seq: int, head: str) -> dict[str, Any]:
    """{seq, hash, ts, signature}: "the chain up to #seq ends in hash", signed now."""
    stamp = timezone.now().astimezone(UTC).isoformat(timespec="microseconds")
    return {"seq": seq, "hash": head, "ts": stamp, "signature": sign(seq, head, stamp)}


def _write_checkpoint(event: AuditEvent) -> AuditCheckpoint:
    ts = timezone.now()
    stamp = ts.astimezone(UTC).isoformat(timespec="microseconds")
    checkpoint, _ = AuditCheckpoint.objects.get_or_create(
        seq=event.seq, defaults={"hash": event.hash, "ts": ts,
                                 "signature": sign(event.seq, event.hash, stamp)})
    return checkpoint


def checkpoint() -> AuditCheckpoint | None:
    """Sign the chain head now (on demand; also made every N events)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").first()
        return _write_checkpoint(last) if last else None


def _checkpoint_problem(cp: AuditCheckpoint, hashes: dict[int, str]) -> str:
    stamp = cp.ts.astimezone(UTC).isoformat(timespec="microseconds")
    if not hmac.compare_digest(sign(cp.seq, cp.hash, stamp), cp.signature):
        return f"checkpoint #{cp.seq} is not signed with this site's audit key"
    if cp.seq in hashes and hashes[cp.seq] != cp.hash:
        return (f"the chain was rewritten: event #{cp.seq} no longer matches its signed "
                f"checkpoint")
    return ""


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""


def verify(batch: int = 2000) -> VerifyResult:
    """Walk the whole chain in order; report the first broken sequence number. Then check
    the signed checkpoints, so a chain rewritten from scratch (every hash recomputed) and
    removed checkpoints are detected too."""
    result = _verify_chain(batch)
    if not result.ok:
        return result
    every = settings.TANGLAW_AUDIT_CHECKPOINT_EVERY
    checkpoints = {cp.seq: cp for cp in AuditCheckpoint.objects.all()}
    wanted = list(checkpoints)
    hashes = dict(AuditEvent.objects.filter(seq__in=wanted).values_list("seq", "hash"))
    for seq in sorted(checkpoints):
        problem = _checkpoint_problem(checkpoints[seq], hashes)
        if problem:
            return VerifyResult(False, result.checked, seq, problem)
    first = AuditEvent.objects.order_by("seq").values_list("seq", flat=True).first() or 1
    for seq in range(every * ((first + every - 1) // every), result.checked + first, every):
        if seq < first:
            continue
        if seq and seq not in checkpoints:
            return VerifyResult(False, result.checked, seq,
                                f"the signed checkpoint for event #{seq} is missing")
    return result


def _start_of_chain() -> tuple[int, str] | VerifyResult:
    """Where the chain starts: #1 after the genesis hash, or — after pruning — the event
    after the one an `audit.pruned` event anchors (its hash is the next one's prev_hash)."""
    first = AuditEvent.objects.order_by("seq").only("seq", "prev_hash").first()
    if first is None or first.seq == 1:
        return 1, GENESIS
    for pruned in AuditEvent.objects.filter(action=AuditAction.AUDIT_PRUNED).order_by("-seq"):
        after = pruned.after or {}
        if after.get("up_to_seq") == first.seq - 1 and after.get("anchor_hash") == \
                first.prev_hash:
            return first.seq, first.prev_hash
    return VerifyResult(False, 0, 1, f"events #1–#{first.seq - 1} are missing and no "
                                     f"audit.pruned event accounts for them")


def _verify_chain(batch: int) -> VerifyResult:
    start = _start_of_chain()
    if isinstance(start, VerifyResult):
        return start
    expected_seq, prev_hash = start
    checked = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch):
        if event.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq,
                                f"event #{expected_seq} is missing (next is #{event.seq})")
        if event.prev_hash != prev_hash:
            return VerifyResult(False, checked, event.seq,
                                f"event #{event.seq} does not link to the event before it")
        if compute_hash(event) != event.hash:
            return VerifyResult(False, checked, event.seq,
                                f"event #{event.seq} was changed after it was written")
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    return VerifyResult(True, checked)


EXPORT_FIELDS = ("seq", "ts", "actor", "role", "ip", "user_agent", "action", "target_type",
                 "target_id", "target_repr", "outcome", "detail", "correlation_id",
                 "before", "after", "prev_hash", "hash")


def export_rows(queryset) -> Iterator[dict[str, Any]]:
    for event in queryset.order_by("seq").iterator(chunk_size=2000):
        row = {name: getattr(event, name) for name in EXPORT_FIELDS}
        row["ts"] = event.ts.isoformat()
        yield row


def prune(actor: Actor, up_to_seq: int, export_path: Path) -> dict[str, Any]:
    """Retention: export events up to #up_to_seq (JSONL, ending in a signed checkpoint) to a
    new file, then delete them, appending an `audit.pruned` event that anchors what remains.
    Refuses when the log does not verify, when the file exists, or to prune everything."""
    from console.actions import Refused
    from console.audit_schema import statements

    result = verify()
    if not result.ok:
        raise Refused(f"the audit log does not verify ({result.reason}); not pruning")
    first = AuditEvent.objects.order_by("seq").values_list("seq", flat=True).first()
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    if first is None or up_to_seq < first:
        raise Refused(f"nothing to prune up to #{up_to_seq}")
    if last is None or up_to_seq >= last:
        raise Refused("keep at least the newest event: prune up to an earlier one")
    anchor = AuditEvent.objects.get(seq=up_to_seq)
    digest = hashlib.sha256()
    count = 0
    try:
        handle = export_path.open("x", encoding="utf-8")
    except FileExistsError:
        raise Refused(f"{export_path} exists; export to a new file") from None
    with handle:
        rows = AuditEvent.objects.filter(seq__gte=first, seq__lte=up_to_seq)
        for row in export_rows(rows):
            line = json.dumps(row, default=str, ensure_ascii=False) + "\n"
            handle.write(line)
            digest.update(line.encode())
            count += 1
        closing = json.dumps({"checkpoint": signed_statement(up_to_seq, anchor.hash)})
        handle.write(closing + "\n")
        digest.update((closing + "\n").encode())
    with transaction.atomic():
        with connection.cursor() as cursor:
            for statement in statements(connection.vendor, drop=True):
                cursor.execute(statement)
            AuditEvent.objects.filter(seq__lte=up_to_seq).delete()
            AuditCheckpoint.objects.filter(seq__lte=up_to_seq).delete()
            for statement in statements(connection.vendor):
                cursor.execute(statement)
        summary = {"up_to_seq": up_to_seq, "anchor_hash": anchor.hash, "events": count,
                   "export": export_path.name, "export_sha256": digest.hexdigest()}
        record(AuditAction.AUDIT_PRUNED, actor, after=summary)
    return summary
