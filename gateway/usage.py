"""Each finished gateway request becomes a Request row and an audit event, written in
batches by one background thread per process (console.batch: every FLUSH_S, or sooner
when many are waiting), so a request's own path never waits for a commit.

With TANGLAW_GATEWAY_FLUSH_S = 0 (the tests) there is no thread: the request that
finished writes its record itself, after its response was sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console import audit
from console.audit import Actor
from console.batch import Batcher
from console.choices import AuditAction, Outcome
from console.models import ApiToken
from gateway import quota
from gateway.models import Request

FIELDS = ("request_id", "ts", "token_id", "user_id", "endpoint", "model", "agent_id",
          "backend_id", "upstream_model", "stream", "status", "error_code", "error",
          "ttft_ms", "total_ms", "overhead_ms", "tokens_in", "tokens_out", "usage_reported",
          "route", "trace_id")


def flush_interval() -> float:
    return float(settings.TANGLAW_GATEWAY_FLUSH_S)


def record(row: dict[str, Any]) -> bool:
    """Queue a finished request (plain values; `actor` an audit Actor, `content` only
    where content is logged). Returns True when the caller should write it now
    (no background thread: call `flush` off the event loop)."""
    if row.get("token_id") and not quota.shared_cache():
        # in memory: count it now; a shared cache (Redis) is counted by the writer thread,
        # never on the event loop
        quota.charge(row["token_id"], row.get("tokens_in", 0) + row.get("tokens_out", 0),
                     row["ts"])
    return writer.add([row])


def pending_tokens(token_id: int, since: datetime) -> int:
    with writer.lock:
        return sum(r.get("tokens_in", 0) + r.get("tokens_out", 0) for r in writer.pending
                   if r.get("token_id") == token_id and r["ts"] >= since)


def flush() -> int:
    """Write every queued record now (sync). Returns how many were written."""
    return writer.flush()


def _write(batch: list[dict[str, Any]]) -> None:
    if quota.shared_cache():
        for r in batch:
            if r.get("token_id") and not r.get("charged"):
                r["charged"] = True  # once, even when the write below is retried
                quota.charge(r["token_id"], r.get("tokens_in", 0) + r.get("tokens_out", 0),
                             r["ts"])
    rows = [Request(**{f: r.get(f) for f in FIELDS if r.get(f) is not None}) for r in batch]
    with transaction.atomic():
        Request.objects.bulk_create(rows)
        events = []
        for r, row in zip(batch, rows, strict=True):
            after = {"key": r.get("key_name", ""), "model": r["model"],
                     "endpoint": r["endpoint"], "stream": r.get("stream", False),
                     "status": r["status"], "backend_id": r.get("backend_id"),
                     "agent_id": r.get("agent_id"), "upstream_model": r.get("upstream_model"),
                     "tokens_in": r.get("tokens_in", 0), "tokens_out": r.get("tokens_out", 0),
                     "ttft_ms": r.get("ttft_ms"), "total_ms": r.get("total_ms"),
                     "overhead_ms": r.get("overhead_ms"), "request_id": r["request_id"]}
            if r.get("route"):
                after["route"] = r["route"]
            if r.get("trace_id"):
                after["trace_id"] = r["trace_id"]
            if r.get("content"):
                after["content"] = r["content"]
            ok = r["status"] < 400
            events.append({"action": AuditAction.GATEWAY_REQUEST, "actor": r["actor"],
                           "target_type": "gateway.request", "target_id": row.pk or "",
                           "after": after, "outcome": Outcome.SUCCESS if ok else (
                               Outcome.DENIED if r["status"] in (401, 403, 429)
                               else Outcome.FAILURE),
                           "detail": r.get("error", "")})
        audit.record_many(events)
        used = {r["token_id"] for r in batch if r.get("token_id")}
        if used:
            ApiToken.objects.filter(pk__in=used).update(last_used_at=timezone.now())


def actor_for(key, request, request_id: str) -> Actor:
    """Who made a gateway request: the key's owner, or nobody known (no valid key)."""
    from console.clientaddr import client_ip

    who = ({"user_id": key.user.pk, "username": key.user.username,
            "role": key.user.effective_role} if key is not None
           else {"username": "(no valid key)"})
    return Actor(ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")[:300],
                 correlation_id=request_id, **who)


# `_write` looked up at each call, so a test can stand in for it
writer = Batcher("gateway-usage", lambda batch: _write(batch), flush_interval)
