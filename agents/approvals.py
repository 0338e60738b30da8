"""Approvals of tool calls, for every transport.

A turn that meets a tool needing approval stores an Approval row (pending, with a
deadline) and waits. The owner decides in the playground (the socket's approve/deny
frames), on the Approvals page or with `POST /api/approvals/{id}`; all of them go
through `decide`, one conditional UPDATE, so a call is decided once whoever asks
first, and the decision is audited. The waiting turn hears of a decision made in its
own process at once (a future it registered) and of one made on another worker by
looking at its row every POLL_S. A deadline that passes, or a turn that ends while
waiting, closes the row as expired or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.choices import ApprovalStatus
from agents.models import Approval, Conversation
from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction

POLL_S = 0.5  # how soon a decision made on another worker reaches the waiting turn

# approval id -> (loop, future) of the turn waiting in this process
_waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[tuple[bool, str]]]] = {}
_lock = threading.Lock()


def pending_for(user) -> Any:
    return Approval.objects.filter(owner=user, status=ApprovalStatus.PENDING,
                                   deadline__gt=timezone.now())


def create(user, conversation: Conversation, agent_name: str, call: dict[str, Any],
           transport: str, timeout_s: float) -> Approval:
    return Approval.objects.create(
        owner=user, conversation=conversation, agent_name=agent_name[:100],
        call_id=str(call["id"])[:100], tool_name=str(call["name"])[:64],
        arguments=call.get("arguments"), transport=transport,
        deadline=timezone.now() + timedelta(seconds=timeout_s))


def decide(actor: Actor, user, approval_id: int, allowed: bool) -> Approval:
    """Approve or deny a waiting call of the user's own. Raises Invalid (no such
    approval of theirs) or Refused (already decided, expired, or the turn ended)."""
    approval = Approval.objects.filter(pk=approval_id, owner=user).first()
    if approval is None:
        raise Invalid({"id": ["No such approval of yours."]})
    status = ApprovalStatus.APPROVED if allowed else ApprovalStatus.DENIED
    now = timezone.now()
    with transaction.atomic():
        changed = Approval.objects.filter(
            pk=approval.pk, status=ApprovalStatus.PENDING, deadline__gt=now).update(
            status=status, decided_at=now, decided_by=actor.username)
        if not changed:
            approval.refresh_from_db()
            if approval.status == ApprovalStatus.PENDING:
                raise Refused(f"the approval of {approval.tool_name} has expired")
            raise Refused(f"the call to {approval.tool_name} is "
                          f"{approval.get_status_display().lower()} already")
        approval.status, approval.decided_at, approval.decided_by = status, now, actor.username
        audit.record(AuditAction.TOOL_APPROVAL_DECIDED, actor, target=approval.conversation,
                     after={"approval_id": approval.pk, "tool": approval.tool_name,
                            "decision": status, "transport": approval.transport})
        transaction.on_commit(lambda: _wake(approval.pk, _decision(approval)))
    return approval


def close(approval_id: int, status: str) -> None:
    """The turn stopped waiting (deadline, or the turn ended): a row still pending says
    so, and can no longer be decided."""
    Approval.objects.filter(pk=approval_id, status=ApprovalStatus.PENDING).update(
        status=status, decided_at=timezone.now())


def _decision(approval: Approval) -> tuple[bool, str]:
    """(allowed, by): who approved, or "denied by …" (ToolCall.approved_by)."""
    if approval.status == ApprovalStatus.APPROVED:
        return True, approval.decided_by
    return False, f"denied by {approval.decided_by}"


def _wake(approval_id: int, decision: tuple[bool, str]) -> None:
    with _lock:
        waiting = _waiting.get(approval_id)
    if waiting is None:
        return  # decided for a turn on another worker: it sees the row
    loop, future = waiting

    def settle() -> None:
        if not future.done():
            future.set_result(decision)

    with contextlib.suppress(RuntimeError):  # the loop has closed: the turn is gone
        loop.call_soon_threadsafe(settle)


def _status(approval_id: int) -> Approval | None:
    return Approval.objects.filter(pk=approval_id).only(
        "status", "decided_by").first()


async def wait(approval: Approval, db: Callable[[Callable[..., Any]], Callable[..., Any]]
               ) -> tuple[bool, str]:
    """Until the call is decided (here or on another worker) or the row's deadline
    passes (expired); a cancellation (the turn stopped) closes the row as cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bool, str]] = loop.create_future()
    with _lock:
        _waiting[approval.pk] = (loop, future)
    ending = ApprovalStatus.CANCELLED
    try:
        while True:
            remaining = (approval.deadline - timezone.now()).total_seconds()
            if remaining <= 0:
                ending = ApprovalStatus.EXPIRED
                return False, "no decision before the approval's deadline"
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), min(POLL_S, remaining))
            row = await db(_status)(approval.pk)
            if row is None:
                return False, "the approval was removed"
            if row.status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED):
                return _decision(row)
            if row.status != ApprovalStatus.PENDING:
                return False, f"the approval was {row.get_status_display().lower()}"
    finally:
        with _lock:
            _waiting.pop(approval.pk, None)
        await asyncio.shield(db(close)(approval.pk, ending))
