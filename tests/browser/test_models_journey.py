"""Pull a model on the fake Ollama from the browser: the bars move to 100 %, live over the
WebSocket, and the model is listed; load and unload from the same page."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_backend
from tests.support.fake_engine import FakeEngine

pytestmark = pytest.mark.browser


def test_pull_watch_and_see_the_model(page, console):
    engine = FakeEngine("ollama", pull_gap_s=0.15).start()
    try:
        sign_in(page, console)
        add_backend(page, console, "jetson-ollama", "ollama", engine.url)
        page.get_by_role("button", name="Models").click()
        expect(page.get_by_role("heading", name="Models on jetson-ollama")).to_be_visible()
        page.get_by_label("Model name").fill("llama3.2:1b")
        page.get_by_role("button", name="Pull", exact=True).click()
        expect(page.get_by_text("Pulling llama3.2:1b")).to_be_visible()
        card = page.locator("#job-list .job").first
        expect(card.locator(".job-state")).to_have_text("running", timeout=10000)
        expect(page.locator("#jobs-tray .tray-job")).to_be_visible()
        expect(card.locator(".job-layers progress")).to_have_count(3, timeout=10000)
        shot(page, "model-pull")
        expect(card.locator(".job-state")).to_have_text("succeeded", timeout=15000)
        expect(card.locator(".job-bar")).to_have_attribute("value", "100")
        page.reload()
        row = page.get_by_role("row", name="llama3.2:1b 379.4 MB")
        expect(row).to_be_visible()
        row.get_by_role("button", name="Load").click()
        expect(page.get_by_text("Loaded llama3.2:1b on jetson-ollama.")).to_be_visible()
        shot(page, "models")
        assert page.js_errors == []
    finally:
        engine.stop()
