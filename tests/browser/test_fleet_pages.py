"""The fleet in the browser: three edge boxes added by their exporters (Debian's real
node exporter, and the fake DCGM and nvidia_gpu_exporter GPUs), watched by the console's
own monitor; the fleet page, a host page with its charts, Test; at 1280×800 and 390×844."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_operator_journey import OVERFLOW
from tests.support.console_server import ADMIN_PASSWORD, signed_in
from tests.support.fake_exporters import FakeExporters
from tests.support.node_exporter import NodeExporter

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_three_edge_boxes_on_one_fleet_page(browser, console, tmp_path):
    node = NodeExporter(tmp_path).start()
    gpus = FakeExporters().start()
    try:
        admin = signed_in(console.url, ADMIN_PASSWORD)
        csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}
        assert admin.put("/api/monitor/settings", headers=csrf,
                         json={"probe_interval_s": 5}).status_code == 200
        for body in (
                {"name": "jetson-orin-cebu", "address": "127.0.0.1",
                 "labels": {"site": "cebu", "rack": "r1"},
                 "targets": [{"kind": "node_exporter", "url": node.url}]},
                {"name": "l4-manila", "address": "localhost", "labels": {"site": "manila"},
                 "targets": [{"kind": "dcgm_exporter", "url": gpus.url("/dcgm")}]},
                {"name": "rtx-davao", "address": "127.0.0.2", "labels": {"site": "davao"},
                 "targets": [{"kind": "nvidia_gpu_exporter", "url": gpus.url("/nvidia")}]}):
            made = admin.post("/api/hosts", headers=csrf, json=body)
            assert made.status_code == 201, made.text
        admin.close()
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        sign_in(page, console)
        page.goto(console.url + "/fleet/")
        cards = page.locator(".host-card")
        expect(cards).to_have_count(3)
        # the monitor scrapes them within a round or two
        jetson = cards.filter(has_text="jetson-orin-cebu")
        for _ in range(40):  # up, and CPU from two scrapes
            if page.locator(".host-card .badge", has_text="up").count() == 3 and \
                    "CPU —" not in jetson.inner_text().replace("\n", " ").replace("\t", " "):
                break
            page.wait_for_timeout(1000)
            page.reload()
        expect(page.locator(".fleet-counts")).to_contain_text("3 up")
        expect(cards.filter(has_text="l4-manila")).to_contain_text("0: 87 %")
        expect(cards.filter(has_text="rtx-davao")).to_contain_text("0: 42 %")
        expect(cards.filter(has_text="jetson-orin-cebu")).to_contain_text("Memory")
        shot(page, "fleet-desktop")
        page.get_by_role("link", name="l4-manila").click()
        expect(page.get_by_role("heading", name="GPU 1 · NVIDIA L4")).to_be_visible()
        page.get_by_role("button", name="Test the exporters now").click()
        expect(page.locator("#test-results")).to_contain_text("answered in")
        expect(page.locator("#test-results")).to_contain_text("gpu_memory_percent")
        page.goto(console.url + "/fleet/")
        page.get_by_role("link", name="jetson-orin-cebu").click()
        expect(page.locator(".chart[data-scope^='host:']").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        shot(page, "fleet-host-desktop")
        for path in ("/fleet/", page.url.removeprefix(console.url)):
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(console.url + path)
            found = page.evaluate(OVERFLOW)
            assert found["pageWidth"] <= found["width"] + 1 and not found["out"], (path, found)
        page.goto(console.url + "/fleet/")
        shot(page, "fleet-phone")
        context.close()
    finally:
        gpus.stop()
        node.stop()
