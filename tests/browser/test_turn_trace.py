"""A real turn, run by the real console, read as its trace in real Chromium: the agent's
first backend is down, its fallback is down too, it escalates, and the model calls a
tool that needs approval, which an operator gives. The trace shows every step in order:
the failed attempts in red, the fallback and the escalation labelled, the tool call with
its approval wait beneath it."""

import re
import threading
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.console_server import ADMIN_PASSWORD, signed_in
from tests.support.llama_server import free_port
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, tool_whole

pytestmark = pytest.mark.browser
RED = "rgb(198, 40, 40)"  # --tg-red: badges, bars
RED_TEXT = "rgb(183, 28, 28)"  # --tg-red-text: red words (4.5:1 on white)


def test_a_real_turn_with_fallback_escalation_and_approval_as_one_trace(page, console):
    scripted = ScriptedOpenAI().start()
    admin = signed_in(console.url, ADMIN_PASSWORD)
    csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}
    try:
        def backend(name, url):
            made = admin.post("/api/backends", headers=csrf, json={
                "name": name, "kind": "openai_compatible", "base_url": url})
            assert made.status_code == 201, made.text
            return made.json()["id"]

        primary = backend("edge-primary", f"http://127.0.0.1:{free_port()}/v1")
        spare = backend("edge-spare", f"http://127.0.0.1:{free_port()}/v1")
        big = backend("big", scripted.url)
        calculator = next(t for t in admin.get("/api/tools").json()
                          if t["name"] == "calculator")
        assert admin.patch(f"/api/tools/{calculator['id']}", headers=csrf,
                           json={"requires_approval": True}).status_code == 200
        made = admin.post("/api/agents", headers=csrf, json={
            "name": "desk", "backend_id": primary, "model": "small",
            "tool_ids": [calculator["id"]], "fallbacks": [{"backend_id": spare,
                                                           "model": "small"}],
            "escalation": {"backend_id": big, "model": "scripted-1"}})
        assert made.status_code == 201, made.text
        scripted.add(tool_whole("call-1", "calculator", '{"expression": "2+2"}'),
                     finish("tool_calls"))
        scripted.add(text("It is 4."), finish())

        answer = {}

        def chat():
            answer["reply"] = admin.post(f"/api/agents/{made.json()['id']}/chat",
                                         headers=csrf, json={"message": "2+2?"}, timeout=60)

        asking = threading.Thread(target=chat)
        asking.start()
        deadline, pending = time.monotonic() + 30, []
        approver = signed_in(console.url, ADMIN_PASSWORD)
        try:
            while not pending and time.monotonic() < deadline:
                pending = approver.get("/api/approvals").json()
                time.sleep(0.1)
            assert pending, "no approval was asked for"
            decided = approver.post(f"/api/approvals/{pending[0]['id']}", json={
                "decision": "approve"}, headers={"X-CSRFToken": approver.cookies["csrftoken"],
                                                 "Referer": console.url})
            assert decided.status_code == 200, decided.text
        finally:
            approver.close()
        asking.join(60)
        assert answer["reply"].status_code == 200, answer["reply"].text
        assert answer["reply"].json()["reply"] == "It is 4."

        # the spans are written by the console's background writer, within a second or so
        deadline, listed = time.monotonic() + 15, []
        while not listed and time.monotonic() < deadline:
            listed = admin.get("/api/traces", params={"agent": "desk"}).json()["items"]
            time.sleep(0.2)
        assert len(listed) == 1
        trace_id = listed[0]["trace_id"]
    finally:
        admin.close()
        scripted.stop()

    sign_in(page, console)
    page.goto(f"{console.url}/traces/{trace_id}/")
    steps = page.locator("li.step")
    names = [n.strip() for n in steps.locator(".step-name").all_inner_texts()]
    assert [n.split("\n")[0] for n in names] == [
        "invoke_agent desk", "chat small", "chat small", "chat scripted-1",
        "execute_tool calculator", "await_approval calculator", "chat scripted-1"], names
    first, fallback, escalated = steps.nth(1), steps.nth(2), steps.nth(3)
    for failed in (first, fallback):
        expect(failed).to_have_class(re.compile(r"\bstep-error\b"))
        assert failed.locator(".step-title").first.evaluate(
            "el => getComputedStyle(el).color") == RED_TEXT
        assert failed.locator("rect").first.evaluate(
            "el => getComputedStyle(el).fill") == RED
    expect(fallback).to_contain_text("fallback")
    expect(escalated).to_contain_text("escalation")
    expect(steps.nth(5)).to_contain_text("approval")
    expect(first).to_contain_text("cannot reach")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "trace-turn")
