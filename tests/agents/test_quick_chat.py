"""Chat with a model without building an agent: Chat on a model row (and the
playground's model picker) makes a quick agent with default settings, which can be
saved as an agent later; the overview's first-run checklist and discovery on arrival."""

import json

import pytest

from agents.models import Agent, AgentVersion, Conversation
from console.models import AuditEvent, Backend
from monitoring.models import Channel
from tests.support.scripted_openai import finish, text, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(scripted):
    return Backend.objects.create(name="edge-box", kind="openai_compatible",
                                  base_url=scripted.url)


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type="application/json")


def test_the_api_starts_one_quick_agent_per_backend_and_model(operator_client, backend):
    first = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": " scripted-1 "})
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["quick"] is True and body["model"] == "scripted-1"
    assert body["name"] == "scripted-1 on edge-box"
    assert body["system_prompt"] == "" and body["tool_ids"] == [] and body["max_tokens"] == 1024
    again = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    created = AuditEvent.objects.filter(action="agent.created")
    assert created.count() == 1 and created.get().actor == "oscar"
    assert AgentVersion.objects.filter(agent_id=body["id"]).count() == 1


@pytest.mark.parametrize("payload,field", [
    ({"model": "m"}, "backend_id"),
    ({"backend_id": "1", "model": "m"}, "backend_id"),
    ({"backend_id": True, "model": "m"}, "backend_id"),
    ({"backend_id": 999999, "model": "m"}, "backend_id"),
    ({"backend_id": "BACKEND"}, "model"),
    ({"backend_id": "BACKEND", "model": "   "}, "model"),
    ({"backend_id": "BACKEND", "model": ["m"]}, "model"),
    ({"backend_id": "BACKEND", "model": "x" * 201}, "model"),
])
def test_bad_input_names_the_field_and_creates_nothing(operator_client, backend, payload,
                                                       field):
    payload = {k: backend.pk if v == "BACKEND" else v for k, v in payload.items()}
    response = post(operator_client, "/api/agents/quick", payload)
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    assert not Agent.objects.exists()


def test_who_may_and_a_disabled_backend(viewer_client, operator_client, backend):
    assert post(viewer_client, "/api/agents/quick",
                {"backend_id": backend.pk, "model": "m"}).status_code == 403
    backend.enabled = False
    backend.save()
    refused = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                          "model": "m"})
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
    assert not Agent.objects.exists()


def test_a_name_already_taken_gets_a_number(operator_client, backend):
    Agent.objects.create(name="scripted-1 on edge-box", backend=backend, model="other")
    body = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                       "model": "scripted-1"}).json()
    assert body["name"] == "scripted-1 on edge-box (2)"
    long = post(operator_client, "/api/agents/quick",
                {"backend_id": backend.pk, "model": "m" * 200}).json()
    assert len(long["name"]) <= 100 and long["quick"]


def test_a_quick_chat_answers_like_any_agent(operator_client, backend, scripted):
    agent = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"}).json()
    scripted.add(text("Hello ", "there."), finish(), usage(12, 3))
    reply = post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "hi"}).json()
    assert reply["reply"] == "Hello there."
    assert Conversation.objects.get().agent_id == agent["id"]
    sent = scripted.requests[-1]
    assert sent["model"] == "scripted-1"
    assert [m["role"] for m in sent["messages"]] == ["user"]  # no system prompt
    assert "tools" not in sent


def test_chat_on_a_model_row_opens_the_playground_on_it(operator_client, backend, fake):
    ollama = Backend.objects.create(name="ollama", kind="ollama", base_url=fake("ollama").url)
    page = operator_client.get("/models/").content.decode()
    assert 'action="/playground/chat-with/"' in page
    assert f'name="backend" value="{ollama.pk}"' in page
    assert 'aria-label="Chat with qwen2.5:0.5b on ollama"' in page
    response = operator_client.post("/playground/chat-with/", {
        "backend": ollama.pk, "model": "qwen2.5:0.5b", "next": "fleet_models"})
    agent = Agent.objects.get(quick=True)
    assert response.status_code == 302
    assert response["Location"] == f"/playground/?agent={agent.pk}"
    playground = operator_client.get(response["Location"]).content.decode()
    assert 'optgroup label="Quick chats' in playground
    assert f'<option value="{agent.pk}" selected>' in playground
    assert f'href="/agents/{agent.pk}/edit/" id="save-as-agent"' in playground
    # the agents list keeps it apart from the agents people built
    listing = operator_client.get("/agents/").content.decode()
    assert 'id="quick-chats"' in listing and "Save as agent" in listing
    # the backend's own models page has the same button
    assert 'action="/playground/chat-with/"' in operator_client.get(
        f"/backends/{ollama.pk}/models/").content.decode()


def test_a_refused_quick_chat_says_why_and_goes_back(operator_client, viewer_client,
                                                    backend):
    response = operator_client.post("/playground/chat-with/", {
        "backend": backend.pk, "model": "", "next": "fleet_models"}, follow=True)
    assert response.redirect_chain[-1][0] == "/models/"
    assert "Could not start the chat: Enter the model name" in response.content.decode()
    elsewhere = operator_client.post("/playground/chat-with/", {
        "backend": "x", "model": "m", "next": "https://evil.example/"})
    assert elsewhere["Location"] == "/playground/"  # never an arbitrary address
    assert viewer_client.post("/playground/chat-with/", {
        "backend": backend.pk, "model": "m"}).status_code == 403
    assert not Agent.objects.exists()


def test_saving_a_quick_chat_as_an_agent(operator_client, backend):
    agent = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"}).json()
    form = operator_client.get(f"/agents/{agent['id']}/edit/").content.decode()
    assert "Save as an agent" in form and ">Save as agent</button>" in form
    response = operator_client.post(f"/agents/{agent['id']}/edit/", {
        "name": "support-bot", "backend": backend.pk, "model": "scripted-1",
        "system_prompt": "Answer support questions.", "temperature": "0.7",
        "max_tokens": "1024", "first_token_timeout_s": "60", "idle_timeout_s": "30",
        "turn_timeout_s": "300", "max_tool_iterations": "6", "enabled": "on"})
    assert response.status_code == 302
    saved = Agent.objects.get(pk=agent["id"])
    assert saved.name == "support-bot" and not saved.quick and saved.version == 2
    update = AuditEvent.objects.get(action="agent.updated")
    assert update.before.get("quick") is True and "quick" not in update.after
    # a new quick chat on the same model is a new one: the saved agent is not reused
    other = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"})
    assert other.status_code == 201 and other.json()["id"] != agent["id"]


def test_the_api_saves_it_with_quick_false_and_never_makes_one(operator_client, backend):
    quick = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"}).json()
    saved = operator_client.patch(f"/api/agents/{quick['id']}", data=json.dumps(
        {"quick": False}), content_type="application/json")
    assert saved.status_code == 200 and saved.json()["quick"] is False
    assert saved.json()["version"] == 2
    back = operator_client.patch(f"/api/agents/{quick['id']}", data=json.dumps(
        {"quick": True}), content_type="application/json")
    assert back.status_code == 422 and "quick" in back.json()["errors"]
    # restoring the version it had as a quick chat keeps it an agent
    restored = operator_client.post(f"/api/agents/{quick['id']}/versions/1/restore")
    assert restored.status_code in (200, 409)
    assert Agent.objects.get(pk=quick["id"]).quick is False


def test_the_first_run_checklist_follows_what_is_done(operator_client, backend):
    def checklist():
        page = operator_client.get("/").content.decode()
        if 'id="checklist-title"' not in page:
            return None
        return page.split('id="checklist-title"')[1].split("</section>")[0]

    Backend.objects.all().delete()
    shown = checklist()
    assert shown is not None and "0 of 5 done" in shown
    for step in ("Register a backend", "Have a model on it", "Create an agent",
                 "Give an agent a tool", "Add an alert channel"):
        assert step in shown
    backend = Backend.objects.create(name="b", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1", model_count=2)
    assert "2 of 5 done" in checklist()
    # a quick chat is not an agent someone built
    Agent.objects.create(name="q", backend=backend, model="m", quick=True)
    assert "2 of 5 done" in checklist()
    agent = Agent.objects.create(name="a", backend=backend, model="m")
    assert "3 of 5 done" in checklist()
    from agents.models import Tool

    agent.tools.add(Tool.objects.get(name="calculator"))
    assert "4 of 5 done" in checklist()
    Channel.objects.create(name="ops", kind="webhook", target="https://example.org/h")
    assert checklist() is None  # everything done: it goes away


def test_the_overview_discovers_on_arrival_and_register_leads_to_the_models(
        operator_client, fake, settings):
    engine = fake("ollama")
    settings.TANGLAW_DISCOVERY_PORTS = [engine.port]
    settings.TANGLAW_FOUNDRY_CLI = "no-such-foundry-cli"
    home = operator_client.get("/").content.decode()
    assert 'hx-post="/backends/discover/" hx-trigger="load"' in home
    part = operator_client.post("/backends/discover/", HTTP_HX_REQUEST="true")
    html = part.content.decode()
    assert "<html" not in html and f"127.0.0.1:{engine.port}" in html
    assert 'name="next" value="models"' in html and ">Register</button>" in html
    registered = operator_client.post("/backends/new/", {
        "name": f"ollama-{engine.port}", "kind": "ollama",
        "base_url": f"http://127.0.0.1:{engine.port}", "enabled": "on",
        "connect_timeout_s": "3", "read_timeout_s": "60", "next": "models"})
    backend = Backend.objects.get()
    assert registered["Location"] == f"/backends/{backend.pk}/models/"
    # with a backend the overview no longer scans on every visit
    assert 'hx-trigger="load" hx-swap="innerHTML" aria-live' not in operator_client.get(
        "/").content.decode()


def test_a_disabled_quick_chat_is_not_reused_silently(operator_client, backend):
    agent = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"}).json()
    Agent.objects.filter(pk=agent["id"]).update(enabled=False)
    again = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                        "model": "scripted-1"})
    assert again.status_code == 409 and "is disabled" in again.json()["detail"]
    page = operator_client.post("/playground/chat-with/", {
        "backend": backend.pk, "model": "scripted-1"}, follow=True).content.decode()
    assert "Could not start the chat: the quick chat" in page


def test_a_name_cut_at_a_space_still_gets_its_number(operator_client, backend):
    model = "m" * 99  # "<model> on edge-box" cut at 100 characters ends in a space
    Agent.objects.create(name=model, backend=backend, model="other")
    answer = post(operator_client, "/api/agents/quick", {"backend_id": backend.pk,
                                                         "model": model})
    assert answer.status_code == 201, answer.content
    assert answer.json()["name"].endswith(" (2)")
