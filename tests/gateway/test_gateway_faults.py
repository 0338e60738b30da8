"""The gateway's refusals and failures, each with its status and OpenAI-shaped body:
a body too large (413), a disabled agent (409), a backend whose breaker is open or
that is busy (503), one that does not answer in time (504); an agent's tool waiting
for approval on the Approvals page; message text in the audit log only when turned on."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from agents.models import Approval, Tool
from console.models import AuditEvent, Backend
from gateway.models import Request
from tests.gateway.conftest import make_key, run, sdk
from tests.support.scripted_openai import finish, text, tool_whole

pytestmark = pytest.mark.usefixtures("live_db")
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def backend(scripted):
    return Backend.objects.create(name="local", kind="openai_compatible", base_url=scripted.url,
                                  read_timeout_s=1.0)


async def caught(client, **kwargs):
    try:
        await client.chat.completions.create(**kwargs)
    except openai.APIStatusError as exc:
        return exc
    raise AssertionError("no error")


def test_a_body_over_the_limit_is_a_413(operator_user, backend, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    raw = make_key(operator_user)
    exc = run(caught(sdk(raw), model="local/scripted-1",
                     messages=[{"role": "user", "content": "x" * 5000}]))
    assert exc.status_code == 413 and exc.body["code"] == "request_too_large"


def test_a_disabled_agent_is_a_409(operator_user, agent):
    agent.enabled = False
    agent.save()
    raw = make_key(operator_user)
    exc = run(caught(sdk(raw), model="agent/helper", messages=HI))
    assert isinstance(exc, openai.ConflictError) and exc.body["code"] == "agent_disabled"
    assert exc.body["param"] == "model" and "helper is disabled" in exc.body["message"]


def test_an_open_breaker_or_a_full_backend_is_a_503(operator_user, backend, scripted,
                                                   settings):
    raw = make_key(operator_user)
    Backend.objects.filter(pk=backend.pk).update(breaker_state="open",
                                                 breaker_failures=5)
    from django.utils import timezone

    Backend.objects.filter(pk=backend.pk).update(breaker_opened_at=timezone.now())
    from console import generation

    generation.bump_now()
    exc = run(caught(sdk(raw), model="local/scripted-1", messages=HI))
    assert exc.status_code == 503 and exc.body["code"] == "backend_unavailable"
    assert "circuit breaker" in exc.body["message"]
    assert scripted.requests == []  # nothing sent to a backend that is known down

    Backend.objects.filter(pk=backend.pk).update(breaker_state="closed", breaker_failures=0,
                                                 breaker_opened_at=None)
    generation.bump_now()
    settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND = 1
    scripted.add(("sleep", 0.8), text("slow"), finish())

    async def two():
        client = sdk(raw)

        async def slow():
            stream = await client.chat.completions.create(model="local/scripted-1",
                                                          messages=HI, stream=True)
            return [c async for c in stream]

        first = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        busy = await caught(client, model="local/scripted-1", messages=HI)
        await first
        return busy

    busy = run(two())
    assert busy.status_code == 503 and "generating 1 replies" in busy.body["message"]
    assert busy.response.headers["Retry-After"]


def test_a_backend_that_does_not_answer_in_time_is_a_504_and_counts_for_its_breaker(
        operator_user, backend, scripted):
    scripted.add(("sleep", 2.0), text("late"), finish())
    raw = make_key(operator_user)
    exc = run(caught(sdk(raw), model="local/scripted-1", messages=HI, stream=True))
    assert exc.status_code == 504 and exc.body["code"] == "upstream_timeout"
    backend.refresh_from_db()
    assert backend.breaker_failures == 1
    assert Request.objects.get().status == 504


def test_an_agents_tool_waits_for_approval_on_the_approvals_page(operator_user, agent,
                                                                 scripted):
    from django.test import Client

    Tool.objects.filter(name="calculator").update(requires_approval=True)
    scripted.add(tool_whole("call-1", "calculator", '{"expression": "2+2"}'),
                 finish("tool_calls"))
    scripted.add(text("it is 4"), finish())
    raw = make_key(operator_user)
    approver = Client()
    approver.force_login(operator_user)

    def approve():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = approver.get("/api/approvals").json()
            if pending:
                return pending[0], approver.post(f"/api/approvals/{pending[0]['id']}",
                                                 {"decision": "approve"},
                                                 content_type="application/json")
            time.sleep(0.05)
        raise AssertionError("no approval appeared")

    async def main():
        client = sdk(raw)
        task = asyncio.create_task(client.chat.completions.create(
            model="agent/helper", messages=[{"role": "user", "content": "2+2?"}]))
        pending, decided = await asyncio.to_thread(approve)
        return await asyncio.wait_for(task, 20), pending, decided

    completion, pending, decided = run(main())
    assert completion.choices[0].message.content == "it is 4"
    assert pending["tool"] == "calculator" and pending["transport"] == "gateway"
    assert decided.status_code == 200
    assert Approval.objects.get().status == "approved"
    assert AuditEvent.objects.filter(action="tool.called", outcome="success").exists()


@pytest.mark.parametrize("logged", [False, True])
def test_message_text_reaches_the_audit_log_only_when_turned_on(operator_user, backend,
                                                               scripted, settings, logged):
    settings.TANGLAW_GATEWAY_LOG_CONTENT = logged
    scripted.add(text("a secret ", "answer"), finish())
    raw = make_key(operator_user)

    async def main():
        stream = await sdk(raw).chat.completions.create(
            model="local/scripted-1", stream=True,
            messages=[{"role": "user", "content": "my private question"}])
        return [c async for c in stream]

    run(main())
    event = AuditEvent.objects.get(action="gateway.request")
    if logged:
        assert event.after["content"] == {"message": "my private question",
                                          "reply": "a secret answer"}
    else:
        assert "content" not in event.after
        assert "private" not in str(event.after) and "secret" not in str(event.after)
