"""The overview updates by itself when a backend goes down; charts render; the default
alert fires and shows. Runs the real console with its monitor (2-second probes)."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_backend
from tests.support.console_server import ConsoleServer
from tests.support.fake_engine import FakeEngine

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    server = ConsoleServer(tmp_path_factory.mktemp("monitored") / "data",
                           TANGLAW_PROBE_INTERVAL_S="2", TANGLAW_HOST_INTERVAL_S="1").start()
    yield server
    server.stop()


def test_overview_goes_red_by_itself_and_charts_render(page, console):
    engine = FakeEngine("vllm").start()
    try:
        sign_in(page, console)
        add_backend(page, console, "edge-vllm", "vllm", engine.url)
        page.goto(console.url + "/")
        panel = page.locator("section.panel")
        expect(panel).not_to_contain_text("Monitor not running", timeout=15000)
        row = panel.locator("tr", has_text="edge-vllm")
        expect(row).to_contain_text("healthy", timeout=15000)
        expect(panel.locator("meter").first).to_be_visible()
        expect(panel).to_contain_text("no GPU detected")
        shot(page, "overview")
        page.goto(console.url + "/monitoring/")
        expect(page.locator(".chart .uplot").first).to_be_visible(timeout=10000)
        page.get_by_role("button", name="24h").click()
        expect(page.get_by_role("button", name="24h")).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".chart[data-metric=cpu_percent] .uplot")).to_be_visible()
        shot(page, "monitoring-host")
        page.goto(console.url + "/backends/")
        page.get_by_role("link", name="edge-vllm").first.click()
        expect(page.locator(".chart[data-metric=probe_latency_ms] .uplot")).to_be_visible(
            timeout=10000)
        shot(page, "backend-detail")
    finally:
        engine.stop()
    # the engine is gone: without reloading, the overview shows it down and the alert firing
    page.goto(console.url + "/")
    panel = page.locator("section.panel")
    expect(panel.locator("tr", has_text="edge-vllm")).to_contain_text("unhealthy",
                                                                      timeout=30000)
    expect(panel).to_contain_text("Backend unhealthy", timeout=30000)
    expect(page.locator("#fleet")).to_contain_text("Unhealthy", timeout=15000)
    shot(page, "overview-alert")
    page.goto(console.url + "/alerts/?state=firing")
    expect(page.get_by_role("button", name="Acknowledge")).to_be_visible()
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text("Acknowledged: Backend unhealthy")).to_be_visible()
    shot(page, "alerts")
    assert page.js_errors == []
