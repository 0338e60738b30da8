"""MCP servers: registered, their tools listed (disabled until enabled), called by agents."""

import json
import re
import sys
from pathlib import Path

import pytest

from agents.models import McpServer, Tool
from agents.tools.mcp import safe_name
from console.models import AuditEvent, Backend
from tests.support.mcp_servers import LONG_NAME, McpHttpServer
from tests.support.scripted_openai import finish, text, tool_fragments

pytestmark = pytest.mark.django_db
TOKEN = "Bearer mcp-secret-4b1d9e77"
STDIO_SCRIPT = str(Path(__file__).parents[1] / "support" / "mcp_servers.py")
OPENAI_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.fixture(scope="module")
def mcp_http():
    server = McpHttpServer().start()
    yield server
    server.stop()


def register(client, url, **extra):
    return client.post("/api/mcp-servers", data={"name": "plant", "url": url, **extra},
                       content_type="application/json")


def test_names_are_mapped_to_the_openai_safe_form_and_stay_unique():
    assert safe_name("plant", "pump_status") == "plant_pump_status"
    dotted = safe_name("plant", "add.numbers")
    assert dotted.startswith("plant_add_numbers_") and dotted != safe_name("plant", "add_numbers")
    long = safe_name("plant", LONG_NAME)
    assert len(long) == 64 and OPENAI_SAFE.match(long)
    assert safe_name("plant", "pump_status", {"plant_pump_status"}) != "plant_pump_status"
    assert OPENAI_SAFE.match(safe_name("plant", "名前/with spaces"))


def test_register_list_enable_and_call_a_tool(operator_client, mcp_http, scripted):
    created = register(operator_client, mcp_http.url,
                       secret_headers={"Authorization": TOKEN})
    assert created.status_code == 201, created.json()
    server = created.json()
    assert server["secret_header_names"] == ["Authorization"]
    assert TOKEN not in created.content.decode()
    refreshed = operator_client.post(f"/api/mcp-servers/{server['id']}/refresh").json()
    assert len(refreshed["added"]) == 4 and refreshed["missing"] == []
    tools = {t.config["remote_name"]: t for t in Tool.objects.filter(kind="mcp")}
    assert set(tools) == {"add.numbers", "pump_status", LONG_NAME, "fail"}
    assert all(OPENAI_SAFE.match(t.name) and not t.enabled for t in tools.values())
    assert tools["pump_status"].parameters["required"] == ["pump_id"]
    assert tools["add.numbers"].description == "Add two whole numbers"
    assert mcp_http.headers and all(h.get("authorization") == TOKEN for h in mcp_http.headers)

    add = tools["add.numbers"]
    enabled = operator_client.patch(f"/api/tools/{add.pk}", data={"enabled": True},
                                    content_type="application/json").json()
    assert enabled["enabled"] is True and enabled["server_id"] == server["id"]
    backend = Backend.objects.create(name="edge", kind="openai_compatible", base_url=scripted.url)
    agent = operator_client.post("/api/agents", data={
        "name": "plant-helper", "backend_id": backend.pk, "model": "scripted-1",
        "tool_ids": [add.pk]}, content_type="application/json").json()
    scripted.add(tool_fragments("c1", add.name, json.dumps({"a": 2, "b": 40})),
                 finish("tool_calls"))
    scripted.add(text("The answer is 42."), finish())
    reply = operator_client.post(f"/api/agents/{agent['id']}/chat",
                                 data={"message": "2 + 40?"},
                                 content_type="application/json").json()
    assert reply["reply"] == "The answer is 42."
    assert reply["tool_calls"][0]["ok"] is True
    assert json.loads(reply["tool_calls"][0]["result_summary"]) == {"result": 42}
    offered = scripted.requests[0]["tools"][0]["function"]
    assert offered["name"] == add.name and offered["parameters"]["required"] == ["a", "b"]
    actions = list(AuditEvent.objects.exclude(action="auth.login").order_by("seq")
                   .values_list("action", flat=True))
    assert actions[:3] == ["mcp_server.created", "mcp_server.refreshed", "tool.updated"]
    assert "tool.called" in actions
    assert all(TOKEN not in json.dumps([e.before, e.after, e.detail])
               for e in AuditEvent.objects.all())


def test_a_failing_mcp_tool_is_fed_back_as_a_tool_error(operator_client, mcp_http, scripted):
    server = register(operator_client, mcp_http.url).json()
    operator_client.post(f"/api/mcp-servers/{server['id']}/refresh")
    fail = Tool.objects.get(config__remote_name="fail")
    Tool.objects.filter(pk=fail.pk).update(enabled=True)
    backend = Backend.objects.create(name="edge", kind="openai_compatible", base_url=scripted.url)
    agent = operator_client.post("/api/agents", data={
        "name": "a", "backend_id": backend.pk, "model": "scripted-1", "tool_ids": [fail.pk]},
        content_type="application/json").json()
    scripted.add(tool_fragments("c1", fail.name, "{}"), finish("tool_calls"))
    scripted.add(text("The valve controller is offline."), finish())
    reply = operator_client.post(f"/api/agents/{agent['id']}/chat", data={"message": "go"},
                                 content_type="application/json").json()
    assert reply["tool_calls"][0]["ok"] is False
    assert "the valve controller is offline" in reply["tool_calls"][0]["result_summary"]


def test_unreachable_and_unsafe_servers_are_reported(operator_client):
    metadata = register(operator_client, "http://169.254.169.254/mcp")
    assert metadata.status_code == 422 and "link-local" in str(metadata.json())
    server = register(operator_client, "http://127.0.0.1:9/mcp").json()
    refresh = operator_client.post(f"/api/mcp-servers/{server['id']}/refresh")
    assert refresh.status_code == 409 and "127.0.0.1:9" in refresh.json()["detail"]
    assert "cannot reach" in McpServer.objects.get().last_error
    assert AuditEvent.objects.filter(action="mcp_server.refreshed", outcome="failure").exists()


def test_stdio_servers_are_for_admins_and_allow_listed_commands(operator_client, admin_client,
                                                                settings):
    stdio = {"name": "local", "transport": "stdio", "command": sys.executable,
             "args": [STDIO_SCRIPT]}
    as_operator = operator_client.post("/api/mcp-servers", data=stdio,
                                       content_type="application/json")
    assert as_operator.status_code == 422 and "only admins" in str(as_operator.json())
    not_allowed = admin_client.post("/api/mcp-servers", data=stdio,
                                    content_type="application/json")
    assert "TANGLAW_MCP_STDIO_COMMANDS" in str(not_allowed.json())
    assert not McpServer.objects.exists()
    settings.TANGLAW_MCP_STDIO_COMMANDS = [sys.executable]
    created = admin_client.post("/api/mcp-servers", data=stdio, content_type="application/json")
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    listed = admin_client.post(f"/api/mcp-servers/{pk}/refresh").json()
    assert "local_pump_status" in listed["added"]
    assert operator_client.delete(f"/api/mcp-servers/{pk}").status_code == 409
    assert admin_client.delete(f"/api/mcp-servers/{pk}").status_code == 204
    assert not Tool.objects.filter(kind="mcp").exists()
