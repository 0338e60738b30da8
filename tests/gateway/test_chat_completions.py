"""/v1/chat/completions and /v1/models through the openai SDK: pass-through to a
backend (streamed and not), agents, OpenAI-shaped errors and what is recorded."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from agents.models import Agent, Run
from console.models import ApiToken, AuditEvent, Backend
from gateway.models import Alias, Request
from tests.gateway.conftest import make_key, run, sdk
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, tool_whole, usage

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def backend(scripted):
    return Backend.objects.create(name="local", kind="openai_compatible", base_url=scripted.url)


def test_a_whole_completion_passes_through_and_is_recorded(operator_user, backend, scripted):
    scripted.add(("completion", {"role": "assistant", "content": "hello there"}))
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        return await client.chat.completions.with_raw_response.create(
            model="local/scripted-1", messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=20, temperature=0.2,
            extra_body={"api_base": "http://169.254.169.254/", "base_url": "http://evil/",
                        "mystery": 1})

    raw_response = run(main())
    completion = raw_response.parse()
    assert completion.choices[0].message.content == "hello there"
    assert float(raw_response.headers["x-tanglaw-overhead-ms"]) >= 0
    assert raw_response.headers["x-tanglaw-backend"] == "local/scripted-1"
    sent = scripted.requests[0]
    assert sent["model"] == "scripted-1" and sent["messages"] == [
        {"role": "user", "content": "hi"}]
    # routing fields and unknown fields never travel; max_completion_tokens is kept for
    # an OpenAI-compatible server
    assert not {"api_base", "base_url", "mystery"} & set(sent)
    assert sent["max_completion_tokens"] == 20 and sent["temperature"] == 0.2
    row = Request.objects.get()
    assert (row.status, row.endpoint, row.model, row.backend_id, row.upstream_model) == (
        200, "chat.completions", "local/scripted-1", backend.pk, "scripted-1")
    assert (row.tokens_in, row.tokens_out, row.usage_reported) == (20, 5, True)
    assert row.token.user == operator_user and row.stream is False
    event = AuditEvent.objects.get(action="gateway.request")
    assert event.actor == operator_user.username and event.after["status"] == 200
    assert event.correlation_id == row.request_id == raw_response.headers["x-request-id"]
    assert "content" not in event.after  # content is logged only where it was turned on


def test_a_stream_is_relayed_and_its_usage_kept_unless_asked(operator_user, backend,
                                                             scripted):
    for _ in range(2):
        scripted.add(text("Hel", "lo"), finish(), usage(7, 2))
    raw = make_key(operator_user)

    async def main(include_usage):
        client = sdk(raw)
        extra = {"stream_options": {"include_usage": True}} if include_usage else {}
        stream = await client.chat.completions.create(
            model="local/scripted-1", messages=[{"role": "user", "content": "hi"}],
            stream=True, **extra)
        return [chunk async for chunk in stream]

    plain = run(main(False))
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "Hello"
    assert all(c.usage is None for c in plain)  # not asked for: not sent
    asked = run(main(True))
    assert asked[-1].usage.prompt_tokens == 7 and asked[-1].usage.completion_tokens == 2
    # Tanglaw always asks upstream, to measure
    assert all(r["stream_options"] == {"include_usage": True} for r in scripted.requests)
    rows = list(Request.objects.order_by("pk"))
    assert [(r.stream, r.tokens_in, r.tokens_out, r.usage_reported) for r in rows] == [
        (True, 7, 2, True), (True, 7, 2, True)]
    assert all(r.ttft_ms is not None and r.total_ms >= r.ttft_ms for r in rows)


def test_errors_come_in_openai_shape_with_the_sdks_typed_exceptions(operator_user, backend,
                                                                     viewer_user):
    raw = make_key(operator_user)
    revoked = make_key(operator_user, "old", revoked_at=timezone.now())
    expired = make_key(operator_user, "expired",
                       expires_at=timezone.now() - timedelta(minutes=1))
    viewer = make_key(viewer_user)
    messages = [{"role": "user", "content": "hi"}]

    async def main():
        caught = {}
        cases = {
            "missing": (None, {"model": "local/x", "messages": messages}),
            "revoked": (revoked, {"model": "local/x", "messages": messages}),
            "expired": (expired, {"model": "local/x", "messages": messages}),
            "unknown_model": (raw, {"model": "nowhere/x", "messages": messages}),
            "n": (raw, {"model": "local/x", "messages": messages, "n": 2}),
            "messages": (raw, {"model": "local/x", "messages": []}),
            "temperature": (raw, {"model": "local/x", "messages": messages,
                                  "temperature": 9}),
            "viewer": (viewer, {"model": "local/x", "messages": messages}),
        }
        for name, (key, body) in cases.items():
            client = sdk(key)
            try:
                await client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
                caught[name] = exc
        return caught

    caught = run(main())
    assert isinstance(caught["missing"], openai.AuthenticationError)
    assert isinstance(caught["revoked"], openai.AuthenticationError)
    assert isinstance(caught["expired"], openai.AuthenticationError)
    assert isinstance(caught["unknown_model"], openai.NotFoundError)
    assert caught["unknown_model"].body["code"] == "model_not_found"
    assert isinstance(caught["n"], openai.BadRequestError) and caught["n"].body["param"] == "n"
    assert caught["messages"].body["param"] == "messages"
    assert caught["temperature"].body["param"] == "temperature"
    assert isinstance(caught["viewer"], openai.PermissionDeniedError)
    for exc in caught.values():
        assert set(exc.body) == {"message", "type", "code", "param"}
        assert "tgl_" not in json.dumps(exc.body)  # no key, not even a wrong one, echoed
    assert Request.objects.filter(status=401).count() == 3


def test_a_key_scoped_to_one_agent_sees_and_calls_only_it(operator_user, agent,
                                                          backend, scripted):
    Agent.objects.create(name="other one", backend=agent.backend, model="scripted-1")
    raw = make_key(operator_user, allowed_models=["agent/helper"])
    everything = make_key(operator_user, "all")

    async def main():
        scoped, full = sdk(raw), sdk(everything)
        seen = [m.id async for m in scoped.models.list()]
        every = [m.id async for m in full.models.list()]
        try:
            await scoped.chat.completions.create(
                model="agent/other-one", messages=[{"role": "user", "content": "hi"}])
        except openai.PermissionDeniedError as exc:
            refused = exc
        return seen, every, refused

    seen, every, refused = run(main())
    assert seen == ["agent/helper"]
    assert {"agent/helper", "agent/other-one", "local/scripted-1", "s/scripted-1"} <= set(
        every)
    assert refused.body["code"] == "model_not_allowed"


def test_requests_per_minute_are_limited_with_retry_after(operator_user, backend, scripted):
    for _ in range(3):
        scripted.add(("completion", {"role": "assistant", "content": "ok"}))
    raw = make_key(operator_user, rpm=2)

    async def main():
        client = sdk(raw)
        out = []
        for _ in range(3):
            try:
                response = await client.chat.completions.with_raw_response.create(
                    model="local/scripted-1", messages=[{"role": "user", "content": "hi"}])
                out.append(response.headers)
            except openai.RateLimitError as exc:
                out.append(exc)
        return out

    first, second, third = run(main())
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert second["x-ratelimit-remaining-requests"] == "0"
    assert isinstance(third, openai.RateLimitError)
    assert 1 <= int(third.response.headers["Retry-After"]) <= 60
    assert third.body["code"] == "rate_limit_exceeded"
    assert len(scripted.requests) == 2  # the refused one never went upstream


def test_daily_tokens_are_budgeted_and_reset_at_the_day_boundary(operator_user, backend,
                                                                  scripted):
    for _ in range(2):
        scripted.add(("completion", {"role": "assistant", "content": "ok"}))
    raw = make_key(operator_user, tokens_per_day=30)
    token = ApiToken.objects.get(name="script")

    async def ask():
        client = sdk(raw)
        try:
            return await client.chat.completions.create(
                model="local/scripted-1", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError as exc:
            return exc

    assert run(ask()).usage.total_tokens == 25
    assert run(ask()).usage.total_tokens == 25  # 25 < 30: let in, and now over
    refused = run(ask())
    assert isinstance(refused, openai.RateLimitError)
    assert refused.body["code"] == "tokens_per_day_exceeded"
    assert refused.response.headers["x-ratelimit-remaining-tokens"] == "0"
    # yesterday's requests do not count today (a fresh cache reads the stored rows)
    from django.core.cache import cache

    Request.objects.filter(token=token).update(ts=timezone.now() - timedelta(days=1, hours=1))
    cache.clear()
    scripted.add(("completion", {"role": "assistant", "content": "ok"}))
    assert run(ask()).choices[0].message.content == "ok"


def test_concurrent_requests_of_a_key_are_capped(operator_user, backend, scripted):
    scripted.add(("sleep", 1.0), text("slow"), finish())
    scripted.add(("completion", {"role": "assistant", "content": "ok"}))
    raw = make_key(operator_user, max_streams=1)

    async def main():
        import asyncio

        client = sdk(raw)

        async def slow():
            stream = await client.chat.completions.create(
                model="local/scripted-1", messages=[{"role": "user", "content": "a"}],
                stream=True)
            return [c async for c in stream]

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        try:
            await client.chat.completions.create(
                model="local/scripted-1", messages=[{"role": "user", "content": "b"}])
            second = None
        except openai.RateLimitError as exc:
            second = exc
        await task
        # the slot came back when the stream ended
        third = await client.chat.completions.create(
            model="local/scripted-1", messages=[{"role": "user", "content": "c"}])
        return second, third

    second, third = run(main())
    assert second is not None and second.body["code"] == "concurrency_limit_exceeded"
    assert third.choices[0].message.content == "ok"


def test_an_alias_falls_back_before_anything_was_relayed(operator_user, backend, scripted):
    spare_server = ScriptedOpenAI().start()
    try:
        spare = Backend.objects.create(name="spare", kind="openai_compatible",
                                       base_url=spare_server.url)
        Alias.objects.create(name="default", targets=[
            {"backend": backend.pk, "model": "scripted-1"},
            {"backend": spare.pk, "model": "scripted-1"}])
        scripted.add(("status", 503, {"error": {"message": "loading"}}))
        spare_server.add(text("from spare"), finish())
        raw = make_key(operator_user)

        async def main():
            client = sdk(raw)
            response = await client.chat.completions.with_raw_response.create(
                model="default", messages=[{"role": "user", "content": "hi"}], stream=True)
            chunks = [c async for c in response.parse()]
            return response.headers, chunks

        headers, chunks = run(main())
    finally:
        spare_server.stop()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "from spare"
    assert headers["x-tanglaw-backend"] == "spare/scripted-1"
    route = json.loads(headers["x-tanglaw-route"])
    assert route[0]["failed"] == "local/scripted-1" and "503" in route[0]["reason"]
    row = Request.objects.get()
    assert row.backend == spare and row.route[0]["failed"] == "local/scripted-1"


def test_an_agent_runs_with_its_prompt_and_returns_the_callers_tool(operator_user,
                                                                    agent, scripted):
    agent.system_prompt = "You are the helper."
    agent.save()
    scripted.add(tool_whole("call-9", "lookup_order", '{"id": "A1"}'), finish("tool_calls"))
    scripted.add(text("Order A1 ", "has shipped."), finish(), usage(30, 4))
    raw = make_key(operator_user)
    tools = [{"type": "function", "function": {
        "name": "lookup_order", "description": "find an order",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}]
    first_messages = [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Where is order A1?"}]

    async def main():
        client = sdk(raw)
        first = await client.chat.completions.create(model="agent/helper",
                                                     messages=first_messages, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        follow = [*first_messages, first.choices[0].message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'}]
        stream = await client.chat.completions.create(
            model="agent/helper", messages=follow, tools=tools, stream=True,
            stream_options={"include_usage": True})
        return first, [c async for c in stream]

    first, chunks = run(main())
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call-9", "lookup_order", '{"id": "A1"}')
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Order A1 has shipped."
    assert chunks[-1].usage.prompt_tokens == 30
    sent = scripted.requests[0]
    # the agent's prompt first, the caller's system message after it
    assert sent["messages"][:2] == [{"role": "system", "content": "You are the helper."},
                                    {"role": "system", "content": "Be brief."}]
    assert {t["function"]["name"] for t in sent["tools"]} == {"calculator", "lookup_order"}
    assert scripted.requests[1]["messages"][-1]["role"] == "tool"
    runs = list(Run.objects.order_by("pk"))
    assert [r.agent_id for r in runs] == [agent.pk, agent.pk]
    rows = list(Request.objects.order_by("pk"))
    assert [(r.agent_id, r.status) for r in rows] == [(agent.pk, 200), (agent.pk, 200)]


def test_pass_through_traffic_feeds_the_backend_and_model_charts(operator_user, backend,
                                                                  scripted):
    from monitoring import traffic
    from monitoring.models import Sample

    scripted.add(text("a", "b", "c"), finish(), usage(11, 3))
    scripted.add(("status", 500, {"error": {"message": "boom"}}))
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        stream = await client.chat.completions.create(
            model="local/scripted-1", messages=[{"role": "user", "content": "hi"}],
            stream=True)
        [c async for c in stream]
        try:
            await client.chat.completions.create(
                model="local/scripted-1", messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            return exc

    failed = run(main())
    assert failed.status_code == 502 and "boom" in failed.body["message"]
    assert traffic.ingest_gateway() == 2
    assert traffic.ingest_gateway() == 0  # incremental
    scope = f"backend:{backend.pk}"
    values = {(s.metric, s.value) for s in Sample.objects.filter(scope=scope)}
    assert ("requests", 1.0) in values and ("tokens_in", 11.0) in values
    assert ("errors", 1.0) in values and ("errors", 0.0) in values
    assert Sample.objects.filter(scope=f"model:{backend.pk}:scripted-1",
                                 metric="requests").count() == 2


def test_a_client_that_goes_away_mid_stream_closes_the_upstream(operator_user, backend,
                                                                 scripted):
    """Driven as raw ASGI: the client disconnects after the first tokens; the gateway
    stops relaying, closes its upstream connection and records the request as 499."""
    import asyncio

    from console.asgi import application

    scripted.add(text("one "), ("sleep", 0.3), text("two "), ("sleep", 0.3),
                 text("three"), finish())
    raw = make_key(operator_user)
    body = json.dumps({"model": "local/scripted-1", "stream": True,
                       "messages": [{"role": "user", "content": "count"}]}).encode()

    async def main():
        inbox: asyncio.Queue = asyncio.Queue()
        sent: list[dict] = []
        await inbox.put({"type": "http.request", "body": body, "more_body": False})

        async def receive():
            return await inbox.get()

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and b"one" in message.get("body", b""):
                await inbox.put({"type": "http.disconnect"})

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                             (b"authorization", f"Bearer {raw}".encode())],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        await asyncio.wait_for(application(scope, receive, send), 10)
        return sent

    sent = run(main())
    relayed = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"one" in relayed and b"three" not in relayed
    deadline = time.monotonic() + 5
    while scripted.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted.disconnects == 1  # the upstream stream was closed, not read to its end
    row = Request.objects.get()
    assert (row.status, row.error_code) == (499, "client_closed")
