"""An experiment in the browser, against the real llama-server: the same model with two
parameter sets (long replies and short ones), started from the form, watched as it
runs in the console's own monitor, read from one page: "is B as good as A, and how much
faster?" (the README's screenshot), at 1280×800 and 390×844."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.console_server import ADMIN_PASSWORD, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def seed(console, llama_server) -> int:
    admin = signed_in(console.url, ADMIN_PASSWORD)
    csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}
    # the tests of this module share one console: the first one seeds it
    known = [b for b in admin.get("/api/backends").json() if b["name"] == "llama-box"]
    if known:
        admin.close()
        return known[0]["id"]
    backend = admin.post("/api/backends", headers=csrf, json={
        "name": "llama-box", "kind": "llamacpp", "base_url": llama_server.url})
    assert backend.status_code == 201, backend.text
    cases = [{"id": f"q{i}", "messages": f"Describe part {i} of the pump in a few words."}
             for i in range(6)]
    dataset = admin.post("/api/datasets", headers=csrf, json={
        "name": "pump-desk", "cases": cases,
        "checks": [{"kind": "regex", "pattern": r"\S"},
                   {"kind": "max_tokens", "value": 40}]})
    assert dataset.status_code == 201, dataset.text
    admin.close()
    return backend.json()["id"]


def test_is_model_b_as_good_as_a_and_how_much_faster(browser, console, llama_server):
    backend = seed(console, llama_server)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, console)
    page.goto(console.url + "/experiments/")
    expect(page.get_by_text("No experiments yet")).to_be_visible()
    page.get_by_label("Target 1").select_option(f"backend:{backend}")
    page.locator("input[name=model-0]").fill(llama_server.alias)
    page.get_by_label("Target 2").select_option(f"backend:{backend}")
    page.locator("input[name=model-1]").fill(llama_server.alias)
    page.get_by_label("Name").fill("tiny: 48 tokens against 12")
    page.locator("input[name=max_tokens-0]").fill("48")
    page.locator("input[name=max_tokens-1]").fill("12")
    page.get_by_role("button", name="Start experiment").click()
    expect(page.get_by_role("heading", name="tiny: 48 tokens against 12")).to_be_visible()
    progress = page.locator("#experiment-progress progress")
    expect(progress).to_have_attribute("max", "12")
    expect(page.get_by_text("Succeeded")).to_be_visible(timeout=240_000)
    page.reload()
    expect(page.get_by_role("heading", name="Targets")).to_be_visible()
    cards = page.locator(".target-card")
    expect(cards).to_have_count(2)
    # B's short replies pass the 40-token check that A's long ones fail, in less time
    expect(page.locator(".verdict")).to_contain_text("(max_tokens 12) passes more often than")
    expect(page.locator(".verdict")).to_contain_text("faster")
    expect(cards.first).to_contain_text("tokens/s")
    expect(cards.first).to_contain_text("llamacpp")
    shot(page, "experiment-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide}px wide on a phone"
    shot(page, "experiment-phone")
    context.close()


def test_compare_two_parameter_sets_side_by_side(browser, console, llama_server):
    """One message to the real llama-server twice (long and short replies): both columns
    stream with their timings; one is kept as an agent, the other continued."""
    backend = seed(console, llama_server)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, console)
    page.goto(console.url + "/playground/")
    page.locator("#open-compare").click()
    expect(page.get_by_role("heading", name="Compare")).to_be_visible()
    for i, most in ((0, "32"), (1, "8")):
        page.get_by_label(f"Target {i + 1}").select_option(f"backend:{backend}")
        page.locator(f"input[name=model-{i}]").fill(llama_server.alias)
        page.locator(f"input[name=max_tokens-{i}]").fill(most)
    page.get_by_label("Message").fill("Describe the pump in a few words.")
    page.get_by_role("button", name="Compare").click()
    columns = page.locator(".compare-column")
    expect(columns).to_have_count(2)
    for i in (0, 1):
        timings = columns.nth(i).locator(".timings")
        expect(timings).to_contain_text("tok/s", timeout=120_000)
        expect(timings).to_contain_text("TTFT")
        assert columns.nth(i).locator(".body").inner_text().strip()
    expect(columns.nth(0).locator("h2")).to_contain_text("max_tokens 32")
    # the engine's own token counts: the short column stopped at its 8
    assert "8 tokens" in columns.nth(1).locator(".timings").inner_text()
    expect(page.locator("#compare-status")).to_have_text("Done.")
    shot(page, "compare-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide}px wide on a phone"
    shot(page, "compare-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    columns.nth(0).get_by_role("button", name="Save as an agent").click()
    expect(columns.nth(0).get_by_role("link", name="Saved:")).to_be_visible()
    columns.nth(1).get_by_role("button", name="Continue with this").click()
    page.wait_for_url("**/playground/?c=*")
    expect(page.locator("#transcript .msg-user").last).to_contain_text("Describe the pump")
    expect(page.locator("#composer")).to_be_visible()
    context.close()


def test_a_new_agent_version_is_checked_on_its_regression_set(browser, console, llama_server):
    """The agent's page: choose a dataset, run it, change the agent, run it on the new
    version: the two versions' results side by side, with what regressed."""
    backend = seed(console, llama_server)
    admin = signed_in(console.url, ADMIN_PASSWORD)
    csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}
    agent = admin.post("/api/agents", headers=csrf, json={
        "name": "pump desk", "backend_id": backend, "model": llama_server.alias,
        "max_tokens": 12, "tool_ids": []}).json()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, console)
    page.goto(f"{console.url}/agents/{agent['id']}/")
    panel = page.locator(".regression-panel")
    expect(panel).to_contain_text("No dataset checks this agent's changes yet.")
    panel.get_by_label("Dataset").select_option(label="pump-desk (v1)")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_text("pump desk is checked on pump-desk.")).to_be_visible()
    page.get_by_role("button", name="Run it on version 1").click()
    expect(page.get_by_text("Succeeded")).to_be_visible(timeout=240_000)
    # a new version that writes longer replies than the dataset's 40-token check allows
    changed = admin.patch(f"/api/agents/{agent['id']}", headers=csrf, json={"max_tokens": 48})
    assert changed.json()["version"] == 2, changed.text
    admin.close()
    page.goto(f"{console.url}/agents/{agent['id']}/")
    expect(panel).to_contain_text("Version 2 has not been run on pump-desk yet.")
    expect(panel).to_contain_text("The version before: v1")
    page.get_by_role("button", name="Run it on version 2").click()
    expect(page.get_by_text("Succeeded")).to_be_visible(timeout=240_000)
    page.goto(f"{console.url}/agents/{agent['id']}/")
    expect(panel.locator("#gate-verdict")).to_contain_text("Version 2 against version 1:")
    expect(panel.locator("#gate-verdict")).to_contain_text("6 cases regressed")
    expect(panel.locator(".target-card")).to_have_count(2)
    panel.scroll_into_view_if_needed()
    shot(page, "regression-set-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide}px wide on a phone"
    context.close()
