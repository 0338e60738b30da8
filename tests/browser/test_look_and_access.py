"""Every page, with long values everywhere, in both themes and at both sizes: nothing
sticks out sideways at 1280×800 or 390×844, axe-core (npm, injected into Debian's
Chromium) finds no serious or critical violation in the light theme or the dark one,
the navigation folds behind a Menu button a keyboard can open and close, the theme
toggle cycles system → light → dark and the page is drawn in the choice. Screenshots of
the main pages in both themes at both sizes go to docs/screenshots/."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_operator_journey import OVERFLOW
from tests.support import npm_peers
from tests.support.console_server import ADMIN_PASSWORD, ConsoleServer, signed_in
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, usage

pytestmark = pytest.mark.browser

LONG = "x" * 60 + "-without-any-spaces-at-all-" + "y" * 13  # 100 characters
assert len(LONG) == 100


@pytest.fixture(scope="module")
def engine():
    server = ScriptedOpenAI(model="m-" + "q" * 70).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory, engine):
    server = ConsoleServer(tmp_path_factory.mktemp("look") / "data",
                           TANGLAW_PROBE_INTERVAL_S="2",
                           TANGLAW_DISCOVERY_PORTS=str(engine.port)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(console, engine):
    return seed(console, engine)


def seed(console, engine) -> dict:
    """Long names and URLs on every kind of thing a page lists, made through the API."""
    admin = signed_in(console.url, ADMIN_PASSWORD)
    csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}

    def post(path, body, ok=(200, 201)):
        answer = admin.post(path, headers=csrf, json=body)
        assert answer.status_code in ok, (path, answer.text)
        return answer.json()

    backend = post("/api/backends", {"name": LONG, "kind": "openai_compatible",
                                     "base_url": engine.url})
    agent = post("/api/agents", {"name": LONG, "backend_id": backend["id"],
                                 "model": engine.model, "tool_ids": [],
                                 "description": "d" * 300, "system_prompt": "Be brief."})
    post("/api/agents/quick", {"backend_id": backend["id"], "model": engine.model})
    post("/api/tools", {"name": "t" * 64, "kind": "http", "description": "A long URL.",
                        "config": {"method": "GET", "url": "https://example.org/"
                                   + "p" * 300 + "?q={q}"},
                        "parameters": {"type": "object", "required": ["q"], "properties": {
                            "q": {"type": "string", "description": "w" * 200}}}})
    post("/api/alert-rules", {"name": LONG, "metric": "latency_ms",
                              "threshold": 5000})
    post("/api/channels", {"name": LONG, "kind": "webhook",
                           "target": "https://hooks.example.org/" + "h" * 200})
    post("/api/gateway/keys", {"name": "k" * 64})
    post("/api/knowledge", {"title": LONG, "content": "z" * 2000})
    dataset = post("/api/datasets", {"name": LONG, "description": "d" * 400, "cases": [
        {"id": "c" * 64, "messages": "q" * 500, "expected": "e" * 300,
         "checks": [{"kind": "regex", "pattern": "p" * 200}]}]})
    host = post("/api/hosts", {"name": LONG, "address": "10.0.0." + "9",
                               "labels": {"site": "s" * 100},
                               "targets": [{"kind": "node_exporter",
                                            "url": "http://10.0.0.9:9100/" + "m" * 200}]})
    experiment = post("/api/experiments", {"dataset_id": dataset["id"], "name": LONG,
                                           "targets": [{"agent_id": agent["id"]}]})
    engine.add(text("A" * 400), finish(), usage(10, 90))
    chat = post(f"/api/agents/{agent['id']}/chat", {"message": "q" * 300})
    admin.close()
    return {"backend": backend["id"], "agent": agent["id"], "dataset": dataset["id"],
            "experiment": experiment["id"], "conversation": chat["conversation_id"],
            "host": host["id"]}


PAGES = ["/", "/backends/", "/backends/new/", "/backends/discover/", "/models/", "/plans/",
         "/config/", "/agents/", "/agents/new/", "/agents/import/", "/agents/import/maf/",
         "/playground/", "/approvals/", "/knowledge/", "/tools/", "/tools/http/new/",
         "/tools/mcp/", "/monitoring/", "/monitoring/report/", "/alerts/",
         "/recommendations/", "/engines/", "/engines/new/",
         "/gateway/keys/", "/gateway/aliases/", "/gateway/aliases/new/", "/gateway/usage/",
         "/traces/", "/audit/", "/users/", "/account/tokens/", "/account/password/"]


def all_pages(seeded) -> list[str]:
    b, a = seeded["backend"], seeded["agent"]
    return [*PAGES, f"/backends/{b}/", f"/backends/{b}/edit/", f"/backends/{b}/models/",
            f"/agents/{a}/", f"/agents/{a}/edit/", f"/playground/?agent={a}",
            "/datasets/", f"/datasets/{seeded['dataset']}/", "/experiments/",
            f"/experiments/{seeded['experiment']}/", "/compare/",
            f"/compare/?conversation={seeded['conversation']}", "/fleet/",
            f"/fleet/{seeded['host']}/"]


def _settle(page) -> None:
    page.wait_for_load_state("networkidle")
    time.sleep(0.2)  # charts draw after their fetch


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_no_page_scrolls_sideways_with_long_values(browser, console, seeded, viewport):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    try:
        sign_in(page, console)
        problems = {}
        for path in all_pages(seeded):
            response = page.goto(console.url + path)
            assert response.status == 200, (path, response.status)
            _settle(page)
            found = page.evaluate(OVERFLOW)
            if found["pageWidth"] > found["width"] + 1 or found["out"]:
                problems[path] = found
        assert problems == {}, problems
    finally:
        context.close()


def axe(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=npm_peers.AXE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
          .map(v => ({id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ") + " :: "
                                                     + (n.failureSummary || "").slice(0, 160))}));
    }""")
    return result


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_either_theme(browser, console, seeded, scheme):
    npm_peers.require()
    # the CSP allows no inline script: axe goes in with the page's CSP bypassed
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    try:
        sign_in(page, console)
        assert page.evaluate("() => getComputedStyle(document.documentElement)"
                             ".getPropertyValue('--tg-scheme').trim()") == scheme
        found = {}
        for path in [*all_pages(seeded), "/login/"]:
            if path == "/login/":
                page.context.clear_cookies()
            page.goto(console.url + path)
            _settle(page)
            violations = axe(page)
            if violations:
                found[path] = violations
        assert found == {}, found
    finally:
        context.close()


def test_the_menu_folds_on_a_phone_and_works_by_keyboard(browser, console, seeded):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, console)
        menu = page.get_by_role("button", name="Menu")
        links = page.locator("#nav-links")
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(links).to_be_hidden()
        # the first Tab reaches the skip link, which jumps to the content
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        for _ in range(6):
            page.keyboard.press("Tab")
            if menu.evaluate("el => el === document.activeElement"):
                break
        expect(menu).to_be_focused()
        page.keyboard.press("Enter")
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(links.get_by_role("link", name="Playground")).to_be_visible()
        shot(page, "phone-menu-open")
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.textContent.trim()")
        assert focused == "Overview"
        # focus is visible: an outline on the focused link
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Escape")
        expect(links).to_be_hidden()
        expect(menu).to_be_focused()
        # at desktop width the links are always there and Menu is not
        page.set_viewport_size({"width": 1280, "height": 800})
        expect(menu).to_be_hidden()
        expect(links.get_by_role("link", name="Playground")).to_be_visible()
    finally:
        context.close()


def test_the_theme_toggle_and_its_cookie(browser, console, seeded):
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  color_scheme="light")
    page = context.new_page()
    try:
        sign_in(page, console)
        toggle = page.locator("[data-theme-toggle]")
        expect(toggle).to_have_attribute("data-current", "system")
        expect(toggle).to_have_accessible_name("Theme: system")
        scheme = "() => getComputedStyle(document.documentElement)" \
                 ".getPropertyValue('--tg-scheme').trim()"
        assert page.evaluate(scheme) == "light"
        toggle.click()
        expect(toggle).to_have_attribute("data-current", "light")
        expect(toggle).to_have_accessible_name("Theme: light")
        toggle.click()
        expect(toggle).to_have_attribute("data-current", "dark")
        assert page.evaluate(scheme) == "dark"
        # the server draws the next page in it (no flash): the attribute is in the HTML
        page.goto(console.url + "/monitoring/")
        assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
        expect(page.locator("[data-metric] .uplot").first).to_be_visible(timeout=15000)
        axis = page.evaluate("() => getComputedStyle(document.documentElement)"
                             ".getPropertyValue('--tg-chart-axis').trim()")
        assert axis == "#c2c7d0"
        toggle = page.locator("[data-theme-toggle]")
        expect(toggle).to_have_attribute("data-current", "dark")  # drawn by the server
        toggle.click()
        expect(toggle).to_have_attribute("data-current", "system")
        page.reload()
        assert page.evaluate("() => document.documentElement.dataset.theme") is None
        assert page.evaluate(scheme) == "light"
    finally:
        context.close()


SHOTS = {"overview": "/", "playground": "/playground/?agent={agent}", "models": "/models/",
         "agent-form": "/agents/new/", "monitoring": "/monitoring/"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_screenshots_in_both_themes_at_both_sizes(browser, console, seeded, scheme,
                                                  viewport):
    size = "desktop" if viewport[0] > 500 else "phone"
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  color_scheme=scheme)
    page = context.new_page()
    try:
        sign_in(page, console)
        for name, path in SHOTS.items():
            page.goto(console.url + path.format(agent=seeded["agent"]))
            _settle(page)
            expect(page.locator("main h1, main h2").first).to_be_visible()
            shot(page, f"theme-{scheme}-{size}-{name}")
    finally:
        context.close()


def test_the_agent_form_by_keyboard(browser, console, seeded):
    """Tab reaches every folded section; Enter opens it; the focused field shows it."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, console)
        page.goto(console.url + "/agents/new/")
        page.get_by_label("Name", exact=True).focus()
        page.keyboard.type("keyboard-agent")
        focused = "() => document.activeElement.textContent.trim().split('\\n')[0]"
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.tagName") == "SUMMARY" and \
                    page.evaluate(focused).startswith("Generation"):
                break
        assert page.evaluate(focused).startswith("Generation")
        assert page.evaluate("() => getComputedStyle(document.activeElement)"
                             ".outlineStyle") != "none"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(page.get_by_label("Temperature")).to_be_focused()
        assert page.evaluate("() => getComputedStyle(document.activeElement)"
                             ".boxShadow + getComputedStyle(document.activeElement)"
                             ".outlineStyle") not in ("nonenone", "none")
    finally:
        context.close()


def test_the_backend_form_fills_each_kinds_address(browser, console, seeded):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, console)
        page.goto(console.url + "/backends/new/")
        url = page.get_by_label("Base URL")
        expect(url).to_have_value("http://127.0.0.1:11434")
        page.get_by_label("Kind").select_option("llamacpp")
        expect(url).to_have_value("http://127.0.0.1:8080")
        page.get_by_label("Kind").select_option("vllm")
        expect(url).to_have_value("http://127.0.0.1:8000")
        url.fill("http://10.0.0.7:9000")  # typed by hand: left alone
        page.get_by_label("Kind").select_option("ollama")
        expect(url).to_have_value("http://10.0.0.7:9000")
        expect(page.locator("main form")).not_to_contain_text("keep the current key")
    finally:
        context.close()


def test_alert_rules_and_channels_are_changed_on_the_page(browser, console, seeded):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, console)
        page.goto(console.url + "/alerts/")
        page.get_by_role("button", name=f"Disable the rule {LONG}").click()
        expect(page.get_by_text(f"Disabled the rule {LONG}.")).to_be_visible()
        page.get_by_role("link", name=f"Edit the rule {LONG}").click()
        expect(page.locator("#new-rule summary")).to_contain_text(f"Edit the rule {LONG}")
        page.get_by_label("Threshold").fill("6500")
        page.get_by_role("button", name="Save the rule").click()
        expect(page.get_by_text(f"Saved the rule {LONG}.")).to_be_visible()
        expect(page.locator("table.rules")).to_contain_text("6500")
        page.get_by_role("button", name=f"Send test to {LONG}").click()
        # hooks.example.org cannot be reached from here: the page says what happened
        expect(page.locator(".flash-error, .flash-success").first).to_contain_text(
            f"test notification to {LONG}")
        shot(page, "alerts-phone")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Delete the channel {LONG}").click()
        expect(page.get_by_text(f"Deleted the channel {LONG}")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
