"""Create an agent in the browser, chat with streamed text and timings, see a tool card, stop."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.scripted_openai import finish, text, tool_whole, usage

pytestmark = [pytest.mark.browser, pytest.mark.engine]



def add_backend(page, console, name, kind, url):
    page.goto(console.url + "/backends/new/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Kind").select_option(kind)
    page.get_by_label("Base URL").fill(url)
    page.get_by_role("button", name="Add backend").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def add_agent(page, console, name, backend, model, tools=(), max_tokens="32"):
    page.goto(console.url + "/agents/new/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Backend", exact=True).select_option(label=backend)
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("System prompt", exact=True).fill("You are a helpful edge assistant.")
    page.locator("summary", has_text="Generation").click()  # folded: a plain assistant
    page.get_by_label("Max tokens", exact=True).fill(max_tokens)
    for tool in tools:
        page.get_by_label(re.compile(tool)).first.check()
    shot(page, "agent-form")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def test_chat_in_the_browser(page, console, llama_server, scripted):
    sign_in(page, console)
    add_backend(page, console, "llama", "llamacpp", llama_server.url)
    add_agent(page, console, "tiny-helper", "llama", "tiny")
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # socket open
    page.get_by_label("Message").fill("hello edge")
    page.keyboard.press("Enter")
    reply = page.locator(".msg-assistant").last
    expect(reply.locator(".timings")).to_contain_text("TTFT", timeout=20000)
    expect(reply.locator(".timings")).to_contain_text("32 out")
    assert reply.locator(".body").inner_text().strip() != ""
    shot(page, "playground")

    # a scripted agent: a tool card, then a long reply that we stop
    add_backend(page, console, "scripted", "openai_compatible", scripted.url)
    add_agent(page, console, "calc-helper", "scripted", "scripted-1", tools=["calculator"])
    page.goto(console.url + "/tools/")
    expect(page.get_by_text("Used by: calc-helper")).to_be_visible()
    shot(page, "tools")
    page.goto(console.url + "/agents/")
    page.get_by_role("link", name="calc-helper").click()
    scripted.add(tool_whole("c1", "calculator", '{"expression": "12*12"}'),
                 finish("tool_calls"), usage(20, 8))
    scripted.add(text("12 × 12 = 144"), finish(), usage(40, 6))
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # socket open
    page.get_by_label("Message").fill("what is 12*12?")
    page.get_by_role("button", name="Send").click()
    card = page.locator(".tool-card").first
    expect(card).to_contain_text("calculator")
    expect(card).to_contain_text("ok")
    expect(page.locator(".msg-assistant .body").last).to_have_text("12 × 12 = 144")
    shot(page, "playground-tool-card")

    scripted.add(*[[("sleep", 0.05)] + text("more ") for _ in range(400)], finish())
    page.get_by_label("Message").fill("tell me a long story")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-assistant .body").last).to_contain_text("more")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".msg-assistant .timings").last).to_contain_text("incomplete")
    assert page.js_errors == []
