"""The knowledge base and the search_knowledge tool."""

import asyncio
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.knowledge import search
from agents.models import KnowledgeDocument
from agents.runtime import Candidate, ToolSpec, TurnSettings, run_turn
from agents.tools.builtin import SPECS
from console.backends import adapter_class
from console.backends.base import Endpoint
from console.models import AuditEvent
from tests.support.scripted_openai import finish, text, tool_whole

MANUAL = ("The Jetson edge box runs Ollama on port 11434. To rotate the encryption keys, "
          "run manage.py rotate_keys; old secrets stay readable.")


@pytest.mark.django_db
def test_add_search_delete_through_the_api(operator_client, viewer_client):
    created = operator_client.post("/api/knowledge", data={
        "title": "Ops manual", "content": MANUAL}, content_type="application/json")
    assert created.status_code == 201
    operator_client.post("/api/knowledge", data={"title": "Lunch", "content": "Noodles."},
                         content_type="application/json")
    hits = viewer_client.get("/api/knowledge/search?q=rotating keys").json()
    assert [h["title"] for h in hits] == ["Ops manual"]  # porter stemming: rotating → rotate
    assert "[rotate]" in hits[0]["excerpt"] or "[keys]" in hits[0]["excerpt"]
    assert viewer_client.post("/api/knowledge", data={"title": "x", "content": "y"},
                              content_type="application/json").status_code == 403
    doc = created.json()["id"]
    assert operator_client.delete(f"/api/knowledge/{doc}").status_code == 204
    assert viewer_client.get("/api/knowledge/search?q=rotate").json() == []
    assert list(AuditEvent.objects.filter(action__startswith="knowledge.").values_list(
        "action", flat=True).order_by("seq")) == ["knowledge.added", "knowledge.added",
                                                  "knowledge.deleted"]


@pytest.mark.django_db
def test_hostile_queries_cannot_break_the_index(operator_client):
    operator_client.post("/api/knowledge", data={"title": "t", "content": MANUAL},
                         content_type="application/json")
    for query in ['"', "NEAR(", "ollama OR) AND (", "*", "content:secret", "'; DROP TABLE x"]:
        search(query)  # no exception
    assert search("ollama port")[0].title == "t"


@pytest.mark.django_db
def test_upload_page(operator_client, viewer_client):
    runbook = b"# Runbook\nRestart llama-server with --metrics."
    page = operator_client.post("/knowledge/", {"file": SimpleUploadedFile("runbook.md", runbook)})
    assert page.status_code == 302
    assert KnowledgeDocument.objects.get().title == "runbook.md"
    bad = operator_client.post("/knowledge/", {
        "file": SimpleUploadedFile("blob.bin", b"\xff\xfe\x00binary")})
    assert "not" in bad.content.decode() and KnowledgeDocument.objects.count() == 1
    empty = operator_client.post("/knowledge/", {"title": "keep me", "content": "  "})
    assert "The document is empty" in empty.content.decode()
    assert 'value="keep me"' in empty.content.decode()
    assert viewer_client.post("/knowledge/", {"title": "x", "content": "y"}).status_code == 403
    assert "runbook.md" in viewer_client.get("/knowledge/?q=metrics").content.decode()


@pytest.mark.usefixtures("live_db")
def test_agent_uses_search_knowledge(operator_user, scripted):
    from agents.knowledge import add_document
    from console.audit import Actor

    add_document(Actor.system(), "Ops manual", MANUAL)
    scripted.add(tool_whole("k1", "search_knowledge", '{"query": "ollama port"}'),
                 finish("tool_calls"))
    scripted.add(text("Port 11434."), finish())
    spec = SPECS["search_knowledge"]
    settings = TurnSettings(
        candidates=[Candidate(adapter_class("openai_compatible")(Endpoint(scripted.url)),
                              "scripted-1")],
        tools={"search_knowledge": ToolSpec("search_knowledge", "builtin",
                                            spec["description"], spec["parameters"])})
    state = asyncio.run(run_turn(settings, [], "which port does ollama use?"))
    assert state.text == "Port 11434." and state.tool_calls[0].ok
    fed = json.loads([m for m in scripted.requests[1]["messages"] if m["role"] == "tool"][0][
        "content"])
    assert fed["output"]["results"][0]["title"] == "Ops manual"
    assert "11434" in fed["output"]["results"][0]["excerpt"]
