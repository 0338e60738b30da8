"""The chat WebSocket end to end: frames, authorisation on every message, stop, disconnect."""

import asyncio
import time

import pytest
from django.test import Client

from agents.models import Agent, Conversation, Message, Run, Tool
from agents.tools.builtin import SPECS
from console.asgi import application
from console.models import AuditEvent, Backend
from tests.support.scripted_openai import finish, text, tool_whole, usage
from tests.support.sockets import WebsocketCommunicator

pytestmark = pytest.mark.usefixtures("live_db")



@pytest.fixture
def agent(scripted):
    backend = Backend.objects.create(name="s", kind="openai_compatible", base_url=scripted.url)
    agent = Agent.objects.create(name="helper", backend=backend, model="scripted-1",
                                 idle_timeout_s=5)
    # transactional tests flush the seeded rows: bring the built-in tool back
    spec = SPECS["calculator"]
    tool, _ = Tool.objects.get_or_create(name="calculator", defaults={
        "kind": "builtin", "description": spec["description"], "parameters": spec["parameters"]})
    agent.tools.add(tool)
    return agent


def cookie_for(user):
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode()


def connect(cookie=None, origin=b"http://localhost", token=None, host=b"localhost"):
    headers = [(b"host", host)] if host else []
    if origin:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie))
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, "/ws/chat/", headers=headers)


async def frames_until(ws, kind, timeout=10):
    frames = []
    while True:
        frame = await ws.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


def run(coro):
    return asyncio.run(coro)


def test_streamed_turn_frames_and_stored_rows(operator_user, agent, scripted):
    scripted.add(text(*["word "] * 50), finish(), usage(9, 50))
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "talk"})
        frames = await frames_until(ws, "done")
        await ws.disconnect()
        return frames

    frames = run(main())
    assert frames[0]["type"] == "turn_started"
    deltas = [f for f in frames if f["type"] == "delta"]
    assert "".join(f["text"] for f in deltas) == "word " * 50
    assert len(deltas) < 50  # batched, never the whole text twice
    done = frames[-1]
    assert done["incomplete"] is False and done["metrics"]["tokens_out"] == 50
    conversation = Conversation.objects.get(pk=frames[0]["conversation_id"])
    assert list(conversation.messages.values_list("role", flat=True)) == ["user", "assistant"]
    assert Run.objects.get().outcome == "success"
    assert AuditEvent.objects.filter(action="agent.turn", actor="oscar").count() == 1


def test_first_token_goes_out_at_once_and_no_token_waits_for_the_next(operator_user, agent,
                                                                       scripted):
    """Batching merges fast tokens into fewer frames but never delays the first one, and a
    token followed by a long pause is sent without waiting for the token after it."""
    scripted.add(text("first "), ("sleep", 0.6), text("second "), text("third "),
                 ("sleep", 0.6), text("last"), finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "go"})
        arrivals = []
        while True:
            frame = await ws.receive_json_from(timeout=10)
            arrivals.append((asyncio.get_running_loop().time(), frame))
            if frame["type"] == "done":
                break
        await ws.disconnect()
        return arrivals

    arrivals = run(main())
    deltas = [(t, f["text"]) for t, f in arrivals if f["type"] == "delta"]
    assert "".join(text for _, text in deltas) == "first second third last"
    assert deltas[0][1] == "first "
    # "first " arrived well before the 0.6 s pause ended, "third " before the second pause
    assert deltas[1][0] - deltas[0][0] > 0.45, deltas
    third = next(t for t, text in deltas if "third" in text)
    last = next(t for t, text in deltas if "last" in text)
    assert last - third > 0.45, deltas


def test_tool_cards_and_approval_over_the_socket(operator_user, agent, scripted):
    Tool.objects.filter(name="calculator").update(requires_approval=True)
    scripted.add(tool_whole("call-1", "calculator", '{"expression": "2+2"}'),
                 finish("tool_calls"))
    scripted.add(text("4"), finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "2+2?"})
        before = await frames_until(ws, "approval_required")
        await ws.send_json_to({"type": "approve", "tool_call_id": "call-1"})
        after = await frames_until(ws, "done")
        await ws.disconnect()
        return before + after

    frames = run(main())
    kinds = [f["type"] for f in frames]
    assert kinds.index("tool_call") < kinds.index("approval_required") < kinds.index(
        "tool_result")
    result = next(f for f in frames if f["type"] == "tool_result")
    assert result["ok"] is True and '"result": 4' in result["summary"]
    assert AuditEvent.objects.get(action="tool.called").after["approved_by"] == "oscar"


def test_refusals_by_frame(operator_user, viewer_user, admin_user, agent, scripted):
    scripted.add(text("hi"), finish())
    _, viewer_cookie = cookie_for(viewer_user)
    _, operator_cookie = cookie_for(operator_user)
    other = Conversation.objects.create(owner=admin_user, agent=agent, title="admin's")

    async def main():
        viewer = connect(viewer_cookie)
        await viewer.connect()
        await viewer.send_json_to({"type": "user_message", "agent_id": agent.pk,
                                   "conversation_id": None, "text": "hi"})
        forbidden = await viewer.receive_json_from()
        await viewer.disconnect()
        ws = connect(operator_cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": other.pk, "text": "hi"})
        not_mine = await ws.receive_json_from()
        await ws.send_to(text_data="x" * (64 * 1024 + 1))
        too_large = await ws.receive_json_from()
        await ws.send_to(text_data="{nope")
        bad_json = await ws.receive_json_from()
        await ws.send_json_to({"type": "user_message", "agent_id": "1", "text": "hi"})
        bad_type = await ws.receive_json_from()
        await ws.disconnect()
        return forbidden, not_mine, too_large, bad_json, bad_type

    forbidden, not_mine, too_large, bad_json, bad_type = run(main())
    assert forbidden["code"] == "forbidden"
    assert not_mine["code"] == "invalid" and not_mine["field"] == "conversation_id"
    assert too_large["code"] == "too_large"
    assert bad_json["code"] == "bad_json"
    assert bad_type["field"] == "agent_id"
    assert scripted.requests == [] and not Message.objects.exists()


def test_message_flood_is_rate_limited(operator_user, agent):
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        for _ in range(25):
            await ws.send_json_to({"type": "stop", "conversation_id": 1})
        # 20 stops are allowed (and answer nothing); the 5 over the limit are refused
        codes = [(await ws.receive_json_from(timeout=10))["code"] for _ in range(5)]
        nothing_more = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return codes, nothing_more

    codes, nothing_more = run(main())
    assert codes == ["rate_limited"] * 5 and nothing_more


def test_logged_out_session_is_refused_and_closed(operator_user, agent):
    client, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        assert (await ws.connect())[0]
        await asyncio.to_thread(client.post, "/logout/")
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "still there?"})
        frame = await ws.receive_json_from()
        closed = await ws.receive_output()
        return frame, closed

    frame, closed = run(main())
    assert frame["code"] == "unauthenticated"
    assert closed == {"type": "websocket.close", "code": 4401}


def test_anonymous_and_cross_origin_cookie_sockets_are_refused(operator_user):
    _, cookie = cookie_for(operator_user)

    async def main():
        anonymous = await connect(None).connect()
        evil = await connect(cookie, origin=b"http://evil.example").connect()
        return anonymous, evil

    anonymous, evil = run(main())
    assert anonymous[0] is False and evil[0] is False


def test_bearer_token_socket_needs_no_origin(operator_user, agent, scripted):
    from console.actions.users import create_token
    from console.audit import Actor

    _, raw = create_token(Actor.system(), operator_user, "script")
    scripted.add(text("hello script"), finish())

    async def main():
        ws = connect(origin=None, token=raw)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "hi"})
        frames = await frames_until(ws, "done")
        await ws.disconnect()
        return frames

    frames = run(main())
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "hello script"


@pytest.mark.parametrize("how", ["stop", "disconnect"])
def test_stop_and_disconnect_close_upstream_and_keep_the_partial(operator_user, agent,
                                                                 scripted, how):
    scripted.add(*[[("sleep", 0.05)] + text("x") for _ in range(400)], finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "long"})
        started = await ws.receive_json_from()
        await ws.receive_json_from(timeout=5)  # a first delta
        stopped_at = time.monotonic()
        if how == "stop":
            await ws.send_json_to({"type": "stop", "conversation_id": started["conversation_id"]})
            done = await frames_until(ws, "done")
            await ws.disconnect()
        else:
            await ws.disconnect()
            done = None
        while scripted.disconnects == 0 and time.monotonic() - stopped_at < 1.0:
            await asyncio.sleep(0.02)
        return stopped_at, done

    stopped_at, done = run(main())
    assert scripted.disconnects == 1  # the upstream stream was closed within a second
    if done:
        assert done[-1]["incomplete"] is True and done[-1]["finish_reason"] == "cancelled"
    deadline = time.monotonic() + 5
    while not Run.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    run_row = Run.objects.get()
    assert run_row.outcome == "cancelled"
    reply = Message.objects.filter(role="assistant").get()
    assert reply.incomplete and reply.content.startswith("x") and len(reply.content) < 400
    # what streamed before the stop is counted (one delta ≈ one token: the engine sends
    # no usage for a cut stream), and stopping is not a failure
    assert run_row.tokens_out == len(reply.content) and not run_row.usage_reported
    assert run_row.tokens_in > 0
    if done:
        assert done[-1]["metrics"]["tokens_out"] == len(reply.content)
    deadline = time.monotonic() + 5
    while not AuditEvent.objects.filter(action="agent.turn").exists() and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    turn = AuditEvent.objects.get(action="agent.turn")
    assert turn.outcome == "success" and turn.after["outcome"] == "cancelled"


def test_long_reply_is_checkpointed_then_replaced(operator_user, agent, scripted, monkeypatch):
    from agents import consumers

    monkeypatch.setattr(consumers, "CHECKPOINT_S", 0.2)
    scripted.add(*[[("sleep", 0.02)] + text("y") for _ in range(60)], finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "write a lot"})
        await ws.receive_json_from()
        await asyncio.sleep(0.7)  # mid-reply: what would survive a crash now?
        rows = await asyncio.to_thread(lambda: list(
            Message.objects.order_by("id").values_list("role", "content", "incomplete")))
        await frames_until(ws, "done")
        await ws.disconnect()
        return rows

    mid_reply = run(main())
    assert mid_reply[0] == ("user", "write a lot", False)
    assert mid_reply[1][0] == "assistant" and mid_reply[1][2] is True
    assert mid_reply[1][1].startswith("y") and len(mid_reply[1][1]) < 60
    final = list(Message.objects.order_by("id").values_list("role", "content", "incomplete"))
    assert final == [("user", "write a lot", False), ("assistant", "y" * 60, False)]


def test_role_change_logout_and_deactivation_close_idle_sockets_at_once(operator_user,
                                                                       agent):
    from channels.db import database_sync_to_async

    from console.actions.users import change_role, set_active
    from console.audit import Actor

    client, cookie = cookie_for(operator_user)

    async def wait_closed(ws):
        frame = await ws.receive_json_from(timeout=5)  # without sending anything first
        closed = await ws.receive_output(timeout=5)
        return frame, closed

    async def main():
        chat = connect(cookie)
        jobs = WebsocketCommunicator(application, "/ws/jobs/",
                                     headers=[(b"origin", b"http://localhost"),
                                              (b"host", b"localhost"),
                                              (b"cookie", cookie)])
        assert (await chat.connect())[0] and (await jobs.connect())[0]
        await database_sync_to_async(change_role)(Actor.system(), operator_user, "viewer")
        demoted = await wait_closed(chat), await wait_closed(jobs)

        chat = connect(cookie)
        assert (await chat.connect())[0]
        await database_sync_to_async(client.post)("/logout/")
        logged_out = await wait_closed(chat)

        _, cookie2 = await database_sync_to_async(cookie_for)(operator_user)
        chat = connect(cookie2)
        assert (await chat.connect())[0]
        await database_sync_to_async(set_active)(Actor.system(), operator_user, False)
        deactivated = await wait_closed(chat)
        return demoted, logged_out, deactivated

    demoted, logged_out, deactivated = run(main())
    for frame, closed in demoted:
        assert frame["code"] == "forbidden" and "role changed to viewer" in frame["message"]
        assert closed == {"type": "websocket.close", "code": 4403}
    assert logged_out[0]["message"] == "you signed out"
    assert logged_out[1] == {"type": "websocket.close", "code": 4401}
    assert deactivated[0]["message"] == "your account was deactivated"


@pytest.mark.parametrize("origin,host", [
    (b"http://localhost:8001", b"localhost:8000"),     # another port, same host
    (b"http://localhost", b"localhost:8000"),          # default port is another port
    (b"https://localhost:8000", b"localhost:8000"),    # another scheme
    (b"http://evil.example:8000", b"localhost:8000"),
    (b"http://localhost:8000.evil.example", b"localhost:8000"),
    (b"http://evil.example", b"evil.example"),         # Host not an allowed host
    (b"null", b"localhost:8000"),                       # sandboxed frame, file://
    (b"ws://localhost:8000", b"localhost:8000"),
    (b"http://127.0.0.1:8000", b"localhost:8000"),     # another host name
    (None, b"localhost:8000"),                          # no Origin at all
    (b"http://localhost:8000", None),                   # no Host to compare with
])
def test_cookie_socket_needs_the_exact_origin(operator_user, origin, host):
    assert run(opens(operator_user, origin, host)) is False


async def opens(user, origin, host) -> bool:
    """Whether a cookie socket of the user's, with this Origin and Host, is accepted."""
    from channels.db import database_sync_to_async

    _, cookie = await database_sync_to_async(cookie_for)(user)
    ws = connect(cookie, origin=origin, host=host)
    connected, _ = await ws.connect()
    await ws.disconnect()
    return connected


@pytest.mark.parametrize("origin,host", [
    (b"http://localhost:8000", b"localhost:8000"),
    (b"http://LOCALHOST:8000", b"localhost:8000"),
    (b"http://localhost:80", b"localhost"),
    (b"http://[::1]:8000", b"[::1]:8000"),
])
def test_cookie_socket_from_its_own_origin_connects(operator_user, origin, host):
    assert run(opens(operator_user, origin, host)) is True


def test_cookie_socket_from_a_trusted_origin_connects(operator_user, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.org"]
    for origin, accepted in ((b"https://console.example.org", True),
                             (b"https://console.example.org:444", False),
                             (b"http://console.example.org", False)):
        assert run(opens(operator_user, origin, b"localhost:8000")) is accepted, origin


# the ways a stopping turn gets cancelled again while it saves (issue 12): (stop frame,
# close frame, cancellations of the application during the save). Stop then close at
# once; the server stopping (Daphne cancels every application) during the save; Daphne's
# checker cancelling an application slow to close, once a second; the server stopping
# mid-reply, so GracefulMixin disconnects, and cancelling again while that saves
CANCELLED_AGAIN = {
    "stop, close at once": (True, True, 0),
    "stop, close, server shutdown mid-save": (True, True, 1),
    "close, cancelled twice mid-save": (False, True, 2),
    "server shutdown mid-reply, then mid-save": (False, False, 2),
}


@pytest.mark.parametrize("how", list(CANCELLED_AGAIN))
def test_a_stopped_turn_is_saved_once_however_often_it_is_cancelled(operator_user, agent,
                                                                     scripted, monkeypatch,
                                                                     how):
    from django.core.cache import cache

    from agents import actions

    stop_first, close, app_cancels = CANCELLED_AGAIN[how]
    real_persist, saves = actions.persist_turn, []

    def busy_persist(*args, **kwargs):
        saves.append(kwargs.get("cancelled"))
        time.sleep(0.4)  # a busy database: the cancellations below land during the save
        return real_persist(*args, **kwargs)

    monkeypatch.setattr(actions, "persist_turn", busy_persist)
    scripted.add(*[[("sleep", 0.05)] + text("x") for _ in range(400)], finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        await ws.send_json_to({"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "long"})
        started = await ws.receive_json_from()
        await ws.receive_json_from(timeout=5)  # a first delta
        if stop_first:
            await ws.send_json_to({"type": "stop",
                                   "conversation_id": started["conversation_id"]})
        if close:
            await ws.send_input({"type": "websocket.disconnect", "code": 1001})
        else:
            ws.future.cancel()
        for _ in range(app_cancels):
            await asyncio.sleep(0.15)
            ws.future.cancel()
        await asyncio.wait([ws.future], timeout=10)
        # asyncio.run cancels whatever is left: a save the consumer walked away from
        await asyncio.sleep(0)

    run(main())
    assert saves == [True]
    run_row = Run.objects.get()
    assert run_row.outcome == "cancelled" and run_row.finish_reason == "cancelled"
    reply = Message.objects.get(role="assistant")
    assert reply.incomplete and reply.content.startswith("x") and len(reply.content) < 400
    assert AuditEvent.objects.filter(action="agent.turn").count() == 1
    assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 0  # the slot given back


# -- regenerate (issue 18) ------------------------------------------------------------

def rows(conversation_id):
    return list(Message.objects.filter(conversation_id=conversation_id).order_by("id")
                .values_list("role", "content", "superseded"))


async def ask(ws, frame):
    await ws.send_json_to(frame)
    return await frames_until(ws, "done")


def test_regenerate_replaces_the_last_answer_and_keeps_the_old_one(operator_user, agent,
                                                                    scripted):
    scripted.add(text("Paris"), finish())
    scripted.add(text("Paris, ", "on the Seine"), finish())
    scripted.add(text("Lyon"), finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        first = await ask(ws, {"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "capital of France?"})
        cid = first[0]["conversation_id"]
        again = await ask(ws, {"type": "regenerate", "conversation_id": cid})
        mid = await asyncio.to_thread(rows, cid)
        follow_up = await ask(ws, {"type": "user_message", "agent_id": agent.pk,
                                   "conversation_id": cid, "text": "and the second city?"})
        await ws.disconnect()
        return cid, again, mid, follow_up

    cid, again, mid, follow_up = run(main())
    assert again[0]["type"] == "turn_started" and again[0]["conversation_id"] == cid
    assert again[0]["regenerate"] is True
    assert "".join(f["text"] for f in again if f["type"] == "delta") == "Paris, on the Seine"
    assert again[-1]["incomplete"] is False
    assert mid == [("user", "capital of France?", False), ("assistant", "Paris", True),
                   ("assistant", "Paris, on the Seine", False)]
    # the model is asked the question once, without the answer being replaced ...
    assert scripted.requests[1]["messages"] == [
        {"role": "user", "content": "capital of France?"}]
    # ... and later turns see only the current answer
    assert scripted.requests[2]["messages"] == [
        {"role": "user", "content": "capital of France?"},
        {"role": "assistant", "content": "Paris, on the Seine"},
        {"role": "user", "content": "and the second city?"}]
    assert Run.objects.count() == 3
    turns = list(AuditEvent.objects.filter(action="agent.turn").order_by("seq"))
    assert [t.after.get("regenerated", False) for t in turns] == [False, True, False]
    replaced = Message.objects.get(content="Paris").run_id
    assert turns[1].after["replaced_run_ids"] == [replaced]
    assert follow_up[-1]["incomplete"] is False


def test_regenerate_after_reloading_replaces_only_the_last_turn(operator_user, agent,
                                                                 scripted):
    """A new socket (the page reloaded) regenerates from the stored conversation; earlier
    turns and earlier versions stay as they are."""
    for reply in ("one", "two", "two again", "two, third try"):
        scripted.add(text(reply), finish())
    _, cookie = cookie_for(operator_user)

    async def main():
        ws = connect(cookie)
        await ws.connect()
        first = await ask(ws, {"type": "user_message", "agent_id": agent.pk,
                               "conversation_id": None, "text": "q1"})
        cid = first[0]["conversation_id"]
        await ask(ws, {"type": "user_message", "agent_id": agent.pk,
                       "conversation_id": cid, "text": "q2"})
        await ws.disconnect()
        for _ in range(2):
            reloaded = connect(cookie)
            await reloaded.connect()
            await ask(reloaded, {"type": "regenerate", "conversation_id": cid})
            await reloaded.disconnect()
        return cid

    cid = run(main())
    assert rows(cid) == [("user", "q1", False), ("assistant", "one", False),
                         ("user", "q2", False), ("assistant", "two", True),
                         ("assistant", "two again", True),
                         ("assistant", "two, third try", False)]
    expected = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "one"},
                {"role": "user", "content": "q2"}]
    assert scripted.requests[2]["messages"] == expected
    assert scripted.requests[3]["messages"] == expected


def test_regenerate_refusals(operator_user, viewer_user, admin_user, agent, scripted):
    _, viewer_cookie = cookie_for(viewer_user)
    _, cookie = cookie_for(operator_user)
    theirs = Conversation.objects.create(owner=admin_user, agent=agent, title="admin's")
    Message.objects.create(conversation=theirs, role="user", content="hi")
    empty = Conversation.objects.create(owner=operator_user, agent=agent, title="empty")

    async def main():
        viewer = connect(viewer_cookie)
        await viewer.connect()
        await viewer.send_json_to({"type": "regenerate", "conversation_id": theirs.pk})
        forbidden = await viewer.receive_json_from()
        await viewer.disconnect()
        ws = connect(cookie)
        await ws.connect()
        answers = []
        for cid in (theirs.pk, empty.pk, "7"):
            await ws.send_json_to({"type": "regenerate", "conversation_id": cid})
            answers.append(await ws.receive_json_from())
        await ws.disconnect()
        return forbidden, answers

    forbidden, (not_mine, nothing_yet, bad_id) = run(main())
    assert forbidden["code"] == "forbidden"
    assert not_mine["code"] == "invalid" and not_mine["field"] == "conversation_id"
    assert nothing_yet["code"] == "refused" and "nothing to regenerate" in nothing_yet["message"]
    assert bad_id["code"] == "invalid" and bad_id["field"] == "conversation_id"
    assert scripted.requests == [] and not Run.objects.exists()
