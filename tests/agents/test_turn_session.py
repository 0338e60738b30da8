"""One turn service for every transport (agents.turns.TurnSession): approvals over the
chat API and its stream, a stream client that goes away, a question that cannot be
saved, and the single save of a stopped turn."""

import asyncio
import contextlib
import json
import time

import pytest
from django.core.cache import cache
from django.test import AsyncClient, Client

from agents import actions
from agents.models import Approval, Message, Run, Tool
from console.models import AuditEvent
from tests.agents.test_consumer import agent, connect, cookie_for, frames_until  # noqa: F401
from tests.support.asgi_client import post_then_leave
from tests.support.scripted_openai import finish, text, tool_whole

pytestmark = pytest.mark.usefixtures("live_db")


def approval_script(scripted):
    Tool.objects.filter(name="calculator").update(requires_approval=True)
    scripted.add(tool_whole("call-1", "calculator", '{"expression": "2+2"}'),
                 finish("tool_calls"))
    scripted.add(text("it is 4"), finish())


def waiting_approval(client: Client, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = client.get("/api/approvals").json()
        if pending:
            return pending[0]
        time.sleep(0.05)
    raise AssertionError("no approval appeared")


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_approvals_over_the_json_chat_api(operator_user, agent, scripted,  # noqa: F811
                                          decision):
    approval_script(scripted)
    chat_client, approver = Client(), Client()
    chat_client.force_login(operator_user)
    approver.force_login(operator_user)
    result: dict = {}

    async def main():
        # the whole-turn request waits for the decision while another client gives it
        async def chat():
            client = AsyncClient()
            await client.aforce_login(operator_user)
            response = await client.post(f"/api/agents/{agent.pk}/chat",
                                         {"message": "2+2?"}, content_type="application/json")
            result["status"], result["body"] = response.status_code, response.json()

        task = asyncio.create_task(chat())
        pending = await asyncio.to_thread(waiting_approval, approver)
        decided = await asyncio.to_thread(
            approver.post, f"/api/approvals/{pending['id']}", {"decision": decision},
            content_type="application/json")
        result["pending"], result["decided"] = pending, decided
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    pending, body = result["pending"], result["body"]
    assert result["status"] == 200, body
    assert pending["tool"] == "calculator" and pending["transport"] == "api"
    assert pending["arguments"] == {"expression": "2+2"} and pending["status"] == "pending"
    assert result["decided"].status_code == 200
    call = body["tool_calls"][0]
    if decision == "approve":
        assert call["ok"] is True and call["approved_by"] == "oscar"
    else:
        assert call["ok"] is False and "denied by oscar" in call["result_summary"]
    assert body["reply"] == "it is 4"
    row = Approval.objects.get()
    assert row.status == ("approved" if decision == "approve" else "denied")
    event = AuditEvent.objects.get(action="tool.approval_decided")
    assert event.after["decision"] == row.status and event.actor == "oscar"
    # decided once: a second decision is refused, and the list is empty again
    again = approver.post(f"/api/approvals/{row.pk}", {"decision": "approve"},
                          content_type="application/json")
    assert again.status_code == 409 and approver.get("/api/approvals").json() == []


def test_approval_over_the_stream_carries_its_id(operator_user, agent, scripted):  # noqa: F811
    approval_script(scripted)
    approver = Client()
    approver.force_login(operator_user)

    async def main():
        client = AsyncClient()
        await client.aforce_login(operator_user)
        response = await client.post(f"/api/agents/{agent.pk}/chat/stream",
                                     {"message": "2+2?"}, content_type="application/json")
        frames = []
        async for chunk in response.streaming_content:
            for line in chunk.decode().splitlines():
                if line.startswith("data: "):
                    frame = json.loads(line[6:])
                    frames.append(frame)
                    if frame["type"] == "approval_required":
                        answer = await asyncio.to_thread(
                            approver.post, f"/api/approvals/{frame['approval_id']}",
                            {"decision": "approve"}, content_type="application/json")
                        assert answer.status_code == 200
        return frames

    frames = asyncio.run(main())
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "turn_started" and kinds[-1] == "done"
    assert kinds.index("approval_required") < kinds.index("tool_result")
    assert next(f for f in frames if f["type"] == "tool_result")["ok"] is True
    assert Approval.objects.get().transport == "sse"


def test_an_undecided_approval_expires_and_the_turn_goes_on(operator_user, agent, scripted,  # noqa: F811
                                                            monkeypatch):
    from agents.runtime import tools as runtime_tools

    monkeypatch.setattr(runtime_tools, "APPROVAL_TIMEOUT_S", 1.0)
    approval_script(scripted)
    client = Client()
    client.force_login(operator_user)
    body = client.post(f"/api/agents/{agent.pk}/chat", {"message": "2+2?"},
                       content_type="application/json").json()
    assert body["tool_calls"][0]["ok"] is False
    assert Approval.objects.get().status == "expired"
    assert client.post(f"/api/approvals/{Approval.objects.get().pk}", {"decision": "approve"},
                       content_type="application/json").status_code == 409


def test_approvals_page_lists_and_decides(operator_user, viewer_user, agent, scripted):  # noqa: F811
    approval_script(scripted)
    client = Client()
    client.force_login(operator_user)
    page = client.get("/approvals/")
    assert page.status_code == 200 and b"Nothing is waiting for you" in page.content
    viewer = Client()
    viewer.force_login(viewer_user)
    assert viewer.get("/approvals/").status_code == 403

    async def main():
        async def chat():
            other = AsyncClient()
            await other.aforce_login(operator_user)
            return await other.post(f"/api/agents/{agent.pk}/chat", {"message": "2+2?"},
                                    content_type="application/json")

        task = asyncio.create_task(chat())
        pending = await asyncio.to_thread(waiting_approval, client)
        listed = await asyncio.to_thread(client.get, "/approvals/")
        assert b"calculator" in listed.content and b"expression" in listed.content
        # someone else's approval is not theirs to decide
        stranger = await asyncio.to_thread(viewer.post, f"/api/approvals/{pending['id']}",
                                           {"decision": "approve"},
                                           content_type="application/json")
        assert stranger.status_code == 403
        decided = await asyncio.to_thread(client.post, f"/approvals/{pending['id']}/decide/",
                                          {"decision": "approve"})
        assert decided.status_code == 302
        return await asyncio.wait_for(task, 20)

    response = asyncio.run(main())
    assert response.json()["tool_calls"][0]["approved_by"] == "oscar"
    assert b"Approved" in client.get("/approvals/").content
    assert client.post("/approvals/999999/decide/", {"decision": "approve"}).status_code == 404


def test_a_stream_client_that_goes_away_stops_the_turn_within_a_second(operator_user,
                                                                       agent,  # noqa: F811
                                                                       scripted):
    """The ASGI app driven as a server drives it: the request, then http.disconnect."""
    from console.actions.users import create_token
    from console.audit import Actor

    scripted.add(*[[("sleep", 0.05)] + text("x") for _ in range(400)], finish())
    _, token = create_token(Actor(username="test"), operator_user, "sse")
    sent, took = asyncio.run(post_then_leave(
        f"/api/agents/{agent.pk}/chat/stream", {"message": "long"}, token,
        lambda frames: any(f["type"] == "delta" for f in frames)))
    start = next(m for m in sent if m.get("type") == "http.response.start")
    assert start["status"] == 200
    assert took < 1.0, f"the turn ran on for {took:.2f} s after the client left"
    run_row = Run.objects.get()
    assert run_row.outcome == "cancelled"
    reply = Message.objects.get(role="assistant")
    assert reply.incomplete and reply.content.startswith("x") and len(reply.content) < 400
    assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 0
    deadline = time.monotonic() + 3  # the backend notices at its next write
    while scripted.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted.disconnects == 1  # the upstream stream was closed


@pytest.mark.parametrize("transport", ["websocket", "sse", "json"])
def test_a_question_that_cannot_be_saved_stops_the_turn_with_a_clear_error(
        operator_user, agent, scripted, monkeypatch, transport):  # noqa: F811
    def broken(prepared):
        raise OSError("disk full")

    monkeypatch.setattr(actions, "store_start", broken)
    scripted.add(*[[("sleep", 0.05)] + text("x") for _ in range(40)], finish())
    if transport == "websocket":
        _, cookie = cookie_for(operator_user)

        async def main():
            ws = connect(cookie)
            await ws.connect()
            await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                                   "conversation_id": None, "text": "hi"})
            frames = await frames_until(ws, "done")
            await ws.disconnect()
            return frames

        frames = asyncio.run(main())
        error = frames[0]
    else:
        client = Client()
        client.force_login(operator_user)
        url = f"/api/agents/{agent.pk}/chat" + ("/stream" if transport == "sse" else "")
        response = client.post(url, {"message": "hi"}, content_type="application/json")
        if transport == "sse":
            assert response.status_code == 200
            from tests.agents.test_api import sse_frames

            frames = sse_frames(response)
            error = frames[0]
            assert frames[-1]["type"] == "done" and frames[-1]["incomplete"] is True
        else:
            assert response.status_code == 503
            error = {"type": "error", "message": response.json()["detail"]}
    assert error["type"] == "error" and "could not be saved" in error["message"]
    assert "disk full" not in json.dumps(error)
    assert not Message.objects.exists() and not Run.objects.exists()
    assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 0


def test_a_turn_cancelled_while_it_starts_gives_its_slots_back(operator_user, agent,  # noqa: F811
                                                               monkeypatch):
    """The first hop takes the generation slots; a caller cancelled during it (a client
    gone, a comparison stopped) must not leave them taken until they expire."""
    from agents.turns import TurnSession
    from console.audit import Actor

    real = actions.prepare_gateway
    entered = []

    def slow(*args, **kwargs):
        prepared = real(*args, **kwargs)
        entered.append(True)
        time.sleep(0.5)  # the caller is cancelled meanwhile
        return prepared

    monkeypatch.setattr(actions, "prepare_gateway", slow)

    async def main():
        start = asyncio.ensure_future(TurnSession.gateway(
            Actor(username="oscar"), operator_user, agent.pk,
            [{"role": "user", "content": "hi"}], "hi", client_tools=[], extra={},
            first_extra={}, transport="compare"))
        while not entered:
            await asyncio.sleep(0.01)
        assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 1
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        await asyncio.sleep(0.8)  # the hop ends, and gives back what it took

    asyncio.run(main())
    assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 0
