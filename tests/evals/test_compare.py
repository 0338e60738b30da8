"""Compare: one message to several targets, streamed side by side through the turn
service; going on with a column, keeping its settings as an agent version; *Replay* from
a turn or a trace span; *Add to dataset* from a trace."""

import asyncio
import json

import pytest
from django.utils import timezone

from agents.models import Agent, AgentVersion, Conversation, Message, Run
from console.models import AuditEvent, Backend
from evals.models import Dataset
from tests.support.asgi_client import post_then_leave
from tests.support.scripted_openai import finish, text, usage
from traces.models import Span, Trace

pytestmark = pytest.mark.usefixtures("live_db")  # the columns save from other threads


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def frames_of(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/event-stream"
    from asgiref.sync import async_to_sync

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    body = async_to_sync(read)().decode()
    return [json.loads(chunk.removeprefix("data: ")) for chunk in body.split("\n\n") if chunk]


def by_temperature(body):
    """A model whose answer says what it was asked with (temperature, history)."""
    said = [m["content"] for m in body["messages"] if m["role"] != "system"]
    return text(f"t={body.get('temperature')} ", f"heard {len(said)}") + finish() \
        + usage(12, 5)


@pytest.fixture
def box(scripted):
    scripted.responder = by_temperature
    return Backend.objects.create(name="edge-box", kind="openai_compatible",
                                  base_url=scripted.url)


@pytest.fixture
def desk(box):
    return Agent.objects.create(name="desk", backend=box, model="scripted-1",
                                system_prompt="Be brief.", temperature=0.7, max_tokens=200)


HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def test_a_comparison_streams_into_every_column_and_keeps_each_turn(
        operator_client, box, desk, scripted):
    response = post(operator_client, "/api/compare", {
        "messages": HISTORY, "text": "What is 2+2?", "targets": [
            {"agent_id": desk.pk, "params": {"temperature": 0.1, "max_tokens": 20}},
            {"backend_id": box.pk, "model": "scripted-1"}]})
    frames = frames_of(response)
    started, done = frames[0], frames[-1]
    assert started["type"] == "compare_started" and done["type"] == "compare_done"
    assert [c["label"] for c in started["columns"]] == ["desk", "scripted-1 on edge-box"]
    assert started["columns"][1]["quick"] is True
    # each column's tokens arrive as their own frames, tagged with the column
    deltas = {0: "", 1: ""}
    for frame in frames:
        if frame["type"] == "delta":
            deltas[frame["column"]] += frame["text"]
    assert deltas == {0: "t=0.1 heard 3", 1: "t=0.7 heard 3"}
    ended = {f["column"]: f for f in frames if f["type"] == "column_done"}
    assert set(ended) == {0, 1}
    for column in ended.values():
        assert column["error"] == "" and column["conversation_id"]
        metrics = column["metrics"]
        assert metrics["ttft_ms"] is not None and metrics["total_ms"] >= metrics["ttft_ms"]
        assert metrics["tokens_out"] == 5 and metrics["tokens_in"] == 12
    assert done["columns"] == [ended[0], ended[1]]
    # the engine got the history, the question and each target's own parameters
    assert len(scripted.requests) == 2
    sent = sorted(scripted.requests, key=lambda r: r["temperature"])
    assert sent[0]["temperature"] == 0.1 and sent[0]["max_tokens"] == 20
    assert [m["content"] for m in sent[0]["messages"]] == [
        "Be brief.", "Hi", "Hello!", "What is 2+2?"]
    # each column is a turn: a conversation (out of the playground's list), a run, audit
    kept = Conversation.objects.get(pk=ended[0]["conversation_id"])
    assert kept.origin == "compare" and kept.agent == desk
    assert list(kept.messages.values_list("role", "content")) == [
        ("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?"),
        ("assistant", "t=0.1 heard 3")]
    assert Run.objects.count() == 2
    listed = operator_client.get("/api/conversations").json()
    assert all(c["id"] != kept.pk for c in listed)
    assert AuditEvent.objects.filter(action="agent.turn").count() == 2
    event = AuditEvent.objects.get(action="agent.compared")
    assert [t["label"] for t in event.after["targets"]] == ["desk", "scripted-1 on edge-box"]
    assert event.after["targets"][0]["params"] == {"temperature": 0.1, "max_tokens": 20}
    assert "2+2" not in json.dumps(event.after)  # never the messages' text


def test_one_target_that_fails_never_stops_the_others(operator_client, box):
    dead = Backend.objects.create(name="gone", kind="openai_compatible",
                                  base_url="http://127.0.0.1:9/v1")
    frames = frames_of(post(operator_client, "/api/compare", {"text": "hello", "targets": [
        {"backend_id": dead.pk, "model": "m"}, {"backend_id": box.pk, "model": "scripted-1"}]}))
    ended = {f["column"]: f for f in frames if f["type"] == "column_done"}
    assert ended[0]["error"].startswith("cannot reach gone/m")
    assert ended[1]["error"] == "" and ended[1]["metrics"]["tokens_out"] == 5
    assert any(f["type"] == "error" and f["column"] == 0 for f in frames)
    assert frames[-1]["type"] == "compare_done"


def test_going_on_with_a_column_puts_it_in_the_playground(operator_client, viewer_client,
                                                          box, desk):
    frames = frames_of(post(operator_client, "/api/compare", {"text": "hello", "targets": [
        {"agent_id": desk.pk}, {"backend_id": box.pk, "model": "scripted-1"}]}))
    chosen = next(f for f in frames if f["type"] == "column_done" and f["column"] == 0)
    went = post(operator_client, "/api/compare/continue",
                {"conversation_id": chosen["conversation_id"]})
    assert went.status_code == 200, went.content
    assert went.json()["url"] == f"/playground/?c={chosen['conversation_id']}"
    assert went.json()["agent_id"] == desk.pk
    listed = [c["id"] for c in operator_client.get("/api/conversations").json()]
    assert chosen["conversation_id"] in listed and len(listed) == 1
    page = operator_client.get(went.json()["url"])
    assert b"t=0.7 heard 1" in page.content
    assert AuditEvent.objects.filter(action="conversation.continued").count() == 1
    # only once; only a comparison's; only your own; a number
    again = post(operator_client, "/api/compare/continue",
                 {"conversation_id": chosen["conversation_id"]})
    assert again.status_code == 409
    for bad in ("1", None, True, 99999):
        refused = post(operator_client, "/api/compare/continue", {"conversation_id": bad})
        assert refused.status_code == 422 and "conversation_id" in refused.json()["errors"]
    other = next(f for f in frames if f["type"] == "column_done" and f["column"] == 1)
    assert post(viewer_client, "/api/compare/continue",
                {"conversation_id": other["conversation_id"]}).status_code == 403


def test_a_columns_settings_become_the_agents_next_version(operator_client, viewer_client,
                                                           box, desk):
    saved = post(operator_client, "/api/compare/save",
                 {"agent_id": desk.pk, "params": {"temperature": 0.1, "max_tokens": 20,
                                                  "seed": 3}})
    assert saved.status_code == 200, saved.content
    assert saved.json() == {"agent_id": desk.pk, "name": "desk", "version": 2,
                            "url": f"/agents/{desk.pk}/"}
    desk.refresh_from_db()
    assert (desk.temperature, desk.max_tokens, desk.version) == (0.1, 20, 2)
    assert AgentVersion.objects.filter(agent=desk, version=2).exists()
    assert AuditEvent.objects.filter(action="agent.updated").count() == 1
    same = post(operator_client, "/api/compare/save",
                {"agent_id": desk.pk, "params": {"temperature": 0.1, "max_tokens": 20}})
    assert same.status_code == 409 and "already" in same.json()["detail"]
    # a quick chat becomes an agent, with a name of its own if given
    quick = Agent.objects.create(name="scripted-1 on edge-box", backend=box,
                                 model="scripted-1", quick=True)
    made = post(operator_client, "/api/compare/save",
                {"agent_id": quick.pk, "params": {"temperature": 0}, "name": "cold desk"})
    assert made.status_code == 200, made.content
    quick.refresh_from_db()
    assert (quick.quick, quick.name, quick.temperature) == (False, "cold desk", 0)
    for body, field in [
            ({"agent_id": desk.pk, "params": {"seed": 3}}, "params"),
            ({"agent_id": desk.pk}, "params"),
            ({"agent_id": desk.pk, "params": {"temperature": 5}}, "params.temperature"),
            ({"agent_id": desk.pk, "params": {"max_tokens": "many"}}, "params.max_tokens"),
            ({"agent_id": desk.pk, "params": {"warmth": 1}}, "params.warmth"),
            ({"agent_id": "desk", "params": {"temperature": 0}}, "agent_id"),
            ({"agent_id": 99999, "params": {"temperature": 0}}, "agent_id"),
            ({"agent_id": desk.pk, "params": {"temperature": 0}, "name": ""}, "name"),
            ({"agent_id": desk.pk, "params": {"temperature": 0}, "colour": 1}, "colour")]:
        refused = post(operator_client, "/api/compare/save", body)
        assert refused.status_code == 422, (body, refused.content)
        assert field in refused.json()["errors"], (body, refused.json())
    desk.refresh_from_db()
    assert desk.version == 2
    assert post(viewer_client, "/api/compare/save",
                {"agent_id": desk.pk, "params": {"temperature": 0}}).status_code == 403


@pytest.mark.parametrize("body,field", [
    ({}, "text"),
    ({"text": "   "}, "text"),
    ({"text": 5, "targets": [{"agent_id": 1}]}, "text"),
    ({"text": "hi"}, "targets"),
    ({"text": "hi", "targets": []}, "targets"),
    ({"text": "hi", "targets": [{"agent_id": "DESK"}] * 5}, "targets"),
    ({"text": "hi", "targets": [{"agent_id": 99999}]}, "targets[0].agent_id"),
    ({"text": "hi", "targets": [{}]}, "targets[0].backend_id"),
    ({"text": "hi", "targets": [{"backend_id": "BOX"}]}, "targets[0].model"),
    ({"text": "hi", "targets": [{"agent_id": "DESK", "params": {"temperature": 9}}]},
     "targets[0].params.temperature"),
    ({"text": "hi", "targets": [{"agent_id": "DESK", "params": {"top_k": 9}}]},
     "targets[0].params.top_k"),
    ({"text": "hi", "targets": [{"agent_id": "DESK", "colour": "red"}]}, "targets[0].colour"),
    ({"messages": "hi", "targets": [{"agent_id": "DESK"}]}, "messages"),
    ({"messages": [{"role": "bot", "content": "x"}], "text": "hi",
      "targets": [{"agent_id": "DESK"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ""}], "targets": [{"agent_id": "DESK"}]},
     "messages[0].content"),
    ({"messages": HISTORY, "targets": [{"agent_id": "DESK"}]}, "messages"),
    ({"text": "x" * 70_000, "targets": [{"agent_id": "DESK"}]}, "text"),
    ({"text": "hi", "targets": [{"agent_id": "DESK"}], "title": "t" * 201}, "title"),
    ({"text": "hi", "targets": [{"agent_id": "DESK"}], "stream": True}, "stream"),
])
def test_bad_input_names_the_field_and_asks_no_one(operator_client, box, desk, scripted,
                                                   body, field):
    def fill(value):
        if value == "DESK":
            return desk.pk
        if value == "BOX":
            return box.pk
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    response = post(operator_client, "/api/compare", fill(body))
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"], response.json()
    assert scripted.requests == [] and not Conversation.objects.exists()
    assert not AuditEvent.objects.filter(action="agent.compared").exists()


def test_a_viewer_may_not_compare(viewer_client, desk):
    response = post(viewer_client, "/api/compare", {"text": "hi",
                                                    "targets": [{"agent_id": desk.pk}]})
    assert response.status_code == 403 and not Conversation.objects.exists()


def test_a_client_that_goes_away_stops_every_column(operator_user, box, scripted):
    """The ASGI app driven as a server drives it: the request, then http.disconnect."""
    from console.actions.users import create_token
    from console.audit import Actor

    scripted.responder = lambda body: [item for _ in range(200)
                                       for item in [("sleep", 0.05), *text("x")]] + finish()
    _, token = create_token(Actor(username="test"), operator_user, "sse")
    asyncio.run(post_then_leave("/api/compare", {"text": "slow?", "targets": [
        {"backend_id": box.pk, "model": "scripted-1", "params": {"temperature": 0}},
        {"backend_id": box.pk, "model": "scripted-1", "params": {"temperature": 1}}]}, token,
        lambda frames: {f["column"] for f in frames if f["type"] == "delta"} == {0, 1}))
    runs = list(Run.objects.all())
    assert [r.outcome for r in runs] == ["cancelled", "cancelled"]
    kept = list(Message.objects.filter(role="assistant"))
    assert len(kept) == 2 and all(m.incomplete and 0 < len(m.content) < 200 for m in kept)
    event = AuditEvent.objects.get(action="agent.compared")
    assert all(t["stopped"] for t in event.after["targets"])
    kept_in = {m.conversation_id for m in kept}
    assert {t["conversation_id"] for t in event.after["targets"]} == kept_in


# -- replay and add to dataset from a trace ---------------------------------------------

def span(trace_id, span_id, attributes, *, external=False, start=1):
    now = timezone.now()
    Trace.objects.get_or_create(trace_id=trace_id, defaults={
        "started_at": now, "ended_at": now, "name": "chat m", "external": external})
    return Span.objects.create(trace_id=trace_id, span_id=span_id, name="chat m",
                               start_ns=start, end_ns=start + 10, external=external,
                               attributes=attributes, received_at=timezone.now())


@pytest.fixture
def turn(operator_user, desk):
    conversation = Conversation.objects.create(owner=operator_user, agent=desk, title="t")
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(conversation=conversation, role="assistant", content="Hello!")
    second = Message.objects.create(conversation=conversation, role="user", content="2+2?")
    run = Run.objects.create(conversation=conversation, agent=desk, model="scripted-1",
                             started_at=timezone.now(), trace_id="ab" * 16)
    Message.objects.create(conversation=conversation, role="assistant", content="4", run=run)
    return conversation, second


def test_replay_from_a_turn_and_from_a_span(operator_client, turn):
    conversation, second = turn
    got = operator_client.get(f"/api/compare/replay?conversation_id={conversation.pk}"
                              f"&message_id={second.pk}")
    assert got.json()["messages"] == [*HISTORY, {"role": "user", "content": "2+2?"}]
    # Tanglaw's own model call: the agent's prompt is the targets' own, so it is left out
    span("cd" * 16, "1" * 16, {"gen_ai.input.messages": json.dumps([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
        {"role": "tool", "content": "{}"}, {"role": "user", "content": "And 3+3?"}])})
    got = operator_client.get(f"/api/compare/replay?trace_id={'cd' * 16}&span_id={'1' * 16}")
    assert got.json()["messages"] == [{"role": "user", "content": "Hi"},
                                      {"role": "user", "content": "And 3+3?"}]
    # a code-first agent's span, in the GenAI parts shape, with its system instructions
    span("ef" * 16, "2" * 16, {
        "gen_ai.system_instructions": [{"type": "text", "content": "You sell bolts."}],
        "gen_ai.input.messages": [{"role": "user", "parts": [
            {"type": "text", "content": "Price of M6?"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "parts": [
            {"type": "text", "content": "12 cents"}]}]}, external=True)
    got = operator_client.get(f"/api/compare/replay?trace_id={'ef' * 16}")
    assert got.json()["messages"] == [{"role": "system", "content": "You sell bolts."},
                                      {"role": "user", "content": "Price of M6?"}]
    # a trace that kept no content: its turn's conversation
    span("ab" * 16, "3" * 16, {"gen_ai.operation.name": "chat"})
    got = operator_client.get(f"/api/compare/replay?trace_id={'ab' * 16}")
    assert got.json()["messages"][-1] == {"role": "user", "content": "2+2?"}
    for query, field in [("trace_id=" + "00" * 16, "trace_id"),
                         (f"trace_id={'cd' * 16}&span_id=nope", "span_id"), ("", "trace_id"),
                         ("conversation_id=99999", "conversation_id")]:
        refused = operator_client.get(f"/api/compare/replay?{query}")
        assert refused.status_code == 422 and field in refused.json()["errors"], query


def test_the_compare_page_and_its_replay(operator_client, viewer_client, turn, desk):
    conversation, second = turn
    page = operator_client.get("/compare/")
    assert page.status_code == 200
    assert b'id="compare-form"' in page.content and b"desk" in page.content
    replay = operator_client.get(f"/compare/?conversation={conversation.pk}"
                                 f"&message={second.pk}")
    assert b"Earlier messages (2)" in replay.content and b">2+2?</textarea>" in replay.content
    missing = operator_client.get("/compare/?trace=" + "00" * 16)
    assert missing.status_code == 200 and b"Nothing to replay: " in missing.content
    # hex ids that happen to be all digits are ids, not numbers too large for the database
    for url in ("/compare/?trace=" + "12" * 16 + "&span=" + "3" * 16,
                "/traces/?request=" + "4" * 32):
        assert operator_client.get(url).status_code == 200, url
    playground = operator_client.get(f"/playground/?c={conversation.pk}")
    assert f"/compare/?conversation={conversation.pk}&amp;message={second.pk}".encode() \
        in playground.content
    assert viewer_client.get("/compare/").status_code == 403


def test_add_to_dataset_from_a_trace(operator_client, turn):
    dataset = Dataset.objects.get(pk=post(operator_client, "/api/datasets", {
        "name": "desk", "cases": [{"id": "one", "messages": "x"}]}).json()["id"])
    # a Tanglaw turn: from its conversation, with the trace as its source
    span("ab" * 16, "3" * 16, {"gen_ai.operation.name": "chat"})
    added = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                 {"trace_id": "ab" * 16})
    assert added.status_code == 201, added.content
    case = added.json()["cases"][1]
    assert case["messages"][-1]["content"] == "2+2?" and case["expected"] == "4"
    assert case["source"]["trace_id"] == "ab" * 16
    # a code-first agent's span: its input, and its output as the expected answer
    span("ef" * 16, "2" * 16, {
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": "Price of M6?"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "12 cents"}]}])}, external=True)
    page = operator_client.get(f"/traces/{'ef' * 16}/")
    assert b"Add to dataset" in page.content and b"Replay" in page.content
    form = operator_client.get(f"/datasets/add-turn/?trace={'ef' * 16}")
    assert b"Add this turn" in form.content
    done = operator_client.post("/datasets/add-turn/", {
        "trace": "ef" * 16, "span": "2" * 16, "dataset": dataset.pk, "expected": "1"},
        follow=True)
    assert b"Added the turn to desk (version 3, 3 cases)" in done.content
    case = Dataset.objects.get(pk=dataset.pk).versions.get(number=3).cases[2]
    assert case == {"id": "span-" + "2" * 16, "checks": [],
                    "messages": [{"role": "user", "content": "Price of M6?"}],
                    "expected": "12 cents",
                    "source": {"trace_id": "ef" * 16, "span_id": "2" * 16}}
    refused = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                   {"trace_id": "00" * 16})
    assert refused.status_code == 422 and "trace_id" in refused.json()["errors"]


def test_columns_no_one_continued_are_pruned_after_a_while(operator_user, desk):
    from datetime import timedelta

    from agents.actions import prune_comparisons

    old = timezone.now() - timedelta(hours=73)
    made = {}
    for name, origin, when in [("stale", "compare", old), ("fresh", "compare", None),
                               ("continued", "", old)]:
        conversation = Conversation.objects.create(owner=operator_user, agent=desk,
                                                   origin=origin, title=name)
        Message.objects.create(conversation=conversation, role="user", content=name)
        Run.objects.create(conversation=conversation, agent=desk, model="m",
                           started_at=timezone.now())
        if when is not None:
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
        made[name] = conversation.pk
    assert prune_comparisons() == 1
    assert set(Conversation.objects.values_list("title", flat=True)) == {"fresh", "continued"}
    assert Run.objects.count() == 3  # the traffic history stays
    assert not Message.objects.filter(content="stale").exists()
