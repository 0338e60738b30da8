"""The HTTP tool form, the MCP servers page, router fields in the agent form, route badges."""

import json

import pytest

from agents.models import Agent, AgentSpecialist, Conversation, McpServer, Message, Run, Tool
from console.models import AuditEvent, Backend
from tests.support.mcp_servers import McpHttpServer

pytestmark = pytest.mark.django_db
SECRET = "tok-http-tool-91c2e"


def http_form(**overrides):
    return {"name": "weather", "description": "Weather for a city", "method": "GET",
            "url": "https://api.example.com/v1/weather/{city}", "timeout_s": "5",
            "max_response_bytes": "4096", "headers": "Accept: application/json",
            "secret_headers": f"X-Api-Key: {SECRET}", "allow_hosts": "api.example.com",
            "parameters": json.dumps({"type": "object", "properties": {
                "city": {"type": "string"}}, "required": ["city"]}),
            "enabled": "on", **overrides}


def test_http_tool_form_creates_edits_and_keeps_input_on_errors(operator_client):
    bad = operator_client.post("/tools/http/new/", http_form(
        url="http://{host}/x", parameters="{not json", timeout_s="soon"))
    page = bad.content.decode()
    assert bad.status_code == 200 and "Nothing was saved" in page
    assert "not valid JSON" in page and "enter a number" in page
    assert 'value="Weather for a city"' in page or "Weather for a city" in page
    assert SECRET not in page  # a secret is never echoed back, even on errors
    assert not Tool.objects.filter(kind="http").exists()

    created = operator_client.post("/tools/http/new/", http_form())
    tool = Tool.objects.get(name="weather")
    assert created.status_code == 302 and created["Location"] == f"/tools/#tool-{tool.pk}"
    assert tool.config["headers"] == {"Accept": "application/json"}
    assert json.loads(tool.secret_headers) == {"X-Api-Key": SECRET}
    edit = operator_client.get(f"/tools/{tool.pk}/edit/").content.decode()
    assert "X-Api-Key" in edit and SECRET not in edit
    operator_client.post(f"/tools/{tool.pk}/edit/", http_form(description="Now",
                                                              secret_headers=""))
    tool.refresh_from_db()
    assert tool.description == "Now" and json.loads(tool.secret_headers) == {"X-Api-Key": SECRET}
    listing = operator_client.get("/tools/").content.decode()
    assert "GET https://api.example.com/v1/weather/{city}" in listing and SECRET not in listing
    operator_client.post(f"/tools/{tool.pk}/delete/")
    assert not Tool.objects.filter(pk=tool.pk).exists()
    assert list(AuditEvent.objects.filter(action__startswith="tool.").order_by("seq")
                .values_list("action", flat=True)) == ["tool.created", "tool.updated",
                                                        "tool.deleted"]


def test_viewers_see_tools_but_cannot_change_them(viewer_client):
    assert viewer_client.get("/tools/http/new/").status_code == 403
    page = viewer_client.get("/tools/mcp/").content.decode()
    assert "No MCP servers yet" in page and "Register a server" not in page
    assert viewer_client.post("/tools/mcp/", {"name": "x", "url": "http://127.0.0.1:1/mcp"}
                              ).status_code == 403
    assert not McpServer.objects.exists()


def test_mcp_page_registers_lists_and_removes_a_server(operator_client):
    server = McpHttpServer().start()
    try:
        response = operator_client.post("/tools/mcp/", {"name": "plant", "transport": "http",
                                                        "url": server.url,
                                                        "secret_headers": "Authorization: B x"})
        assert response.status_code == 302
        page = operator_client.get("/tools/mcp/").content.decode()
        assert "plant_pump_status" in page and "(off)" in page and "B x" not in page
        assert "Registered plant: 4 tools listed" in page
        registered = McpServer.objects.get()
        assert registered.last_listed_at is not None
        tools_page = operator_client.get("/tools/").content.decode()
        assert "From MCP server" in tools_page and "pump_status" in tools_page
    finally:
        server.stop()
    operator_client.post(f"/tools/mcp/{registered.pk}/refresh/")
    registered.refresh_from_db()
    assert "cannot reach" in registered.last_error
    assert "unreachable" in operator_client.get("/tools/mcp/").content.decode()
    operator_client.post(f"/tools/mcp/{registered.pk}/delete/")
    assert not McpServer.objects.exists() and not Tool.objects.filter(kind="mcp").exists()
    bad = operator_client.post("/tools/mcp/", {"name": "bad name!", "url": "ftp://x"})
    assert "Not registered" in bad.content.decode()


def test_agent_form_sets_router_specialists_and_escalation(operator_client):
    backend = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:11434")
    coder = Agent.objects.create(name="coder", backend=backend, model="m")
    writer = Agent.objects.create(name="writer", backend=backend, model="m")
    form = {"name": "desk", "kind": "router", "backend": backend.pk, "model": "qwen2.5:0.5b",
            "temperature": "0", "max_tokens": "64", "first_token_timeout_s": "10",
            "idle_timeout_s": "10", "turn_timeout_s": "60", "max_tool_iterations": "2",
            "escalation_backend": backend.pk, "escalation_model": "qwen2.5:7b",
            "specialist_0": coder.pk, "specialist_keywords_0": "code, python ,bug",
            "specialist_1": writer.pk, "specialist_keywords_1": "", "enabled": "on"}
    new = operator_client.get("/agents/new/").content.decode()
    assert '<fieldset id="specialists" class="router-only"><legend>Specialists</legend>' in new
    response = operator_client.post("/agents/new/", form)
    router = Agent.objects.get(name="desk")
    assert response.status_code == 302 and router.kind == "router"
    assert [(s.specialist.name, s.keywords) for s in AgentSpecialist.objects.filter(
        router=router)] == [("coder", ["code", "python", "bug"]), ("writer", [])]
    assert router.escalation_model == "qwen2.5:7b"
    detail = operator_client.get(f"/agents/{router.pk}/").content.decode()
    assert "keywords: code, python, bug" in detail and "qwen2.5:7b" in detail
    bad = operator_client.post(f"/agents/{router.pk}/edit/", {**form, "specialist_0": "",
                                                              "specialist_1": ""})
    assert "at least one specialist" in bad.content.decode()


def test_the_playground_shows_route_and_escalation_badges(operator_client, operator_user):
    backend = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:11434")
    agent = Agent.objects.create(name="desk", kind="router", backend=backend, model="m")
    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="t")
    run = Run.objects.create(conversation=conversation, agent=agent, backend=backend, model="m",
                             started_at="2026-11-24T10:00:00Z", outcome="success", route=[
                                 {"type": "route", "agent": "coder", "method": "keywords",
                                  "reason": "keyword 'python' matched"},
                                 {"type": "escalation", "to": "cloud/big", "agent": "coder",
                                  "reason": "the router labelled the request complex"}])
    Message.objects.create(conversation=conversation, role="user", content="python?")
    Message.objects.create(conversation=conversation, run=run, role="assistant", content="ok")
    page = operator_client.get(f"/playground/?c={conversation.pk}").content.decode()
    assert "↪ routed to coder: keyword &#x27;python&#x27; matched" in page
    assert "⇪ escalated to cloud/big" in page
