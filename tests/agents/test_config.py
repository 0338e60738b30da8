"""YAML export and import of agents and tool settings: round trip, every error with its path."""

import json

import pytest
import yaml

from agents.models import Agent, AgentVersion, McpServer, Tool
from console.models import AuditEvent, Backend

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(operator_client):
    a = Backend.objects.create(name="edge-a", kind="ollama", base_url="http://10.0.0.2:11434")
    b = Backend.objects.create(name="edge-b", kind="vllm", base_url="http://10.0.0.3:8000")
    calculator = Tool.objects.get(name="calculator")
    for name, backend in (("helper", a), ("coder", b)):
        response = operator_client.post("/api/agents", data={
            "name": name, "backend_id": backend.pk, "model": "qwen2.5:0.5b",
            "system_prompt": f"You are {name}.", "tool_ids": [calculator.pk],
            "fallbacks": [{"backend_id": b.pk, "model": "Qwen/Qwen2.5-1.5B-Instruct"}]},
            content_type="application/json")
        assert response.status_code == 201
    operator_client.patch(f"/api/tools/{calculator.pk}", data={"requires_approval": True},
                          content_type="application/json")
    return a, b


def test_round_trip_into_an_empty_database(operator_client, setup):
    exported = b"".join([operator_client.get("/api/agents/export").content]).decode()
    data = yaml.safe_load(exported)
    assert [a["name"] for a in data["agents"]] == ["coder", "helper"]
    assert data["agents"][1]["fallbacks"] == [{"backend": "edge-b",
                                               "model": "Qwen/Qwen2.5-1.5B-Instruct"}]
    Agent.objects.all().delete()
    Tool.objects.filter(name="calculator").update(requires_approval=False)
    dry = operator_client.post("/api/agents/import?dry_run=true", data={"yaml": exported},
                               content_type="application/json").json()
    assert "changes" in dry, dry
    assert dry["dry_run"] is True and not Agent.objects.exists()
    assert {(c["action"], c["name"]) for c in dry["changes"]} == {
        ("update", "calculator"), ("create", "coder"), ("create", "helper")}
    applied = operator_client.post("/api/agents/import", data={"yaml": exported},
                                   content_type="application/json")
    assert applied.status_code == 200
    assert operator_client.get("/api/agents/export").content.decode() == exported
    assert AuditEvent.objects.filter(action="agent.created").count() == 4  # 2 + 2 imported
    again = operator_client.post("/api/agents/import", data={"yaml": exported},
                                 content_type="application/json").json()
    assert "changes" in again, again
    assert {c["action"] for c in again["changes"]} == {"unchanged"}


def test_a_broken_file_changes_nothing_and_lists_every_error(operator_client, setup):
    before = (Agent.objects.count(), AgentVersion.objects.count(), AuditEvent.objects.count())
    broken = yaml.safe_dump({"version": 1, "tools": [{"name": "shell"}], "agents": [
        {"name": "helper", "backend": "edge-a", "model": "m", "temperature": 7},
        {"name": "new", "backend": "nowhere", "model": "m", "tools": ["calculator", "rm"],
         "colour": "red"},
        {"name": "x", "backend": "edge-a", "model": "m",
         "fallbacks": [{"backend": "edge-z", "model": "m"}]},
        {"backend": "edge-a"}]})
    response = operator_client.post("/api/agents/import", data={"yaml": broken},
                                    content_type="application/json")
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert set(errors) == {"tools[0]", "agents[0].temperature", "agents[1].backend",
                           "agents[1].tools[1]", "agents[1].colour",
                           "agents[2].fallbacks[0].backend", "agents[3].name"}
    assert (Agent.objects.count(), AgentVersion.objects.count(),
            AuditEvent.objects.count()) == before
    not_yaml = operator_client.post("/api/agents/import", data={"yaml": "agents: [\n  - {"},
                                    content_type="application/json").json()
    assert "not valid YAML (line" in not_yaml["errors"]["file"][0]


def test_import_page_checks_then_applies(operator_client, viewer_client, setup):
    exported = operator_client.get("/agents/export.yaml").content.decode()
    Agent.objects.filter(name="coder").delete()
    check = operator_client.post("/agents/import/", {"yaml": exported, "action": "check"})
    assert "create agent" in check.content.decode() and not Agent.objects.filter(
        name="coder").exists()
    applied = operator_client.post("/agents/import/", {"yaml": exported, "action": "apply"})
    assert applied.status_code == 302 and Agent.objects.filter(name="coder").exists()
    assert viewer_client.get("/agents/import/").status_code == 403


HTTP_SECRET = "sk-yaml-secret-55aa"


def test_round_trip_with_http_tools_mcp_servers_routers_and_escalation(operator_client,
                                                                        setup):
    a, b = setup
    server = McpServer.objects.create(name="plant", url="http://127.0.0.1:9/mcp",
                                      secret_headers='{"Authorization": "Bearer x"}',
                                      secret_header_names=["Authorization"], enabled=False)
    Tool.objects.create(name="plant_pump_status", kind="mcp", server=server,
                        description="Pump status", config={"remote_name": "pump_status"},
                        enabled=False)
    created = operator_client.post("/api/tools", data={
        "name": "weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}},
        "config": {"url": "https://api.example.com/w/{city}", "allow_hosts": ["api.example.com"]},
        "secret_headers": {"X-Api-Key": HTTP_SECRET}}, content_type="application/json")
    assert created.status_code == 201
    helper, coder = Agent.objects.get(name="helper"), Agent.objects.get(name="coder")
    router = operator_client.post("/api/agents", data={
        "name": "desk", "kind": "router", "backend_id": a.pk, "model": "qwen2.5:0.5b",
        "specialists": [{"specialist_id": coder.pk, "keywords": ["code"]},
                        {"specialist_id": helper.pk}],
        "escalation": {"backend_id": b.pk, "model": "big"},
        "tool_ids": [created.json()["id"]]}, content_type="application/json")
    assert router.status_code == 201, router.json()
    exported = operator_client.get("/api/agents/export").content.decode()
    assert HTTP_SECRET not in exported and "Bearer x" not in exported
    data = yaml.safe_load(exported)
    assert data["mcp_servers"][0]["secret_headers"] == ["Authorization"]
    desk = next(x for x in data["agents"] if x["name"] == "desk")
    assert desk["specialists"] == [{"agent": "coder", "keywords": ["code"]},
                                   {"agent": "helper", "keywords": []}]
    assert desk["escalation"] == {"backend": "edge-b", "model": "big"}

    # into an empty database: secrets must be supplied, everything else comes from the file
    refused = operator_client.delete(f"/api/agents/{coder.pk}")
    assert refused.status_code == 409 and "specialist of desk" in refused.json()["detail"]
    Agent.objects.filter(kind="router").delete()
    Agent.objects.all().delete()
    Tool.objects.exclude(kind="builtin").delete()
    McpServer.objects.all().delete()
    Tool.objects.filter(name="calculator").update(requires_approval=False)
    missing = operator_client.post("/api/agents/import", data={"yaml": exported},
                                   content_type="application/json")
    assert missing.status_code == 422
    errors = missing.json()["errors"]
    assert set(errors) == {"mcp_servers[0].secret_headers.Authorization",
                           "tools[4].secret_headers.X-Api-Key"}
    assert not Agent.objects.exists()
    page = operator_client.post("/agents/import/", {"yaml": exported, "action": "check"})
    assert 'name="secret:tools.weather.X-Api-Key"' in page.content.decode()
    secrets = {"tools.weather.X-Api-Key": HTTP_SECRET,
               "mcp_servers.plant.Authorization": "Bearer x"}
    applied = operator_client.post("/api/agents/import", data={
        "yaml": exported, "secrets": secrets}, content_type="application/json")
    assert applied.status_code == 200, applied.json()
    again = yaml.safe_load(operator_client.get("/api/agents/export").content.decode())
    # the same, except the disabled server's tool: it is listed when the server is enabled
    data["tools"] = [t for t in data["tools"] if t["kind"] != "mcp"]
    assert again == data
    assert json.loads(Tool.objects.get(name="weather").secret_headers) == {
        "X-Api-Key": HTTP_SECRET}
    desk_agent = Agent.objects.get(name="desk")
    assert [s.specialist.name for s in desk_agent.specialist_links.all()] == ["coder", "helper"]
    assert desk_agent.escalation_backend == b
