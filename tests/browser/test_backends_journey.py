"""Sign in, register the real llama.cpp server, Test connection shows it healthy with its model."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def test_register_llama_server_and_test_connection(page, console, llama_server):
    sign_in(page, console)
    expect(page.get_by_text("No backends yet")).to_be_visible()
    shot(page, "overview-empty")

    page.get_by_role("link", name="Backends", exact=True).click()
    page.get_by_role("button", name="Add backend").click()
    page.get_by_label("Name").fill("edge-llama")
    page.get_by_label("Kind").select_option("llamacpp")
    page.get_by_label("Base URL").fill(llama_server.url)
    page.get_by_label("Notes").fill("tiny test model on this machine")
    shot(page, "backend-form")
    page.get_by_role("button", name="Add backend").click()

    expect(page.get_by_role("heading", name="edge-llama")).to_be_visible()
    page.get_by_role("button", name=re.compile("Test connection")).click()
    summary = page.locator("#test-summary")
    expect(summary).to_contain_text("Healthy")
    expect(page.locator("#models")).to_contain_text("tiny")
    expect(page.locator("#models")).to_contain_text("loaded")
    expect(page.locator("#status-badge")).to_contain_text("Healthy")
    expect(page.locator("#status-history")).to_contain_text("Not checked yet → Healthy")
    shot(page, "backend-detail-healthy")

    page.get_by_role("link", name="Backends", exact=True).click()
    row = page.locator("#backend-rows tr", has_text="edge-llama")
    expect(row).to_contain_text("Healthy")
    shot(page, "backends")

    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("table")).to_contain_text("backend.tested")
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#verify")).to_contain_text("The chain is intact")
    shot(page, "audit")
    assert page.js_errors == []


def test_bad_url_shows_a_clear_error_and_keeps_the_form(page, console):
    sign_in(page, console)
    page.goto(console.url + "/backends/new/")
    page.get_by_label("Name").fill("metadata")
    page.get_by_label("Base URL").fill("http://169.254.169.254/")
    page.get_by_role("button", name="Add backend").click()
    expect(page.get_by_role("alert")).to_contain_text("link-local or cloud-metadata")
    expect(page.get_by_label("Name")).to_have_value("metadata")
    assert page.js_errors == []
