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
    # the excerpt is plain text; the matches are spans in it (no brackets in the text)
    excerpt = hits[0]["excerpt"]
    assert "[" not in excerpt and "\x02" not in excerpt
    assert {excerpt[a:b] for a, b in hits[0]["highlights"]} >= {"rotate", "keys"}
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
    found = viewer_client.get("/knowledge/?q=metrics").content.decode()
    assert "runbook.md" in found and "<mark>metrics</mark>" in found
    # a delete asks first
    assert 'data-confirm="Delete runbook.md from the knowledge base?' in \
        operator_client.get("/knowledge/").content.decode()


JAPANESE = "東京タワーの高さは333メートルです。展望台から富士山が見えます。"
CHINESE = "边缘设备上运行的模型需要足够的内存。"


@pytest.mark.django_db
@pytest.mark.parametrize("query,title", [
    ("タワー", "ja"), ("富士山", "ja"), ("東京", "ja"),  # a two-character word, as text
    ("展望台から", "ja"), ("内存", "zh"), ("运行的模型", "zh"),
    ("Tower", "en"), ("tow", "en"),  # part of a word, by trigram
])
def test_text_without_spaces_and_parts_of_words_are_found(operator_client, query, title):
    for name, content in (("ja", JAPANESE), ("zh", CHINESE),
                          ("en", "The observation Tower opens at nine.")):
        operator_client.post("/api/knowledge", data={"title": name, "content": content},
                             content_type="application/json")
    hits = operator_client.get(f"/api/knowledge/search?q={query}").json()
    assert hits and hits[0]["title"] == title, hits
    marked = {hits[0]["excerpt"][a:b] for a, b in hits[0]["highlights"]}
    assert any(query.lower() in m.lower() or m.lower() in query.lower() for m in marked), hits
    page = operator_client.get(f"/knowledge/?q={query}").content.decode()
    assert "<mark>" in page


@pytest.mark.django_db
def test_the_trigram_index_follows_adds_and_deletes(operator_client):
    doc = operator_client.post("/api/knowledge", data={"title": "ja", "content": JAPANESE},
                               content_type="application/json").json()
    assert search("メートル")
    operator_client.delete(f"/api/knowledge/{doc['id']}")
    assert search("メートル") == [] and search("東京") == []


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


@pytest.mark.django_db
def test_highlights_stay_on_the_word_when_lowercase_changes_the_length(operator_client):
    # "İ".lower() is two characters: offsets from a lowered copy would drift
    text = "İİİİ İstanbul depot: the key box is 東京 style."
    operator_client.post("/api/knowledge", data={"title": "tr", "content": text},
                         content_type="application/json")
    hit = operator_client.get("/api/knowledge/search?q=東京").json()[0]
    start, end = hit["highlights"][0]
    assert hit["excerpt"][start:end] == "東京"
