"""Agent pages and the playground: roles, forms, model options, stored text shown escaped."""

import pytest
from django.test import Client

from agents.models import Agent, Conversation, Message, Tool
from console.models import AuditEvent, Backend

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(db, fake):
    backend = Backend.objects.create(name="o", kind="ollama", base_url=fake("ollama").url)
    return Agent.objects.create(name="helper", backend=backend, model="qwen2.5:0.5b")


PAGES = [("agent_list", False, {"admin", "operator", "viewer"}),
         ("agent_detail", True, {"admin", "operator", "viewer"}),
         ("agent_create", False, {"admin", "operator"}),
         ("agent_edit", True, {"admin", "operator"}),
         ("agent_delete", True, {"admin", "operator"}),
         ("playground", False, {"admin", "operator", "viewer"})]


@pytest.mark.parametrize("persona", ["admin", "operator", "viewer", "anonymous"])
@pytest.mark.parametrize("name,needs_pk,allowed", PAGES, ids=[p[0] for p in PAGES])
def test_pages_by_role(request, agent, persona, name, needs_pk, allowed):
    from django.urls import reverse

    client = Client() if persona == "anonymous" else request.getfixturevalue(f"{persona}_client")
    response = client.get(reverse(name, args=[agent.pk] if needs_pk else []))
    expected = 302 if persona == "anonymous" else 200 if persona in allowed else 403
    assert response.status_code == expected


def test_create_agent_through_the_form(operator_client, agent):
    calculator = Tool.objects.get(name="calculator")
    response = operator_client.post("/agents/new/", {
        "name": "new-one", "backend": agent.backend_id, "model": "llama3.2:3b",
        "system_prompt": "Be brief.", "temperature": "0.3", "max_tokens": "256",
        "first_token_timeout_s": "30", "idle_timeout_s": "10", "turn_timeout_s": "120",
        "max_tool_iterations": "4", "tools": [calculator.pk], "enabled": "on"})
    created = Agent.objects.get(name="new-one")
    assert response.status_code == 302 and response["Location"] == f"/agents/{created.pk}/"
    assert list(created.tools.all()) == [calculator] and created.version == 1
    assert AuditEvent.objects.filter(action="agent.created", actor="oscar").exists()


def test_invalid_form_keeps_input_and_names_fields(operator_client, agent):
    response = operator_client.post("/agents/new/", {
        "name": "kept", "backend": agent.backend_id, "model": "", "temperature": "9",
        "max_tokens": "256", "first_token_timeout_s": "500", "idle_timeout_s": "10",
        "turn_timeout_s": "100", "max_tool_iterations": "4", "system_prompt": "my prompt"})
    body = response.content.decode()
    assert "This field is required" in body and "less than or equal to 2" in body
    assert "cannot be longer than the whole turn" in body
    assert 'value="kept"' in body and "my prompt" in body
    assert not Agent.objects.filter(name="kept").exists()


def test_model_options_come_from_the_backend(operator_client, agent):
    body = operator_client.get(f"/agents/model-options/?backend={agent.backend_id}"
                               ).content.decode()
    # each with what the engine says of it: size, parameters, quantization
    assert '<option value="qwen2.5:0.5b" label="qwen2.5:0.5b — 379.4 MB · 494.03M · Q4_K_M">' \
        in body
    assert '<option value="llama3.2:3b" label="llama3.2:3b — 1.9 GB · 3.2B · Q4_K_M">' in body
    assert operator_client.get("/agents/model-options/?backend=x").status_code == 200


def test_model_facts_say_what_the_model_is_and_warn_about_tools(operator_client, agent, fake):
    calculator = Tool.objects.get(name="calculator")
    url = f"/agents/model-facts/?backend={agent.backend_id}&model=qwen2.5:0.5b"
    facts = operator_client.get(url).content.decode()
    assert "379.4 MB · 494.03M · Q4_K_M" in facts and "warn-box" not in facts
    # a model whose /api/show capabilities lack "tools" (as Ollama says of gemma)
    engine = fake("ollama")
    engine.pulled.append("gemma:2b")
    other = Backend.objects.create(name="other", kind="ollama", base_url=engine.url)
    no_tools = operator_client.get(f"/agents/model-facts/?backend={other.pk}"
                                   f"&model=gemma:2b&tools={calculator.pk}").content.decode()
    assert "cannot call tools" in no_tools
    assert "this agent has 1 tool: it will answer in text" in no_tools
    missing = operator_client.get(f"/agents/model-facts/?backend={agent.backend_id}"
                                  f"&model=nope:1b").content.decode()
    assert "does not list <code>nope:1b</code> among its 2 models" in missing
    down = Backend.objects.create(name="down", kind="ollama", base_url="http://127.0.0.1:9")
    unreachable = operator_client.get(f"/agents/model-facts/?backend={down.pk}&model=m")
    assert unreachable.status_code == 200 and "Could not ask down" in unreachable.content.decode()


def test_viewer_reads_the_playground_without_a_composer(viewer_client, operator_user, agent):
    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="t")
    assert "Your role can read conversations" in viewer_client.get("/playground/").content.decode()
    # not their conversation: 404 for a viewer
    assert viewer_client.get(f"/playground/?c={conversation.pk}").status_code == 404


def test_model_text_is_shown_escaped(admin_client, operator_user, agent):
    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="x")
    payload = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    Message.objects.create(conversation=conversation, role="assistant", content=payload)
    body = admin_client.get(f"/playground/?c={conversation.pk}").content.decode()
    assert "<script>alert(2)</script>" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body
    assert "You are reading oscar" in body  # admins read others' conversations, not write


def test_tool_settings_page_and_api(operator_client, viewer_client):
    calculator = Tool.objects.get(name="calculator")
    page = operator_client.get("/tools/").content.decode()
    assert "search_knowledge" in page and "Save calculator" in page
    assert "Save calculator" not in viewer_client.get("/tools/").content.decode()
    operator_client.post("/tools/", {"tool": calculator.pk, "requires_approval": "on",
                                     "enabled": "on", "timeout_s": "2.5"})
    calculator.refresh_from_db()
    assert calculator.requires_approval and calculator.timeout_s == 2.5
    bad = operator_client.post("/tools/", {"tool": calculator.pk, "timeout_s": "-1",
                                           "enabled": "on"})
    assert "seconds from 0.1 to 600" in bad.content.decode()
    patched = operator_client.patch(f"/api/tools/{calculator.pk}", data={"enabled": False},
                                    content_type="application/json").json()
    assert patched["enabled"] is False and patched["requires_approval"] is True
    assert viewer_client.patch(f"/api/tools/{calculator.pk}", data={"enabled": True},
                               content_type="application/json").status_code == 403
    events = AuditEvent.objects.filter(action="tool.updated").order_by("seq")
    assert [e.after["enabled"] for e in events] == [True, False]
    assert events[0].before["requires_approval"] is False


def test_fallbacks_edited_in_the_form(operator_client, agent):
    other = Backend.objects.create(name="spare", kind="vllm", base_url="http://10.0.0.9:8000")
    form = {"name": "helper", "backend": agent.backend_id, "model": "qwen2.5:0.5b",
            "temperature": "0.7", "max_tokens": "256", "first_token_timeout_s": "30",
            "idle_timeout_s": "10", "turn_timeout_s": "120", "max_tool_iterations": "4",
            "enabled": "on", "fallback_backend_0": other.pk, "fallback_model_0": "qwen-1.5b",
            "fallback_backend_1": agent.backend_id, "fallback_model_1": "llama3.2:1b"}
    assert operator_client.post(f"/agents/{agent.pk}/edit/", form).status_code == 302
    assert [(f.backend.name, f.model) for f in agent.fallbacks.all()] == [
        ("spare", "qwen-1.5b"), ("o", "llama3.2:1b")]
    page = operator_client.get(f"/agents/{agent.pk}/edit/").content.decode()
    assert 'value="qwen-1.5b"' in page
    bad = operator_client.post(f"/agents/{agent.pk}/edit/", {**form, "fallback_model_0": ""})
    body = bad.content.decode()
    assert bad.status_code == 200 and "fallbacks[0]: enter a model" in body
    assert 'value="llama3.2:1b"' in body  # what was typed is kept
    assert agent.fallbacks.count() == 2  # nothing changed


def test_playground_shows_the_current_answer_and_folds_previous_versions(operator_client,
                                                                        operator_user, agent):
    from django.utils import timezone

    from agents.models import Run

    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="v")
    Message.objects.create(conversation=conversation, role="user", content="name a colour")
    for n, (reply, superseded) in enumerate([("red", True), ("green", True), ("blue", False)]):
        run = Run.objects.create(conversation=conversation, agent=agent, model="m",
                                 started_at=timezone.now(), outcome="success", ttft_ms=n)
        Message.objects.create(conversation=conversation, run=run, role="assistant",
                               content=reply, superseded=superseded)
    body = operator_client.get(f"/playground/?c={conversation.pk}").content.decode()
    versions = body.index('<details class="versions"')
    current = body.index(">blue<")
    assert body.index(">red<") > versions and body.index(">green<") > versions
    assert "Previous versions (2)" in body and "3 of 3" in body
    assert current > body.index("</details>", versions)  # the current answer, unfolded


def test_a_version_page_names_fields_tools_and_backends(operator_client, agent, fake):
    from agents import actions
    from console.audit import Actor

    actor = Actor(username="oscar", role="operator")
    calculator = Tool.objects.get(name="calculator")
    second = Backend.objects.create(name="spare-box", kind="ollama", base_url=fake("ollama").url)
    agent = actions.update_agent(actor, agent, {})  # version 1 is the original
    actions.update_agent(actor, agent, {"tool_ids": [calculator.pk],
                                        "fallbacks": [{"backend_id": second.pk,
                                                       "model": "llama3.2:3b"}],
                                        "system_prompt": "Be brief.\nUse «tools»."})
    agent.versions.get_or_create(version=1, defaults={"snapshot": {}})
    page = operator_client.get(f"/agents/{agent.pk}/versions/1/").content.decode()
    assert '<th scope="row">Tools</th>' in page and "calculator" in page
    assert '<th scope="row">Fallbacks</th>' in page and "1. spare-box / llama3.2:3b" in page
    assert '<th scope="row">System prompt</th>' in page and "Use «tools»." in page
    assert "tool_ids" not in page and "[" + str(calculator.pk) + "]" not in page
    assert "\\u" not in page


def test_a_tool_schema_reads_as_a_table(operator_client, db):
    page = operator_client.get("/tools/").content.decode()
    assert '<table class="params cards">' in page
    assert "<code>expression</code>" in page and "required" in page
    assert "{'type'" not in page  # never Python's repr
