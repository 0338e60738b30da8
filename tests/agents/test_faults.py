"""Backend faults over the chat socket: each ends in a clear error frame, a stored
incomplete (or failed) turn, a failed audit event — and no task left running."""

import asyncio
import json

import pytest

from agents.models import Agent, Run
from console.models import AuditEvent, Backend
from tests.agents.test_consumer import connect, cookie_for, frames_until, run
from tests.support.llama_server import free_port
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.usefixtures("live_db")

BIG = "x" * 1_100_000


def sse(payload) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(content: str) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


FAULTS = [
    ("429 with Retry-After", [("status", 429, {"error": {"message": "slow down"}},
                               {"Retry-After": "17"})],
     "backend_error", "rate limiting; try again in 17 s", False),
    ("HTML 502 from a proxy", [("status", 502, "<html><h1>502 Bad Gateway</h1></html>")],
     "backend_error", "an HTML error page", False),
    ("401", [("status", 401, {"error": {"message": "bad key"}})],
     "backend_error", "check the API key", False),
    ("malformed SSE line", text("Hello") + [("raw", b"data: {this is not json\n\n")],
     "backend_error", "malformed stream", True),
    ("reset mid-stream", text("Hello", " there") + [("reset",)],
     "upstream_closed", "closed the stream mid-reply", True),
    ("a multi-megabyte single chunk", text("Start") + [("raw", sse(chunk(BIG)))],
     "reply_too_large", "passed 1000 kB", True),
]


@pytest.fixture
def agent(scripted):
    backend = Backend.objects.create(name="s", kind="openai_compatible", base_url=scripted.url)
    return Agent.objects.create(name="helper", backend=backend, model="scripted-1",
                                first_token_timeout_s=5, idle_timeout_s=5, turn_timeout_s=20)


def turn(user, agent, message="hi"):
    _, cookie = cookie_for(user)

    async def main():
        before = {t for t in asyncio.all_tasks() if not t.done()}
        ws = connect(cookie)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": message})
        frames = await frames_until(ws, "done", timeout=30)
        await ws.disconnect()
        await asyncio.sleep(0.05)
        leaked = {t for t in asyncio.all_tasks() if not t.done()} - before - {
            asyncio.current_task()}
        return frames, leaked

    return run(main())


@pytest.mark.parametrize("name, script, code, message, partial", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_a_backend_fault_ends_cleanly(operator_user, agent, scripted, name, script, code,
                                      message, partial):
    scripted.add(*script)
    frames, leaked = turn(operator_user, agent)
    errors = [f for f in frames if f["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == code, frames
    assert message in errors[0]["message"]
    done = frames[-1]
    assert done["type"] == "done" and done["incomplete"] is True
    run_row = Run.objects.get()
    assert run_row.outcome == ("incomplete" if partial else "error")
    assert message in run_row.error
    if partial:
        reply = run_row.messages.filter(role="assistant").last()
        assert reply.incomplete and reply.content.startswith(("Hello", "Start"))
    event = AuditEvent.objects.get(action="agent.turn")
    assert event.outcome == "failure" and message in event.detail
    assert leaked == set()


def test_unknown_event_fields_are_tolerated(operator_user, agent, scripted):
    odd = chunk("Hi")
    odd["choices"][0]["delta"]["reasoning_content"] = "thinking"
    odd["x_vendor"] = {"anything": True}
    scripted.add(("raw", b": keep-alive comment\n\n"), ("raw", sse(odd)), text(" there"),
                 finish())
    frames, leaked = turn(operator_user, agent)
    assert not [f for f in frames if f["type"] == "error"]
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "Hi there"
    assert Run.objects.get().outcome == "success" and leaked == set()


def test_connection_refused_and_dns_failure_are_named(operator_user, agent):
    for url, expected in ((f"http://127.0.0.1:{free_port()}/v1", "cannot reach"),
                          ("http://no-such-host.invalid/v1", "cannot reach")):
        Backend.objects.filter(pk=agent.backend_id).update(base_url=url)
        Run.objects.all().delete()
        frames, leaked = turn(operator_user, agent)
        error = next(f for f in frames if f["type"] == "error")
        assert expected in error["message"] and leaked == set()
        assert Run.objects.get().outcome == "error"


def test_a_backend_re_pointed_at_the_metadata_address_is_refused(operator_user, agent,
                                                                  monkeypatch):
    import ipaddress

    from console import egress

    async def resolve(host, port):
        return [ipaddress.ip_address("169.254.169.254")]

    monkeypatch.setattr(egress, "resolve", resolve)
    Backend.objects.filter(pk=agent.backend_id).update(base_url="http://edge.example:8000/v1")
    frames, leaked = turn(operator_user, agent)
    error = next(f for f in frames if f["type"] == "error")
    assert "refused to connect" in error["message"] and "cloud-metadata" in error["message"]
    assert leaked == set()


# -- a stream that ends before the reply does (issue 19) ------------------------------

# how a backend's stream can stop after some text, without a finish reason or [DONE]:
# (id, HTTP/1.1 framing of the body, how it ends). The chat client speaks HTTP/1.1 only
# (console.backends.base builds its pool without http2), so these are all the framings.
CUT_OFF = [
    ("close-delimited, clean close", "close", ("no_done",)),
    ("chunked, last chunk sent", "chunked", ("no_done",)),
    ("chunked, cut before the last chunk", "chunked", ("cut",)),
    ("content-length, body cut short", "length", ("cut",)),
    ("close-delimited, connection reset", "close", ("reset",)),
    ("chunked, connection reset", "chunked", ("reset",)),
]
# what a finished stream may lack and still be complete: engines end with a finish reason
# and then [DONE] (llama.cpp: deltas, finish_reason, usage, [DONE]); some omit one of them
COMPLETE = [
    ("finish reason, no [DONE]", "close", [*finish(), ("no_done",)]),
    ("[DONE], no finish reason", "chunked", []),
]
TRANSPORTS = ["websocket", "sse", "json"]


def chat_over(transport, user, agent, message="hi"):
    """One turn over a transport: (error frames, the done frame or JSON reply)."""
    if transport == "websocket":
        frames, leaked = turn(user, agent, message)
        assert leaked == set()
        return [f for f in frames if f["type"] == "error"], frames[-1]
    from django.test import Client

    from tests.agents.test_api import post, sse_frames

    client = Client()
    client.force_login(user)
    if transport == "sse":
        response = post(client, f"/api/agents/{agent.pk}/chat/stream", {"message": message})
        assert response.status_code == 200
        frames = sse_frames(response)
        return [f for f in frames if f["type"] == "error"], frames[-1]
    reply = post(client, f"/api/agents/{agent.pk}/chat", {"message": message}).json()
    return ([{"code": "?", "message": reply["error"]}] if reply["error"] else []), reply


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name, framing, ending", CUT_OFF, ids=[c[0] for c in CUT_OFF])
def test_a_stream_cut_off_mid_reply_is_incomplete(operator_user, agent, scripted, transport,
                                                  name, framing, ending):
    scripted.framing = framing
    scripted.add(text("Hello", " there"), ("sleep", 0.1), ending)  # both read before the end
    errors, end = chat_over(transport, operator_user, agent)
    assert len(errors) == 1, errors
    assert "the backend closed the stream mid-reply" in errors[0]["message"]
    if transport != "json":
        assert errors[0]["code"] == "upstream_closed"
        assert end["type"] == "done" and end["finish_reason"] == "error"
    assert end["incomplete"] is True
    run_row = Run.objects.get()
    assert run_row.outcome == "incomplete" and "closed the stream mid-reply" in run_row.error
    reply = run_row.messages.get(role="assistant")
    assert reply.incomplete and reply.content == "Hello there"
    event = AuditEvent.objects.get(action="agent.turn")
    assert event.outcome == "failure" and "closed the stream mid-reply" in event.detail
    assert len(scripted.requests) == 1  # nothing retried once text had reached the user


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name, framing, tail", COMPLETE, ids=[c[0] for c in COMPLETE])
def test_a_stream_with_one_end_marker_is_complete(operator_user, agent, scripted, transport,
                                                   name, framing, tail):
    scripted.framing = framing
    scripted.add(text("Hello", " there"), *tail)
    errors, end = chat_over(transport, operator_user, agent)
    assert errors == [] and end["incomplete"] is False
    assert Run.objects.get().outcome == "success"
    assert not Run.objects.get().messages.get(role="assistant").incomplete
