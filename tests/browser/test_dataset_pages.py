"""Datasets in the browser: made from pasted JSON Lines, edited on the page as a new
version, a case removed (after a confirmation), an older version read back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_operator_journey import OVERFLOW

pytestmark = pytest.mark.browser

LINES = ('{"id": "add", "messages": "What is 2+2?", "expected": "4", '
         '"checks": [{"kind": "contains", "value": "4"}]}\n'
         '{"id": "day", "messages": "What day is it?"}')


def test_a_dataset_is_made_edited_and_read_back(browser, console):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, console)
    page.goto(console.url + "/datasets/")
    page.get_by_label("Name").fill("front desk")
    page.get_by_label("…or paste JSON Lines").fill(LINES)
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_text("Created front desk with 2 cases.")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    # edit a case in the editor, which starts from this version's cases
    editor = page.get_by_label("Cases as JSON Lines")
    assert '"expected": "4"' in editor.input_value()
    editor.fill(editor.input_value().replace('"expected": "4"', '"expected": "four"'))
    page.locator("form:has(textarea[name=jsonl]) input[name=note]").fill("spelled out")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Version 2: 2 cases.")).to_be_visible()
    expect(page.locator("tbody")).to_contain_text("four")
    # remove one, after saying yes
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove case day").click()
    expect(page.get_by_text("Removed day: version 3 has 1 case.")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    # version 1 is still there as it was
    page.get_by_label("Version").select_option("1")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("This is an older version.")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("tbody")).not_to_contain_text("four")
    page.set_viewport_size({"width": 390, "height": 844})
    found = page.evaluate(OVERFLOW)
    assert found["pageWidth"] <= found["width"] + 1 and not found["out"], found
    context.close()
