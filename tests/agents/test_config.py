"""YAML export and import of agents and tool settings: round trip, every error with its path."""

import pytest
import yaml

from agents.models import Agent, AgentVersion, Tool
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
