"""The gateway in the real console (Daphne) in front of the real llama-server, driven by
the openai SDK as its docs show: sync and async, streamed and not, chat and responses,
an agent, typed errors, and the traffic on the audit log and the backend's charts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import openai
import pytest

from tests.support.console_server import ROOT, GatewayConsole

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, llama_server):
    data = tmp_path_factory.mktemp("gateway") / "data"
    server = GatewayConsole(data, TANGLAW_GATEWAY_FLUSH_S="0.2").start()
    try:
        yield server.prepare(
            {"name": "llama", "kind": "llamacpp", "base_url": llama_server.url},
            {"name": "Edge Helper", "model": "tiny", "system_prompt": "You help.",
             "max_tokens": 12})
    finally:
        server.stop()


def test_the_openai_sdk_sync_and_async_through_the_gateway(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert "llama/tiny" in ids and "agent/edge-helper" in ids

    whole = client.chat.completions.with_raw_response.create(
        model="llama/tiny", messages=[{"role": "user", "content": "hello"}],
        max_completion_tokens=8)
    completion = whole.parse()
    assert completion.choices[0].message.content and completion.usage.completion_tokens == 8
    assert float(whole.headers["x-tanglaw-overhead-ms"]) < 1000

    stream = client.chat.completions.create(
        model="llama/tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == 8

    response = client.responses.create(model="llama/tiny", input="hi", max_output_tokens=8)
    assert response.status in ("completed", "incomplete") and response.output_text
    events = list(client.responses.create(model="llama/tiny", input="hi",
                                          max_output_tokens=8, stream=True))
    assert events[0].type == "response.created"
    assert any(e.type == "response.output_text.delta" for e in events)
    assert events[-1].response.usage.output_tokens == 8

    async def asynchronous():
        aclient = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key,
                                     max_retries=0)
        answers = await asyncio.gather(*(aclient.chat.completions.create(
            model="llama/tiny", messages=[{"role": "user", "content": f"q{i}"}],
            max_tokens=6) for i in range(3)))
        agent_stream = await aclient.chat.completions.create(
            model="agent/edge-helper", messages=[{"role": "user", "content": "hi"}],
            stream=True)
        agent_chunks = [c async for c in agent_stream]
        await aclient.close()
        return answers, agent_chunks

    answers, agent_chunks = asyncio.run(asynchronous())
    assert all(a.usage.completion_tokens == 6 for a in answers)
    assert "".join(c.choices[0].delta.content or "" for c in agent_chunks if c.choices)

    # a tool round trip's second half through the real engine: the caller ran its own
    # tool and sends the call and its result back (a random-weight model never calls
    # one itself: llama-server's tool-call grammar did not take with this tiny model)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}}}}]
    follow = client.chat.completions.create(model="llama/tiny", max_tokens=6, tools=tools,
                                            messages=[
        {"role": "user", "content": "weather in Cebu?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Cebu"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    assert follow.choices[0].message.content is not None

    # a key limited to one request a minute, made through the keys API
    csrf = {"X-CSRFToken": gateway.admin.cookies["csrftoken"], "Referer": gateway.url}
    limited = gateway.admin.post("/api/gateway/keys", headers=csrf,
                                 json={"name": "one-a-minute", "rpm": 1})
    assert limited.status_code == 201, limited.text
    once = openai.OpenAI(base_url=gateway.url + "/v1", api_key=limited.json()["secret"],
                         max_retries=0)
    once.chat.completions.create(model="llama/tiny", max_tokens=4,
                                 messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        once.chat.completions.create(model="llama/tiny", max_tokens=4,
                                     messages=[{"role": "user", "content": "hi"}])
    assert int(refused.value.response.headers["Retry-After"]) >= 1

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="tgl_wrong",
                      max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="llama2/none", messages=[
            {"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="llama/tiny", n=3, messages=[
            {"role": "user", "content": "hi"}])

    # the traffic is in the audit log (written in batches, within a moment)
    deadline, events_seen = time.monotonic() + 10, []
    while time.monotonic() < deadline:
        page = gateway.admin.get("/api/audit", params={"action": "gateway.request",
                                                       "limit": 100}).json()
        events_seen = page["items"]
        seen = [e["after"]["status"] for e in events_seen]
        if seen.count(200) >= 10 and {400, 404, 429} <= set(seen):
            break
        time.sleep(0.3)
    statuses = sorted(e["after"]["status"] for e in events_seen)
    assert statuses.count(200) >= 10 and {400, 404, 429} <= set(statuses), statuses
    assert all("tgl_" not in str(e) for e in events_seen)

    # on the Usage page's API, per backend and per key
    by_backend = gateway.admin.get("/api/gateway/usage", params={
        "window": "24h", "group": "backend"}).json()
    llama = next(g for g in by_backend["groups"] if g["key"] == str(gateway.backend_id))
    # 9 pass-through requests and the agent's run, which went to the same backend
    assert llama["requests"] == 10 and llama["tokens_out"] >= 7 * 5
    assert llama["ttft_p50_ms"] is not None
    page = gateway.admin.get("/gateway/usage/", params={"group": "backend"})
    assert page.status_code == 200 and "llama" in page.text

    # and, once the monitor has read it, on the backend's charts
    env = {**gateway.env, "PATH": os.environ.get("PATH", "")}
    subprocess.run([sys.executable, "manage.py", "monitor", "--once"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    series = gateway.admin.get("/api/metrics/series", params={
        "metric": "requests", "backend": gateway.backend_id, "window": "1h"})
    assert series.status_code == 200, series.text
    counted = sum(v for _, v in series.json()["points"] if v)
    assert counted >= 9, series.json()  # the pass-through requests (the agent's is a run)
