"""Agents over the API: versions, validation, and chat turns persisted in one transaction."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import AgentVersion, Conversation, Message, Run, Tool, ToolCall
from console.models import AuditEvent, Backend
from tests.support.scripted_openai import (
    finish,
    text,
    tool_fragments,
    usage,
)

pytestmark = pytest.mark.django_db



@pytest.fixture
def backend(scripted):
    return Backend.objects.create(name="scripted", kind="openai_compatible", base_url=scripted.url)


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type="application/json")


def make_agent(client, backend, **extra):
    body = {"name": "helper", "backend_id": backend.pk, "model": "scripted-1",
            "system_prompt": "Be brief.", "tool_ids": [Tool.objects.get(name="calculator").pk],
            **extra}
    response = post(client, "/api/agents", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_builtin_tools_exist_from_the_first_migration(viewer_client):
    names = {t["name"] for t in viewer_client.get("/api/tools").json()}
    assert {"current_time", "calculator"} <= names


def test_create_update_versions_and_audit(operator_client, backend):
    agent = make_agent(operator_client, backend)
    assert agent["version"] == 1 and agent["kind"] == "assistant"
    patched = operator_client.patch(f"/api/agents/{agent['id']}", data=json.dumps(
        {"temperature": 0.2, "fallbacks": [{"backend_id": backend.pk, "model": "other"}]}),
        content_type="application/json").json()
    assert patched["version"] == 2 and patched["temperature"] == 0.2
    assert patched["fallbacks"] == [{"backend_id": backend.pk, "model": "other"}]
    same = operator_client.patch(f"/api/agents/{agent['id']}", data=json.dumps(
        {"temperature": 0.2}), content_type="application/json").json()
    assert same["version"] == 2  # nothing changed, no new version
    versions = operator_client.get(f"/api/agents/{agent['id']}/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["snapshot"]["temperature"] == 0.7 and versions[0]["created_by"] == "oscar"
    assert list(AuditEvent.objects.filter(action__startswith="agent.").values_list(
        "action", flat=True).order_by("seq")) == ["agent.created", "agent.updated"]


def test_invalid_agents_name_each_field(operator_client, backend):
    response = post(operator_client, "/api/agents", {
        "name": "x", "backend_id": 999, "model": " ", "temperature": 5,
        "fallbacks": [{"backend_id": 12345, "model": "m"}]})
    errors = response.json()["errors"]
    assert response.status_code == 422
    assert {"backend_id", "model", "temperature"} <= set(errors)
    bad_fallback = post(operator_client, "/api/agents", {
        "name": "y", "backend_id": backend.pk, "model": "m",
        "fallbacks": [{"backend_id": 12345, "model": "m"}]})
    assert bad_fallback.json()["errors"]["fallbacks"] == ["fallbacks[0]: unknown backend_id"]
    assert not AgentVersion.objects.exists()


def test_chat_with_tools_is_persisted_and_audited(operator_client, backend, scripted):
    agent = make_agent(operator_client, backend)
    scripted.add(tool_fragments("c1", "calculator", '{"expression": "19*21"}'),
                 finish("tool_calls"), usage(40, 12))
    scripted.add(text("19 × 21 = ", "399"), finish(), usage(70, 5))
    body = post(operator_client, f"/api/agents/{agent['id']}/chat",
                {"message": "what is 19*21?"}).json()
    assert body["reply"] == "19 × 21 = 399" and body["incomplete"] is False
    assert body["tool_calls"][0]["name"] == "calculator" and body["tool_calls"][0]["ok"]
    assert body["metrics"]["tokens_in"] == 110 and body["metrics"]["tokens_out"] == 17
    assert body["metrics"]["ttft_ms"] is not None
    conversation = Conversation.objects.get(pk=body["conversation_id"])
    assert conversation.title == "what is 19*21?" and conversation.owner.username == "oscar"
    roles = list(conversation.messages.values_list("role", flat=True))
    assert roles == ["user", "assistant", "tool", "assistant"]
    run = Run.objects.get()
    assert run.outcome == "success" and run.backend_id == backend.pk and run.usage_reported
    assert ToolCall.objects.get().arguments == {"expression": "19*21"}
    turn = AuditEvent.objects.get(action="agent.turn")
    assert turn.after["tokens_out"] == 17 and "reply" not in turn.after  # log_content off
    assert "399" not in json.dumps(turn.after)
    assert AuditEvent.objects.get(action="tool.called").after["name"] == "calculator"

    # the next turn carries the history, tool messages included
    scripted.add(text("You asked about 19*21."), finish())
    again = post(operator_client, f"/api/agents/{agent['id']}/chat",
                 {"message": "what did I ask?", "conversation_id": conversation.pk}).json()
    assert again["conversation_id"] == conversation.pk
    sent = scripted.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant",
                                         "user"]
    detail = operator_client.get(f"/api/conversations/{conversation.pk}").json()
    assert len(detail["messages"]) == 6


def test_log_content_puts_the_text_in_the_audit(operator_client, backend, scripted):
    agent = make_agent(operator_client, backend, log_content=True)
    scripted.add(text("pong"), finish())
    post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "ping"})
    turn = AuditEvent.objects.get(action="agent.turn")
    assert turn.after["message"] == "ping" and turn.after["reply"] == "pong"


def test_failed_turn_is_stored_incomplete(operator_client, backend, scripted):
    agent = make_agent(operator_client, backend)
    scripted.add(text("Half an "), ("reset",))
    body = post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "go"}).json()
    assert body["incomplete"] is True and body["reply"] == "Half an "
    assert "mid-reply" in body["error"]
    last = Message.objects.order_by("-id").first()
    assert last.role == "assistant" and last.incomplete and last.content == "Half an "
    assert Run.objects.get().outcome == "incomplete"
    assert AuditEvent.objects.get(action="agent.turn").outcome == "failure"


def test_writes_per_turn_do_not_grow_with_the_reply(operator_client, backend, scripted):
    agent = make_agent(operator_client, backend)
    scripted.add(text("warm"), finish())  # the first turn also builds the agent's blueprint
    post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "warm up"})
    counts = []
    for pieces in (3, 300):
        scripted.add(text(*["tok "] * pieces), finish())
        with CaptureQueriesContext(connection) as queries:
            post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "say it"})
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_chat_refusals(operator_client, viewer_client, admin_client, backend, scripted):
    agent = make_agent(operator_client, backend)
    url = f"/api/agents/{agent['id']}/chat"
    assert post(viewer_client, url, {"message": "hi"}).status_code == 403
    assert post(operator_client, url, {"message": "x" * 70000}).json()["errors"]["message"]
    assert post(operator_client, url, {"message": "   "}).status_code == 422
    scripted.add(text("hi"), finish())
    mine = post(operator_client, url, {"message": "hi"}).json()["conversation_id"]
    theirs = post(admin_client, url, {"message": "hi", "conversation_id": mine})
    assert theirs.status_code == 422 and "conversation_id" in theirs.json()["errors"]
    assert viewer_client.get(f"/api/conversations/{mine}").status_code == 404
    assert admin_client.get(f"/api/conversations/{mine}").status_code == 200  # admins read all
    operator_client.patch(f"/api/agents/{agent['id']}", data=json.dumps({"enabled": False}),
                          content_type="application/json")
    disabled = post(operator_client, url, {"message": "hi"})
    assert disabled.status_code == 409 and "disabled" in disabled.json()["detail"]
    assert len(scripted.requests) == 1  # refused turns never reached the backend


@pytest.mark.engine
def test_chat_on_the_real_llama_server(operator_client, llama_server):
    backend = Backend.objects.create(name="llama", kind="llamacpp", base_url=llama_server.url)
    agent = make_agent(operator_client, backend, model="tiny", max_tokens=16, tool_ids=[])
    body = post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "hello"}).json()
    assert body["reply"] and body["incomplete"] is False, body
    metrics = body["metrics"]
    assert metrics["tokens_out"] == 16 and metrics["tokens_in"] > 0
    assert metrics["ttft_ms"] > 0 and metrics["tokens_per_s"] > 0
    assert Run.objects.get().usage_reported is True


def test_version_diff_and_restore(operator_client, viewer_client, backend):
    agent = make_agent(operator_client, backend)
    url = f"/api/agents/{agent['id']}"
    operator_client.patch(url, data=json.dumps({"system_prompt": "Be verbose.",
                                                "temperature": 1.1}),
                          content_type="application/json")
    changes = {c["field"]: c for c in operator_client.get(f"{url}/versions/1/diff").json()}
    assert set(changes) == {"system_prompt", "temperature"}
    assert changes["system_prompt"]["version_value"] == "Be brief."
    assert viewer_client.post(f"{url}/versions/1/restore").status_code == 403
    restored = operator_client.post(f"{url}/versions/1/restore").json()
    assert restored["version"] == 3 and restored["system_prompt"] == "Be brief."
    assert restored["temperature"] == 0.7
    again = operator_client.post(f"{url}/versions/1/restore")
    assert again.status_code == 409 and "same as the agent now" in again.json()["detail"]
    event = AuditEvent.objects.get(action="agent.restored")
    assert event.after == {"restored_version": 1, "new_version": 3}
    page = operator_client.get(f"/agents/{agent['id']}/versions/2/").content.decode()
    assert "Restore version 2" in page and "Be verbose." in page


def test_client_supplied_routing_fields_are_ignored(operator_client, backend, scripted):
    """A caller cannot send a turn (and the agent's stored key) somewhere else."""
    from tests.support.scripted_openai import ScriptedOpenAI, finish, text

    evil = ScriptedOpenAI().start()
    try:
        other = Backend.objects.create(name="other", kind="openai_compatible",
                                       base_url=evil.url, api_key="sk-other-backend-key")
        agent = operator_client.post("/api/agents", data={
            "name": "routed", "backend_id": backend.pk, "model": "scripted-1"},
            content_type="application/json").json()
        scripted.add(text("from the agent's backend"), finish())
        reply = operator_client.post(f"/api/agents/{agent['id']}/chat", data={
            "message": "hi", "base_url": evil.url, "backend_id": other.pk,
            "model": "gpt-evil", "api_base": evil.url}, content_type="application/json").json()
        assert reply["reply"] == "from the agent's backend"
        assert scripted.requests[-1]["model"] == "scripted-1" and evil.requests == []
    finally:
        evil.stop()


def sse_frames(response) -> list[dict]:
    from asgiref.sync import async_to_sync

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    body = async_to_sync(read)().decode()
    assert body.endswith("\n\n")
    return [json.loads(line.removeprefix("data: ")) for line in body.split("\n\n") if line]


@pytest.mark.usefixtures("live_db")  # the stream saves from another thread
def test_chat_stream_sends_the_websocket_frames_and_stores_the_turn(operator_client, backend,
                                                                   scripted):
    from agents.tools.builtin import SPECS

    spec = SPECS["calculator"]  # transactional tests flush the seeded rows
    Tool.objects.get_or_create(name="calculator", defaults={
        "kind": "builtin", "description": spec["description"], "parameters": spec["parameters"]})
    agent = make_agent(operator_client, backend)
    scripted.add(tool_fragments("c1", "calculator", '{"expression": "6*7"}'),
                 finish("tool_calls"))
    scripted.add(text("6 × 7 ", "= 42"), finish(), usage(30, 4))
    response = post(operator_client, f"/api/agents/{agent['id']}/chat/stream",
                    {"message": "six sevens?"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["X-Accel-Buffering"] == "no"
    frames = sse_frames(response)
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "turn_started" and kinds[-1] == "done"
    assert {"tool_call", "tool_result"} <= set(kinds)
    deltas = [f["text"] for f in frames if f["type"] == "delta"]
    assert deltas == ["6 × 7 ", "= 42"]  # one event per token, no batching
    done = frames[-1]
    assert done["incomplete"] is False and done["metrics"]["ttft_ms"] is not None
    conversation = Conversation.objects.get(pk=done["conversation_id"])
    assert list(conversation.messages.values_list("role", flat=True)) == [
        "user", "assistant", "tool", "assistant"]
    assert conversation.messages.last().content == "6 × 7 = 42"
    assert Run.objects.get().outcome == "success"
    assert AuditEvent.objects.filter(action="agent.turn").count() == 1


def test_chat_stream_refuses_like_chat(operator_client, viewer_client, backend):
    agent = make_agent(operator_client, backend)
    url = f"/api/agents/{agent['id']}/chat/stream"
    assert post(viewer_client, url, {"message": "hi"}).status_code == 403
    blank = post(operator_client, url, {"message": "  "})
    assert blank.status_code == 422 and "message" in blank.json()["errors"]
    assert post(operator_client, "/api/agents/9999/chat/stream",
                {"message": "hi"}).status_code == 404
    assert not Conversation.objects.exists()


def test_regenerate_over_the_api_replaces_the_last_answer(operator_client, viewer_client,
                                                          backend, scripted):
    agent = make_agent(operator_client, backend)
    scripted.add(text("a first try"), finish())
    scripted.add(text("a better answer"), finish(), usage(12, 3))
    first = post(operator_client, f"/api/agents/{agent['id']}/chat", {"message": "explain"})
    cid = first.json()["conversation_id"]
    url = f"/api/conversations/{cid}/regenerate"
    assert post(viewer_client, url, {}).status_code == 403
    response = post(operator_client, url, {})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["conversation_id"] == cid and body["reply"] == "a better answer"
    assert body["incomplete"] is False
    assert scripted.requests[1]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "explain"}]
    stored = operator_client.get(f"/api/conversations/{cid}").json()["messages"]
    assert [(m["role"], m["content"], m["superseded"]) for m in stored] == [
        ("user", "explain", False), ("assistant", "a first try", True),
        ("assistant", "a better answer", False)]
    turns = AuditEvent.objects.filter(action="agent.turn").order_by("seq")
    assert [t.after.get("regenerated", False) for t in turns] == [False, True]
    assert post(operator_client, "/api/conversations/9999/regenerate", {}).status_code == 404


@pytest.mark.usefixtures("live_db")  # the stream saves from another thread
def test_regenerate_streamed_over_sse(operator_client, backend, scripted):
    from agents.tools.builtin import SPECS

    spec = SPECS["calculator"]  # transactional tests flush the seeded rows
    Tool.objects.get_or_create(name="calculator", defaults={
        "kind": "builtin", "description": spec["description"], "parameters": spec["parameters"]})
    agent = make_agent(operator_client, backend)
    scripted.add(text("one"), finish())
    scripted.add(text("two"), finish())
    cid = post(operator_client, f"/api/agents/{agent['id']}/chat",
               {"message": "count"}).json()["conversation_id"]
    frames = sse_frames(post(operator_client, f"/api/conversations/{cid}/regenerate/stream",
                             {}))
    assert frames[0]["type"] == "turn_started" and frames[0]["regenerate"] is True
    assert [f["text"] for f in frames if f["type"] == "delta"] == ["two"]
    assert frames[-1]["type"] == "done" and frames[-1]["incomplete"] is False
    assert list(Message.objects.filter(conversation_id=cid).order_by("id").values_list(
        "content", "superseded")) == [("count", False), ("one", True), ("two", False)]
    assert scripted.requests[1]["messages"][-1] == {"role": "user", "content": "count"}
    assert len(scripted.requests[1]["messages"]) == 2  # the system prompt and the question
