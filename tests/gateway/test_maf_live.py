"""Microsoft Agent Framework agents, written as MAF's docs show, through the gateway in
the real console (Daphne): the Chat Completions client and the Responses client, each
with a Python @tool, streamed, against a backend and against `agent/<slug>`; and the
same against the real llama-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.console_server import GatewayConsole
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, tool_whole, usage

pytestmark = pytest.mark.slow

CALLS: list[str] = []


def get_weather(city: str) -> str:
    """Get the weather for a city."""
    CALLS.append(city)
    return f"It is sunny in {city}."


@pytest.fixture(scope="module")
def scripted_backend():
    server = ScriptedOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, scripted_backend):
    data = tmp_path_factory.mktemp("maf") / "data"
    server = GatewayConsole(data, TANGLAW_GATEWAY_FLUSH_S="0.2").start()
    try:
        yield server.prepare(
            {"name": "local", "kind": "openai_compatible", "base_url": scripted_backend.url},
            {"name": "Weather Desk", "model": "scripted-1",
             "system_prompt": "You are the weather desk."})
    finally:
        server.stop()


def maf_agent(client_class, base_url: str, key: str, model: str):
    from agent_framework import Agent, tool

    client = client_class(base_url=base_url, api_key=key, model=model)
    return Agent(client=client, name="weather", instructions="Use the tools.",
                 tools=[tool(get_weather)])


async def streamed(agent, prompt: str) -> str:
    return "".join([update.text async for update in agent.run(prompt, stream=True)])


@pytest.mark.parametrize("client_name", ["OpenAIChatCompletionClient", "OpenAIChatClient"])
@pytest.mark.parametrize("model", ["local/scripted-1", "agent/weather-desk"])
def test_a_maf_agent_with_a_python_tool_streams_through_the_gateway(
        gateway, scripted_backend, client_name, model):
    import agent_framework_openai

    scripted_backend.requests.clear()
    scripted_backend.add(tool_whole("call_w", "get_weather", '{"city": "Cebu"}'),
                         finish("tool_calls"), usage(40, 8))
    scripted_backend.add(text("Sunny ", "in Cebu."), finish(), usage(60, 4))
    CALLS.clear()
    agent = maf_agent(getattr(agent_framework_openai, client_name), gateway.url + "/v1",
                      gateway.key, model)
    reply = asyncio.run(streamed(agent, "Weather in Cebu?"))
    assert reply == "Sunny in Cebu."
    assert CALLS == ["Cebu"]  # MAF ran its own Python tool, the gateway handed it back
    first, second = scripted_backend.requests
    assert "get_weather" in {t["function"]["name"] for t in first["tools"]}
    assert second["messages"][-1]["role"] == "tool"
    assert "sunny in Cebu" in second["messages"][-1]["content"]
    if model.startswith("agent/"):  # Tanglaw's prompt first, MAF's instructions after
        assert first["messages"][0] == {"role": "system",
                                        "content": "You are the weather desk."}
        assert first["messages"][1]["content"] == "Use the tools."

    # the traffic is on the audit log (the records are written within a moment)
    endpoint = "responses" if client_name == "OpenAIChatClient" else "chat.completions"
    deadline, mine = time.monotonic() + 10, []
    while time.monotonic() < deadline:
        items = gateway.admin.get("/api/audit", params={
            "action": "gateway.request", "limit": 200}).json()["items"]
        mine = [e for e in items if e["after"]["model"] == model
                and e["after"]["endpoint"] == endpoint]
        if len(mine) >= 2:
            break
        time.sleep(0.3)
    assert len(mine) == 2 and all(e["after"]["status"] == 200 for e in mine), mine


@pytest.mark.engine
def test_a_maf_agent_on_the_real_llama_server(gateway, llama_server):
    import agent_framework_openai

    made = gateway.admin.post("/api/backends", headers=gateway.csrf, json={
        "name": "llama", "kind": "llamacpp", "base_url": llama_server.url})
    assert made.status_code in (201, 422), made.text  # made once per module
    for client_class in (agent_framework_openai.OpenAIChatCompletionClient,
                         agent_framework_openai.OpenAIChatClient):
        from agent_framework import Agent, tool

        client = client_class(base_url=gateway.url + "/v1", api_key=gateway.key,
                              model="llama/tiny")
        agent = Agent(client=client, name="edge", instructions="Be brief.",
                      tools=[tool(get_weather)], default_options={"max_tokens": 8})
        reply = asyncio.run(streamed(agent, "hello"))
        assert reply  # the random model writes text; the tool rides along unused
    # both runs are on the Usage page's API and the audit log
    deadline, row = time.monotonic() + 10, None
    while time.monotonic() < deadline:
        groups = gateway.admin.get("/api/gateway/usage", params={
            "window": "24h", "group": "model"}).json()["groups"]
        row = next((g for g in groups if g["key"] == "llama/tiny"), None)
        if row and row["requests"] >= 2:
            break
        time.sleep(0.3)
    assert row is not None and row["requests"] == 2 and row["tokens_out"] > 0, groups
    events = gateway.admin.get("/api/audit", params={"action": "gateway.request",
                                                     "limit": 200}).json()["items"]
    assert {e["after"]["endpoint"] for e in events if e["after"]["model"] == "llama/tiny"} \
        == {"chat.completions", "responses"}
