"""The playground by keyboard alone: a message sent with Enter, a tool that needs
approval says "Waiting for your approval" (focus on Approve), a denied call says
"denied", code blocks have a Copy button, the new conversation shows in the list at
once, and the conversation is renamed, found by search and deleted; on a phone the
conversations are a drawer above the chat."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_agent, add_backend
from tests.support.scripted_openai import finish, text, tool_whole, usage

pytestmark = pytest.mark.browser


def _needs_approval(page, console, tool: str) -> None:
    page.goto(console.url + "/tools/")
    card = page.locator("article", has_text=tool).first
    card.get_by_label("Requires approval").check()
    card.get_by_role("button", name=f"Save {tool}").click()
    expect(page.locator("article", has_text=tool).first).to_contain_text("needs approval")


def test_the_playground_by_keyboard(page, console, scripted):
    sign_in(page, console)
    add_backend(page, console, "keyboard", "openai_compatible", scripted.url)
    add_agent(page, console, "careful", "keyboard", "scripted-1", tools=["calculator"])
    agent_url = page.url
    _needs_approval(page, console, "calculator")
    page.goto(agent_url)
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    # 1. a reply with a code block: Enter sends, the block gets a Copy button
    scripted.add(text("Run this:\n\n```\nollama ps\n```\n"), finish(), usage(9, 6))
    expect(page.get_by_label("Message")).to_be_focused()
    page.keyboard.type("How do I see loaded models?")
    page.keyboard.press("Enter")
    block = page.locator(".msg-assistant .code-block").last
    expect(block.locator("pre")).to_have_text("ollama ps")
    copy = block.get_by_role("button", name="Copy this code")
    expect(copy).to_be_visible()
    # the conversation is in the list at once, without a reload
    listed = page.locator("#conversation-list a", has_text="How do I see loaded models")
    expect(listed).to_have_count(1)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "ollama ps\n"

    # 2. a tool that needs approval: the status says so and Approve has the focus;
    # Tab to Deny, Enter: the card says denied, not failed
    scripted.add(tool_whole("c1", "calculator", '{"expression": "6*7"}'),
                 finish("tool_calls"), usage(20, 5))
    scripted.add(text("I was not allowed to calculate that."), finish(), usage(30, 7))
    page.get_by_label("Message").focus()
    page.keyboard.type("what is 6*7?")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Waiting for your approval…")
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_focused()
    card = page.locator(".tool-card").last
    expect(card.locator("dl.arguments")).to_contain_text("expression")
    shot(page, "playground-approval")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Deny")).to_be_focused()
    page.keyboard.press("Enter")
    expect(card.locator("summary")).to_contain_text("denied")
    expect(card).to_have_class("tool-card denied")
    expect(page.locator(".msg-assistant .body").last).to_have_text(
        "I was not allowed to calculate that.")
    expect(page.locator("#status")).to_have_text("")

    # 3. rename, search, delete
    page.locator("details.rename > summary").click()
    page.get_by_label("Title").fill("Loaded models")
    page.get_by_label("Title").press("Enter")
    expect(page.locator("#conversation-list a[aria-current=page]")).to_have_text(
        "Loaded models")
    page.get_by_label("Search conversations").fill("ollama")
    page.get_by_label("Search conversations").press("Enter")
    expect(page.locator("#conversation-list li")).to_have_count(1)
    page.get_by_label("Search conversations").fill("nothing-like-this")
    page.get_by_label("Search conversations").press("Enter")
    expect(page.locator("#conversation-list")).to_contain_text("Nothing matches.")
    page.locator("#conversation-list").page.goto(console.url + "/playground/")
    page.locator("#conversation-list a", has_text="Loaded models").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.get_by_text("Deleted the conversation.")).to_be_visible()
    expect(page.locator("#conversation-list a", has_text="Loaded models")).to_have_count(0)
    assert page.js_errors == []


def test_on_a_phone_the_conversations_are_a_closed_drawer(browser, console):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, console)
        page.goto(console.url + "/playground/")
        drawer = page.locator("details[data-drawer]")
        expect(drawer.locator("summary")).to_be_visible()
        assert drawer.evaluate("d => d.open") is False
        expect(page.locator("#new-chat")).to_be_hidden()
        drawer.locator("summary").click()
        expect(page.locator("#new-chat")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
