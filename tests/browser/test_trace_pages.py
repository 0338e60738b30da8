"""The trace pages in real Chromium: the list, and one turn's waterfall (routed, its first
model failing, a fallback, an escalation, a tool call waiting for approval) on a laptop
and a phone: no sideways scroll, the failed step in red, the labels on their steps."""

import json
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.console_server import ROOT
from tests.traces.test_pages import external_turn, span, turn

pytestmark = pytest.mark.browser
RED = "rgb(198, 40, 40)"  # --tg-red: badges, bars
RED_TEXT = "rgb(183, 28, 28)"  # --tg-red-text: red words (4.5:1 on white)
WRITE = "import json, sys\nfrom traces import store\nstore.add(json.load(sys.stdin))\n" \
        "store.flush()\n"


def write_spans(console, rows: list[dict]) -> None:
    """Spans into the running console's database, as its trace writer stores them."""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", WRITE], cwd=ROOT,
                   env={**console.env, "TANGLAW_TRACE_FLUSH_S": "0"}, input=json.dumps(rows),
                   text=True, capture_output=True, check=True, timeout=60)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_the_trace_list_and_a_turns_waterfall_on_a_laptop_and_a_phone(page, console):
    sign_in(page, console)
    rows = turn(content=True, agent="support-desk")
    tid = rows[0]["trace_id"]
    # a step with a long unbroken name and value must wrap, not widen the page
    rows.append(span(tid, "execute_tool lookup_customer_record_by_reference_number_" + "x" * 60,
                     820, 40, parent=rows[0]["span_id"], gen_ai__operation__name="execute_tool",
                     gen_ai__tool__name="lookup_customer", gen_ai__tool__call__id="call_" +
                     "9" * 80))
    write_spans(console, rows + external_turn(start_ms=2000)
                + external_turn("radar", start_ms=3000, error="model overloaded")
                + external_turn(start_ms=4000))

    page.goto(console.url + "/traces/")
    expect(page.get_by_role("heading", name="Traces")).to_be_visible()
    table = page.locator("table.trace-table")
    expect(table.locator("tbody tr")).to_have_count(4)
    failed = table.locator(f"#trace-{tid}")
    expect(failed).to_contain_text("support-desk")
    badge = failed.locator("td[data-label='Status'] .badge")
    expect(badge).to_have_text("error")
    assert badge.evaluate("el => getComputedStyle(el).backgroundColor") == RED
    expect(table.locator(".badge-external")).to_have_count(3)
    assert no_sideways_scroll(page)
    shot(page, "trace-list")
    # a custom range's fields show only once it is chosen (CSS :has, no script)
    expect(page.get_by_label("From")).to_be_hidden()
    page.get_by_label("Started").select_option("custom")
    expect(page.get_by_label("From")).to_be_visible()
    page.get_by_label("Started").select_option("")
    page.set_viewport_size({"width": 390, "height": 844})
    assert no_sideways_scroll(page)
    page.set_viewport_size({"width": 1280, "height": 800})

    failed.get_by_role("link", name="invoke_agent support-desk").click()
    expect(page.get_by_role("heading", name="invoke_agent support-desk")).to_be_visible()
    steps = page.locator("ol.waterfall > li.step")
    expect(steps).to_have_count(9)
    error = page.locator("li.step.step-error", has_text="chat qwen-primary")
    name = error.locator(".step-title")
    assert name.evaluate("el => getComputedStyle(el).color") == RED_TEXT
    assert error.locator("rect").evaluate("el => getComputedStyle(el).fill") == RED
    expect(error).to_contain_text("connection refused by edge-primary")
    for label in ("router", "fallback", "escalation", "approval"):
        expect(page.locator(f"li.step-{label} .badge-{label}")).to_be_visible()
    # the tool's bar sits where the tool ran: 500–700 ms of a 900 ms turn
    tool = page.locator("li.step", has_text="execute_tool calculator")
    bar, rect = tool.locator("svg.step-bar"), tool.locator("rect")
    box, drawn = bar.bounding_box(), rect.bounding_box()
    assert abs((drawn["x"] - box["x"]) / box["width"] - 500 / 900) < 0.01
    assert abs(drawn["width"] / box["width"] - 200 / 900) < 0.01

    error.locator("summary").click()
    expect(error.locator(".step-body")).to_contain_text("All connection attempts failed")
    tool.locator("summary").first.click()
    expect(tool.locator(".step-body")).to_contain_text('"expression": "2+2"')
    expect(tool.locator(".step-body")).to_contain_text("call_42")
    page.locator("li.step", has_text="lookup_customer_record").locator("summary").click()
    expect(page.locator("li.step", has_text="lookup_customer_record")).to_contain_text(
        "Content not kept")
    assert no_sideways_scroll(page)
    shot(page, "trace-detail")

    page.set_viewport_size({"width": 390, "height": 844})
    assert no_sideways_scroll(page)
    expect(page.locator("li.step-escalation .badge-escalation")).to_be_visible()
    shot(page, "trace-detail-phone")
    assert page.js_errors == []
