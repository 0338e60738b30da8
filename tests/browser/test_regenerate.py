"""Regenerate in the playground: after a reload it answers the stored conversation's last
question again, folds the old answer into "Previous versions", and the page agrees."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_chat_journey import add_agent, add_backend
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.browser


def test_regenerate_after_reloading_the_conversation(page, console, scripted):
    sign_in(page, console)
    add_backend(page, console, "regen", "openai_compatible", scripted.url)
    add_agent(page, console, "regen-helper", "regen", "scripted-1")
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # socket open
    scripted.add(text("the first answer"), finish())
    page.get_by_label("Message").fill("say something")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-assistant .timings").last).to_contain_text("TTFT")

    page.reload()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    regenerate = page.get_by_role("button", name="Regenerate")
    expect(regenerate).to_be_enabled()  # from the stored conversation, nothing typed
    scripted.add(text("a second answer"), finish())
    regenerate.click()
    current = page.locator(".transcript > .msg-assistant").last
    expect(current.locator(".body")).to_have_text("a second answer")
    expect(current.locator(".who")).to_contain_text("2 of 2")
    versions = page.locator("details.versions")
    expect(versions.locator("summary")).to_have_text("Previous versions (1)")
    expect(versions).to_contain_text("the first answer", use_inner_text=False)
    expect(page.locator(".msg-user")).to_have_count(1)  # the question was not sent again
    assert scripted.requests[-1]["messages"][-1] == {"role": "user", "content": "say something"}
    assert [m["role"] for m in scripted.requests[-1]["messages"]] == ["system", "user"]

    page.reload()
    expect(page.locator(".transcript > .msg-assistant .body")).to_have_text("a second answer")
    expect(page.locator("details.versions summary")).to_have_text("Previous versions (1)")
    page.locator("details.versions summary").click()
    expect(page.locator("details.versions .previous .body")).to_have_text("the first answer")
    expect(page.locator("details.versions .previous .who")).to_have_text("Version 1 of 2")
    assert page.js_errors == []
