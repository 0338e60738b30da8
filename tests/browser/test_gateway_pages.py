"""The gateway's pages in real Chromium: create a key with a daily budget (shown once,
with a snippet for this site's /v1), an alias with a fallback, send requests with the key
as a script would, and watch them on the keys page (budget bar) and the Usage page (tiles,
charts, grouping by model through htmx) — on a laptop and a phone."""

import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_backend
from tests.support.scripted_openai import finish, text, usage

pytestmark = pytest.mark.browser


def no_sideways_scroll(page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    # charts drawn at the laptop's width follow their boxes (a resize, debounced)
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390",
                           timeout=3000)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_a_key_an_alias_and_their_usage(page, console, scripted):
    sign_in(page, console)
    add_backend(page, console, "edge", "openai_compatible", scripted.url)

    page.goto(console.url + "/gateway/keys/")
    expect(page.get_by_role("heading", name="No gateway keys yet")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("nightly-eval")
    page.get_by_label("Requests per minute").fill("60")
    page.get_by_label("Tokens per day").fill("1000")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Copy the key “nightly-eval” now")).to_be_visible()
    raw = page.locator("#new-key").inner_text().strip()
    assert raw.startswith("tgl_")
    expect(page.locator("#snippet-curl")).to_contain_text(f"{console.url}/v1/chat/completions")
    expect(page.locator("#snippet-python")).to_contain_text(f'api_key="{raw}"')
    no_sideways_scroll(page)

    page.goto(console.url + "/gateway/aliases/new/")
    page.get_by_label("Name", exact=True).fill("fast")
    page.get_by_label("Backend 1").select_option(label="edge")
    page.get_by_label("Model 1").fill("scripted-1")
    page.get_by_role("button", name="Save alias").click()
    expect(page.get_by_text("Saved the alias fast")).to_be_visible()
    expect(page.locator("table")).to_contain_text("edge/scripted-1")

    # a script with the key: three answers (one through the alias), one streamed, one
    # for a model that is not there; each answer 20 tokens in and 5 out
    for _ in range(3):
        scripted.add(("completion", {"role": "assistant", "content": "ok"}))
    scripted.add(text("o", "k"), finish(), usage(20, 5))
    with httpx.Client(base_url=console.url + "/v1", timeout=30,
                      headers={"Authorization": f"Bearer {raw}"}) as client:
        for model in ("edge/scripted-1", "edge/scripted-1", "fast", "nowhere/none"):
            answer = client.post("/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == (404 if model == "nowhere/none" else 200), answer.text
        streamed = client.post("/chat/completions", json={
            "model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text

    deadline = time.monotonic() + 15  # the records are written in batches, every second
    while page.request.get(console.url + "/api/gateway/usage").json()["totals"][
            "requests"] < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    page.goto(console.url + "/gateway/keys/")
    row = page.locator("tr", has_text="nightly-eval")
    expect(row).to_contain_text("100 / 1,000 tokens")
    expect(row.locator("meter").nth(1)).to_have_attribute("value", "100")
    expect(row.locator("td[data-label='Last used']")).to_contain_text("ago")
    assert raw not in page.content()
    shot(page, "gateway-keys")
    no_sideways_scroll(page)

    page.goto(console.url + "/gateway/usage/")
    tiles = page.locator(".tiles")
    expect(tiles).to_contain_text("Requests")
    expect(tiles.locator(".tile").first.locator(".big")).to_have_text("5")
    expect(tiles).not_to_contain_text("p50; p95 —")  # the streamed answer's TTFT
    expect(page.locator("table.usage-table")).to_contain_text("nightly-eval")
    page.wait_for_function("() => document.querySelectorAll('[data-usage-chart]').length "
                           "=== 4 && [...document.querySelectorAll('[data-usage-chart]')]"
                           ".every((el) => el.uplot)")
    drawn = page.evaluate("""() => [...document.querySelectorAll('[data-usage-chart]')]
        .map((el) => ({kind: el.dataset.usageChart,
                       // the last point only carries the last bucket's step to the end
                       sums: el.uplot.data.slice(1).map((ys) => ys.slice(0, -1).reduce(
                         (a, v) => a + (v || 0), 0))}))""")
    sums = {d["kind"]: d["sums"] for d in drawn}
    assert (sums["requests"], sums["tokens"], sums["errors"]) == ([5], [80, 20], [1, 0])
    assert sums["ttft"][0] > 0
    shot(page, "gateway-usage")

    page.get_by_role("button", name="Model", exact=True).click()  # htmx swaps the body
    expect(page).to_have_url(f"{console.url}/gateway/usage/?window=24h&group=model")
    table = page.locator("table.usage-table")
    expect(table).to_contain_text("fast")
    expect(table).to_contain_text("nowhere/none")
    # drawn again from the new body: a line per model (x and three models)
    page.wait_for_function("() => { const el = document.querySelector("
                           "'[data-usage-chart=requests]'); "
                           "return el.uplot && el.uplot.series.length === 4; }")
    no_sideways_scroll(page)
    assert page.js_errors == []
