"""A script's chat turn meets a tool that needs approval: the operator sees it on the
Approvals page, approves it there, and the script's reply goes on."""

import threading

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_agent, add_backend
from tests.support.scripted_openai import finish, text, tool_whole

pytestmark = pytest.mark.browser


def test_an_api_turn_waits_for_approval_on_the_approvals_page(page, console, scripted):
    sign_in(page, console)
    add_backend(page, console, "approvals", "openai_compatible", scripted.url)
    add_agent(page, console, "careful-helper", "approvals", "scripted-1",
              tools=["calculator"])
    agent_url = page.url
    agent_id = int(agent_url.rstrip("/").rsplit("/", 1)[1])
    page.goto(console.url + "/tools/")
    calculator = page.locator("article", has_text="calculator").first
    calculator.get_by_label("Requires approval").check()
    calculator.get_by_role("button", name="Save calculator").click()
    expect(page.locator("article", has_text="calculator").first).to_contain_text(
        "needs approval")

    page.goto(console.url + "/approvals/")
    expect(page.get_by_text("Nothing is waiting for you")).to_be_visible()

    # the script: the chat API with the operator's session (a bearer token works alike)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    scripted.add(tool_whole("c1", "calculator", '{"expression": "6*7"}'), finish("tool_calls"))
    scripted.add(text("6*7 is 42"), finish())
    reply: dict = {}

    def script():
        with httpx.Client(base_url=console.url, cookies=cookies, timeout=60,
                          headers={"X-CSRFToken": cookies["csrftoken"],
                                   "Referer": console.url + "/"}) as client:
            reply["response"] = client.post(f"/api/agents/{agent_id}/chat",
                                            json={"message": "what is 6*7?"})

    thread = threading.Thread(target=script)
    thread.start()
    row = page.locator("#approvals tbody tr").first
    expect(row).to_contain_text("calculator", timeout=15000)  # the page refreshes itself
    expect(row).to_contain_text("6*7")
    expect(row).to_contain_text("Chat API")
    shot(page, "approvals")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "approvals-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 800})
    row.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("calculator: approved.")).to_be_visible()
    thread.join(30)
    body = reply["response"].json()
    assert reply["response"].status_code == 200, body
    assert body["reply"] == "6*7 is 42"
    assert body["tool_calls"][0]["ok"] is True and body["tool_calls"][0]["approved_by"] == "admin"
    expect(page.locator("table").last).to_contain_text("Approved")
    assert page.js_errors == []
