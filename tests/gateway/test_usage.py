"""The gateway's usage records: written by a background thread in batches (requests
never wait for a commit), once each, with their audit events on the same chain."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from console import audit
from console.audit import Actor
from console.models import ApiToken, AuditEvent
from gateway import usage
from gateway.models import Request
from tests.gateway.conftest import make_key

pytestmark = pytest.mark.usefixtures("live_db")


def row(token: ApiToken, n: int) -> dict:
    return {"request_id": f"r{n}", "ts": timezone.now(), "endpoint": "chat.completions",
            "model": "local/x", "status": 200, "token_id": token.pk,
            "user_id": token.user_id, "tokens_in": 3, "tokens_out": 4,
            "actor": Actor(user_id=token.user_id, username=token.user.username,
                           correlation_id=f"r{n}")}


def test_records_are_written_by_the_background_thread_in_order(operator_user, settings):
    settings.TANGLAW_GATEWAY_FLUSH_S = 0.1
    make_key(operator_user)
    token = ApiToken.objects.get()
    for n in range(30):
        assert usage.record(row(token, n)) is False  # queued: nothing for the request to do
    deadline = time.monotonic() + 10
    while Request.objects.count() < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.request_id for r in Request.objects.order_by("pk")] == [f"r{n}" for n in
                                                                     range(30)]
    events = list(AuditEvent.objects.filter(action="gateway.request").order_by("seq"))
    assert [e.correlation_id for e in events] == [f"r{n}" for n in range(30)]
    assert events[0].target_id == str(Request.objects.order_by("pk").first().pk)
    assert audit.verify().ok  # appended in batches, one chain
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert usage.flush() == 0  # nothing twice
    settings.TANGLAW_GATEWAY_FLUSH_S = 0  # the thread ends (no thread outlives its test)
    thread = usage.writer.thread
    if thread is not None:
        thread.join(5)
        assert not thread.is_alive()


def test_a_failed_write_keeps_the_records_for_the_next_try(operator_user, monkeypatch):
    make_key(operator_user)
    token = ApiToken.objects.get()
    usage.record(row(token, 1))
    calls = []
    real = usage._write

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        real(batch)

    monkeypatch.setattr(usage, "_write", flaky)
    with pytest.raises(RuntimeError):
        usage.flush()
    assert Request.objects.count() == 0
    assert usage.flush() == 1
    assert calls == [1, 1] and Request.objects.get().request_id == "r1"


def test_the_request_rate_resets_with_the_next_minute(operator_user):
    from datetime import timedelta

    from gateway import keys, quota
    from gateway.errors import GatewayError

    raw = make_key(operator_user, rpm=2)
    key = keys.lookup(raw)
    assert key is not None
    minute = timezone.now().replace(second=5, microsecond=0)
    quota.admit(key, minute)
    quota.admit(key, minute + timedelta(seconds=20))
    with pytest.raises(GatewayError) as refused:
        quota.admit(key, minute + timedelta(seconds=40))
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "15"  # to the minute's end
    admitted = quota.admit(key, minute + timedelta(seconds=60))  # the next minute
    assert admitted.headers["x-ratelimit-remaining-requests"] == "1"
