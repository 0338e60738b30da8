"""The MCP reference servers, for real: npm's server-everything over streamable HTTP and
PyPI's mcp-server-time over stdio, registered, their tools listed with schemas and called
by an agent in a chat; and the MCP conformance suite's client scenarios run against
`manage.py mcp_client`, the console's own client code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.models import Tool
from console.models import Backend
from tests.support import npm_peers
from tests.support.scripted_openai import finish, text, tool_fragments

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    server = npm_peers.EverythingServer(tmp_path_factory.mktemp("everything")).start()
    yield server
    server.stop()


def refresh(client, body) -> list[Tool]:
    created = client.post("/api/mcp-servers", data=body, content_type="application/json")
    assert created.status_code == 201, created.content
    refreshed = client.post(f"/api/mcp-servers/{created.json()['id']}/refresh")
    assert refreshed.status_code == 200, refreshed.content
    return list(Tool.objects.filter(kind="mcp", server__name=body["name"]))


def chat_with_tool(client, scripted, tool: Tool, arguments: dict) -> dict:
    Tool.objects.filter(pk=tool.pk).update(enabled=True)
    backend = Backend.objects.create(name="edge", kind="openai_compatible",
                                     base_url=scripted.url)
    agent = client.post("/api/agents", data={
        "name": "helper", "backend_id": backend.pk, "model": "scripted-1",
        "tool_ids": [tool.pk]}, content_type="application/json").json()
    scripted.add(tool_fragments("c1", tool.name, json.dumps(arguments)), finish("tool_calls"))
    scripted.add(text("Done."), finish())
    reply = client.post(f"/api/agents/{agent['id']}/chat", data={"message": "go"},
                        content_type="application/json").json()
    offered = scripted.requests[0]["tools"][0]["function"]
    assert offered["name"] == tool.name
    return reply


def test_server_everything_over_streamable_http(operator_client, everything, scripted):
    tools = {t.config["remote_name"]: t for t in refresh(operator_client, {
        "name": "everything", "url": everything.url})}
    assert {"echo", "get-sum", "get-structured-content"} <= set(tools)
    schema = tools["get-sum"].parameters
    assert schema["required"] == ["a", "b"] and schema["properties"]["a"]["type"] == "number"
    assert tools["echo"].parameters["required"] == ["message"]
    reply = chat_with_tool(operator_client, scripted, tools["get-sum"], {"a": 2, "b": 40})
    call = reply["tool_calls"][0]
    assert call["ok"] is True and "The sum of 2 and 40 is 42" in call["result_summary"]
    # what the model was sent back as the tool's result
    fed = [m for m in scripted.requests[1]["messages"] if m["role"] == "tool"]
    assert "The sum of 2 and 40 is 42" in fed[0]["content"]


def test_mcp_server_time_over_stdio(admin_client, scripted, settings):
    command = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))
    assert command, "mcp-server-time is not installed: pip install -e '.[test]' (make test)"
    settings.TANGLAW_MCP_STDIO_COMMANDS = [command]
    tools = {t.config["remote_name"]: t for t in refresh(admin_client, {
        "name": "clock", "transport": "stdio", "command": command, "args": []})}
    assert {"get_current_time", "convert_time"} <= set(tools)
    assert tools["get_current_time"].parameters["required"] == ["timezone"]
    reply = chat_with_tool(admin_client, scripted, tools["get_current_time"],
                           {"timezone": "Asia/Manila"})
    call = reply["tool_calls"][0]
    assert call["ok"] is True, call
    result = json.loads(call["result_summary"])
    assert result["timezone"] == "Asia/Manila" and result["datetime"].endswith("+08:00")


def run_scenario(scenario: str, tmp_path: Path) -> subprocess.CompletedProcess:
    client = f"{sys.executable} {ROOT / 'manage.py'} mcp_client --call-all"
    env = {**os.environ, "TANGLAW_DATA_DIR": str(tmp_path)}
    return subprocess.run([str(npm_peers.NODE), str(npm_peers.CONFORMANCE), "client",
                           "--command", client, "--scenario", scenario, "--timeout", "60000"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


@pytest.mark.parametrize("scenario", ["initialize", "tools_call"])
def test_the_conformance_suites_client_scenarios_pass(scenario, tmp_path):
    npm_peers.require()
    result = run_scenario(scenario, tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]
    assert "OVERALL: PASSED" in said and "0 failed" in said, said[-3000:]


def test_mcp_client_lists_and_calls_as_the_console_does(everything, tmp_path):
    env = {**os.environ, "TANGLAW_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "mcp_client",
                             everything.url, "--call", "get-sum", "--arguments",
                             '{"a": 1.5, "b": 2}', "--json"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "get-sum" in [t["name"] for t in report["tools"]]
    assert report["calls"] == [{"tool": "get-sum", "arguments": {"a": 1.5, "b": 2},
                                "ok": True, "result": "The sum of 1.5 and 2 is 3.5."}]
    failed = subprocess.run([sys.executable, str(ROOT / "manage.py"), "mcp_client",
                             "http://127.0.0.1:9/mcp"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert failed.returncode == 1 and "cannot reach the MCP server" in failed.stderr
