"""The tamper-evident audit log: append, verify, export.

Each event stores its sequence number, the SHA-256 of its canonical JSON and
the previous event's hash. Appends are serialised (SQLite's IMMEDIATE
transactions; a transaction-scoped advisory lock on PostgreSQL) so the chain
never forks, whatever the number of processes.

Signed statements of the chain's head are kept twice: as checkpoint rows (the
first event, then every TANGLAW_AUDIT_CHECKPOINT_EVERY) and, after commit, in
the heads file outside the database (console.audit_heads), which is what
catches a truncated tail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from console import audit_heads
from console.choices import AuditAction, Outcome
from console.clientaddr import client_ip
from console.models import AuditCheckpoint, AuditEvent
from console.redact import redact

log = logging.getLogger(__name__)
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


def _label(target: Any) -> str:
    """How an event names its target. Models whose str() carries what users wrote (a
    conversation's title is its first message) name themselves by `audit_label`."""
    if target is None:
        return ""
    label = getattr(target, "audit_label", None)
    return str(label if label is not None else target)[:200]


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
    return record_many([{"action": action, "actor": actor, "target": target,
                         "target_type": target_type, "target_id": target_id,
                         "before": before, "after": after, "outcome": outcome,
                         "detail": detail}])[0]


def record_many(events: Sequence[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events, in order, in one transaction: each a dict of `record`'s
    arguments (action and actor required). Writers of many small events (the gateway's
    one per request) append them in batches, off the request path."""
    for item in events:
        if item["action"] not in AuditAction.values:
            raise ValueError(f"unknown audit action {item['action']!r}")
    appended: list[AuditEvent] = []
    if not events:
        return appended
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
        seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
        for item in events:
            actor: Actor = item["actor"]
            target = item.get("target")
            target_type, target_id = item.get("target_type", ""), item.get("target_id", "")
            if target is not None:
                target_type = target_type or target._meta.label_lower
                target_id = target_id or target.pk
            seq += 1
            event = AuditEvent(
                seq=seq,
                ts=timezone.now(),
                actor_id=actor.user_id,
                actor=actor.username,
                role=actor.role,
                ip=actor.ip,
                user_agent=actor.user_agent,
                action=str(item["action"]),
                target_type=target_type,
                target_id=str(target_id or ""),
                target_repr=_label(target),
                before=_jsonable(item.get("before")),
                after=_jsonable(item.get("after")),
                outcome=str(item.get("outcome", Outcome.SUCCESS)),
                detail=redact(item.get("detail", ""))[:2000],
                correlation_id=actor.correlation_id,
                prev_hash=prev,
            )
            event.hash = compute_hash(event)
            event.save(force_insert=True)
            # from the first event: a young chain rewritten whole is caught too
            if event.seq == 1 or event.seq % settings.TANGLAW_AUDIT_CHECKPOINT_EVERY == 0:
                _write_checkpoint(event)
            prev = event.hash
            appended.append(event)
        head_seq, head = seq, prev
        transaction.on_commit(lambda: _head_committed(head_seq, head))
    return appended


def sign(seq: int, head: str, ts: str) -> str:
    return audit_heads.signature(settings.TANGLAW_AUDIT_KEY, seq, head, ts)


def _heads_file() -> Path:
    return Path(settings.TANGLAW_AUDIT_HEADS_FILE)


def _head_committed(seq: int, head: str) -> None:
    """After commit (no file I/O while the chain is locked): record the head when due,
    by count or because the last one, from any process, is older than the interval."""
    if seq != 1 and seq % settings.TANGLAW_AUDIT_HEAD_EVERY:
        age = audit_heads.age_s(_heads_file(), time.time())
        if age is not None and age < settings.TANGLAW_AUDIT_HEAD_INTERVAL_S:
            return
    _append_head(seq, head)


def _append_head(seq: int, head: str) -> None:
    # the event is committed whatever happens here; a missing head shows as a gap in the
    # file, never as a failed request
    try:
        audit_heads.append(_heads_file(), settings.TANGLAW_AUDIT_KEY, seq, head)
    except OSError:
        log.exception("could not record audit head #%s in %s", seq, _heads_file())


def record_quiet_head() -> int | None:
    """For the monitor's tick: when no head was recorded for the interval and the log has
    grown since the last one, record its newest event, so a tail written just after a
    head does not stay unrecorded until the next event. The seq recorded, or None."""
    path = _heads_file()
    age = audit_heads.age_s(path, time.time())
    if age is not None and age < settings.TANGLAW_AUDIT_HEAD_INTERVAL_S:
        return None
    newest = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
    if newest is None or newest.seq <= (audit_heads.last_seq(path) or 0):
        return None
    _append_head(newest.seq, newest.hash)
    return newest.seq


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
    """Sign the chain head now (on demand; also made every N events), in the database and,
    after commit, in the heads file."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").first()
        if last is None:
            return None
        made = _write_checkpoint(last)
        transaction.on_commit(lambda: _append_head(made.seq, made.hash))
        return made


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""
    heads: int = 0  # heads from the heads file(s) that matched the database


class _Broken(Exception):
    def __init__(self, first_bad: int | None, reason: str):
        super().__init__(reason)
        self.first_bad, self.reason = first_bad, reason


@dataclass(frozen=True)
class _Head:
    """A signed "the chain up to #seq ends in hash", from a checkpoint row or a file."""

    seq: int
    hash: str
    source: str


def verify(batch: int = 2000, also_heads: Sequence[Path] = ()) -> VerifyResult:
    """Walk the whole chain in order; report the first broken sequence number. Then check
    the signed heads — checkpoint rows, the heads file and any copies of it given (one a
    syslog server kept, say) — so a chain rewritten from scratch (every hash recomputed),
    removed checkpoints and a database that ends before a recorded head are detected."""
    # what was recorded is read before the walk: every head and checkpoint read is of an
    # event committed by then, so events written during the walk cannot look missing
    checkpoints = list(AuditCheckpoint.objects.order_by("seq"))
    files = [(path, list(audit_heads.read(path))) for path in [_heads_file(), *also_heads]]
    result = _verify_chain(batch)
    if not result.ok:
        return result
    first = AuditEvent.objects.order_by("seq").only("seq", "prev_hash").first()
    last = first.seq + result.checked - 1 if first else 0
    for cp in checkpoints:
        stamp = cp.ts.astimezone(UTC).isoformat(timespec="microseconds")
        if not hmac.compare_digest(sign(cp.seq, cp.hash, stamp), cp.signature):
            return VerifyResult(False, result.checked, cp.seq,
                                f"checkpoint #{cp.seq} is not signed with this site's "
                                f"audit key")
    start = first.seq if first else 1
    try:
        from_files = _file_heads(files)
        _against_heads([_Head(cp.seq, cp.hash, "a signed checkpoint") for cp in checkpoints]
                       + from_files, first, last)
        _missing_checkpoint(start, last, {cp.seq for cp in checkpoints})
    except _Broken as broken:
        return VerifyResult(False, result.checked, broken.first_bad, broken.reason)
    result.heads = sum(1 for head in from_files if head.seq >= start)
    return result


def _file_heads(files: list[tuple[Path, list[tuple[int, dict[str, Any] | None]]]],
                ) -> list[_Head]:
    key = settings.TANGLAW_AUDIT_KEY
    heads = []
    for path, lines in files:
        source = f"the heads file {path}"
        for number, head in lines:
            if head is None:
                raise _Broken(None, f"line {number} of {source} is not a signed head")
            if not audit_heads.signed_by(key, head):
                raise _Broken(head["seq"], f"line {number} of {source} (#{head['seq']}) is "
                                           f"not signed with this site's audit key")
            heads.append(_Head(head["seq"], head["hash"], source))
    return heads


def _against_heads(heads: list[_Head], first: AuditEvent | None, last: int) -> None:
    """Broken when the database ends before a head or an event no longer has the hash a
    head records; heads of pruned events are checked up to the anchor."""
    if not heads:
        return
    furthest = max(heads, key=lambda head: head.seq)
    if furthest.seq > last:
        ends = f"the database ends at #{last}" if last else "the database has no events"
        gap = (f"event #{last + 1} is missing" if furthest.seq == last + 1
               else f"events #{last + 1}–#{furthest.seq} are missing")
        raise _Broken(last + 1, f"{ends} but {furthest.source} records #{furthest.seq}; "
                                f"{gap}")
    start = first.seq if first else 1
    wanted = sorted({head.seq for head in heads if head.seq >= start})
    hashes: dict[int, str] = {}
    for i in range(0, len(wanted), 500):  # SQLite caps the parameters of one query
        hashes.update(AuditEvent.objects.filter(seq__in=wanted[i:i + 500])
                      .values_list("seq", "hash"))
    if first is not None and start > 1:
        hashes[start - 1] = first.prev_hash  # the anchor an audit.pruned event vouches for
    for head in sorted(heads, key=lambda head: head.seq):
        if head.seq in hashes and hashes[head.seq] != head.hash:
            raise _Broken(head.seq, f"the chain was rewritten: event #{head.seq} no longer "
                                    f"matches what {head.source} records")


def _missing_checkpoint(first: int, last: int, present: set[int]) -> None:
    """Broken at the first multiple of TANGLAW_AUDIT_CHECKPOINT_EVERY in first..last that
    has no row. (#1's own is not required: logs begun before it was made have none.)"""
    every = settings.TANGLAW_AUDIT_CHECKPOINT_EVERY
    for seq in range(every * ((first + every - 1) // every), last + 1, every):
        if seq not in present:
            raise _Broken(seq, f"the signed checkpoint for event #{seq} is missing")


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
