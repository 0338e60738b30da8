"""The real Microsoft Agent Framework reporting into the real console (Daphne, monitor
running) over OTLP, as MAF's docs set it up: a streamed run against the real
llama-server directly, and through the gateway with the traceparent propagated (one
trace: MAF's spans and Tanglaw's); a run whose Python tool raises, three times, makes
the external agent's error-rate rule fire, and its traffic is on its chart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.console_server import GatewayConsole
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, tool_whole, usage

pytestmark = [pytest.mark.slow, pytest.mark.engine]
CLIENT = Path(__file__).with_name("maf_otel_client.py")


@pytest.fixture(scope="module")
def scripted_backend():
    server = ScriptedOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory, scripted_backend, llama_server):
    data = tmp_path_factory.mktemp("maf-otel") / "data"
    server = GatewayConsole(data, TANGLAW_TRACE_FLUSH_S="0.2", TANGLAW_GATEWAY_FLUSH_S="0.2",
                            TANGLAW_PROBE_INTERVAL_S="2").start()
    try:
        server.prepare({"name": "local", "kind": "openai_compatible",
                        "base_url": scripted_backend.url},
                       {"name": "Weather Desk", "model": "scripted-1"})
        made = server.admin.post("/api/backends", headers=server.csrf, json={
            "name": "llama", "kind": "llamacpp", "base_url": llama_server.url})
        assert made.status_code == 201, made.text
        yield server
    finally:
        server.stop()


def maf(console, base_url: str, model: str, name: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, str(CLIENT), "--console", console.url, "--key", console.key,
         "--base-url", base_url, "--model", model, "--name", name, *flags],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def wait_for(fetch, ready, timeout: float = 30):
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        value = fetch()
        if ready(value):
            return value
        time.sleep(0.3)
    raise AssertionError(f"not ready in {timeout}s: {value}")


def traces_of(console, agent: str) -> list[dict]:
    return console.admin.get("/api/traces", params={"agent": agent}).json()["items"]


def spans_of(console, trace_id: str) -> list[dict]:
    return console.admin.get(f"/api/traces/{trace_id}").json()["spans"]


def test_a_maf_agent_on_the_real_llama_server_reports_its_trace(console, llama_server):
    maf(console, llama_server.url + "/v1", "tiny", "edge-direct")
    listed = wait_for(lambda: traces_of(console, "edge-direct"), lambda t: t)
    trace = listed[0]
    assert trace["external"] and trace["service"] == "maf-tests"
    spans = wait_for(lambda: spans_of(console, trace["trace_id"]),
                     lambda s: any(x["name"] == "invoke_agent edge-direct" for x in s))
    names = {s["name"] for s in spans}
    assert {"invoke_agent edge-direct", "chat tiny"} <= names
    chat = next(s for s in spans if s["name"] == "chat tiny")
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
    # the admin's key has no content switch on: MAF sent the messages, Tanglaw dropped them
    assert "gen_ai.input.messages" not in chat["attributes"]
    agents = console.admin.get("/api/external-agents").json()
    assert "edge-direct" in {a["name"] for a in agents}


def test_through_the_gateway_maf_and_tanglaw_spans_join_one_trace(console):
    maf(console, console.url + "/v1", "llama/tiny", "edge-gateway", "--propagate")
    trace = wait_for(lambda: traces_of(console, "edge-gateway"), lambda t: t)[0]
    spans = wait_for(lambda: spans_of(console, trace["trace_id"]),
                     lambda s: {"maf-tests", "tanglaw"} <= {x["service"] for x in s}
                     and any(x["name"].startswith("invoke_agent") for x in s))
    maf_chat = next(s for s in spans if s["service"] == "maf-tests"
                    and s["name"] == "chat llama/tiny")
    ours = [s for s in spans if s["service"] == "tanglaw"]
    server = next(s for s in ours if s["kind"] == "server")
    assert server["parent_id"] == maf_chat["span_id"]  # the traceparent MAF's client sent
    upstream = next(s for s in ours if s["kind"] == "client")
    assert upstream["parent_id"] == server["span_id"] and upstream["name"] == "chat tiny"
    assert upstream["attributes"]["tanglaw.backend"] == "llama/tiny"
    # usage rows are written in batches off the request path (TANGLAW_GATEWAY_FLUSH_S),
    # apart from the spans: wait for them as for the spans
    wait_for(lambda: console.admin.get("/api/gateway/usage", params={
        "window": "24h", "group": "model"}).json(),
        lambda rows: any(g["key"] == "llama/tiny" for g in rows["groups"]))


def test_a_tool_that_raises_fires_the_external_agents_error_rule(console, scripted_backend):
    for _ in range(3):
        scripted_backend.add(tool_whole("call_w", "get_weather", '{"city": "Cebu"}'),
                             finish("tool_calls"), usage(40, 8))
        scripted_backend.add(text("Sorry, no weather."), finish(), usage(50, 4))
    maf(console, console.url + "/v1", "local/scripted-1", "weather-bot")  # one that works
    agent = wait_for(lambda: [a for a in console.admin.get("/api/external-agents").json()
                              if a["name"] == "weather-bot"], lambda a: a)[0]
    rule = console.admin.post("/api/alert-rules", headers=console.csrf, json={
        "name": "weather-bot errors", "metric": "error_rate", "scope": f"xagent:{agent['id']}",
        "comparator": ">", "threshold": 0.3, "window_s": 600})
    assert rule.status_code == 201, rule.text
    for _ in range(2):
        maf(console, console.url + "/v1", "local/scripted-1", "weather-bot", "--raise")
    traces = wait_for(lambda: traces_of(console, "weather-bot"), lambda t: len(t) >= 3)
    failed = [t for t in traces if t["status"] == "error"]
    assert len(failed) == 2
    spans = spans_of(console, failed[0]["trace_id"])
    tool = next(s for s in spans if s["name"] == "execute_tool get_weather")
    assert tool["status"] == "error" and tool["attributes"]["error.type"] == "ValueError"
    fired = wait_for(lambda: console.admin.get("/api/alerts").json(),
                     lambda alerts: any(a["rule"] == "weather-bot errors" and
                                        a["state"] == "firing" for a in alerts), timeout=60)
    assert any(a["scope"] == f"xagent:{agent['id']}" for a in fired)
    # its traffic is on its chart (the monitor reads the spans every round)
    wait_for(lambda: console.admin.get("/api/metrics/series", params={
        "metric": "requests", "scope": f"xagent:{agent['id']}", "window": "1h"}).json(),
        lambda chart: sum(v for _, v in chart["points"] if v) == 3)
