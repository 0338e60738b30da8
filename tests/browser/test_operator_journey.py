"""A new operator's first hour, in Chromium, end to end: sign in → the overview has found
the engine → Register, Chat, Enter: a first streamed reply → an agent with a tool → chat
with a tool card → the overview shows the traffic →
the backend goes down → the alert fires and resolves → the audit log shows all of it →
export it. Each step's screenshot is docs/screenshots/journey-*.png (used in the README).
Then every page is checked at 1280×800 and at 390×844 for overflow."""

import json
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.console_server import ConsoleServer
from tests.support.scripted_openai import ScriptedOpenAI, finish, text, tool_whole, usage

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def engine():
    server = ScriptedOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory, engine):
    server = ConsoleServer(tmp_path_factory.mktemp("journey") / "data",
                           TANGLAW_PROBE_INTERVAL_S="2", TANGLAW_HOST_INTERVAL_S="1",
                           TANGLAW_DISCOVERY_PORTS=str(engine.port)).start()
    yield server
    server.stop()


def reload_until(page, url: str, found, timeout: float = 45) -> None:
    """Open `url` again until `found()` matches something (pages that do not poll)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if found().count() or time.monotonic() > deadline:
            expect(found().first).to_be_visible()
            return
        time.sleep(1)


def test_first_hour_of_a_new_operator(page, console, engine):
    # 1. first sign-in: the overview says what to do next and has already looked for
    # engines on this machine (discovery on arrival: no click)
    sign_in(page, console)
    expect(page.get_by_role("heading", name="No backends yet")).to_be_visible()
    expect(page.get_by_role("heading", name="Getting started")).to_contain_text("0 of 5 done")
    row = page.locator("#arrival-discovery tr", has_text=f"127.0.0.1:{engine.port}")
    expect(row).to_contain_text("OpenAI-compatible")
    shot(page, "journey-1-first-overview")

    # 2. the first reply, counted: Register (click 1), Chat on the model (click 2),
    # type and press Enter (click 3 would be Send) — three after sign-in
    clicks = 0
    row.get_by_role("button", name="Register").click()
    clicks += 1
    expect(page.get_by_role("heading", name="Models on")).to_be_visible()
    backend_name = page.locator("h1").inner_text().removeprefix("Models on ").strip()
    shot(page, "journey-2-discover")
    page.get_by_role("button", name=f"Chat with scripted-1 on {backend_name}").click()
    clicks += 1
    engine.add(text("Hello, ", "night shift."), finish(), usage(9, 4))
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_label("Message").fill("Hello?")
    page.keyboard.press("Enter")
    clicks += 1
    expect(page.locator(".msg-assistant .body").last).to_have_text("Hello, night shift.")
    assert clicks <= 4
    expect(page.get_by_role("link", name="Save as agent…")).to_be_visible()
    shot(page, "journey-2b-first-reply")

    # 3. an agent that may use the calculator
    page.goto(console.url + "/agents/new/")
    page.get_by_label("Name", exact=True).fill("shift-assistant")
    page.get_by_label("Backend", exact=True).select_option(label=backend_name)
    page.get_by_label("Model", exact=True).fill("scripted-1")
    page.get_by_label("System prompt", exact=True).fill("You help the night shift.")
    page.get_by_label("calculator").first.check()
    shot(page, "journey-3-agent")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name="shift-assistant")).to_be_visible()

    # 4. chat: the model calls the tool, the card shows it, then the answer streams
    engine.add(tool_whole("c1", "calculator", '{"expression": "3*17"}'),
               finish("tool_calls"), usage(30, 9))
    engine.add(text("Three pallets of 17 crates: ", "51 crates."), finish(), usage(60, 8))
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_label("Message").fill("How many crates are on 3 pallets of 17?")
    page.keyboard.press("Enter")
    card = page.locator(".tool-card").first
    expect(card).to_contain_text("calculator")
    expect(page.locator(".msg-assistant .body").last).to_have_text(
        "Three pallets of 17 crates: 51 crates.")
    expect(page.locator(".msg-assistant .timings").last).to_contain_text("TTFT")
    shot(page, "journey-4-chat")

    # 5. the overview shows the traffic (the monitor folds runs into tokens/s)
    page.goto(console.url + "/")
    panel = page.locator("section.panel")
    backend_row = panel.locator("tr", has_text=backend_name)
    expect(backend_row).to_contain_text("healthy", timeout=15000)
    expect(page.locator("main")).to_contain_text("agent.turn")
    expect(backend_row.locator("td").nth(3)).not_to_have_text("—", timeout=30000)
    shot(page, "journey-5-overview-traffic")

    # 6. the engine goes away: the overview turns red and the alert fires by itself
    port = engine.port
    engine.stop()
    expect(panel.locator("tr", has_text=backend_name)).to_contain_text("unhealthy",
                                                                       timeout=30000)
    expect(panel).to_contain_text("Backend unhealthy", timeout=30000)
    shot(page, "journey-6-backend-down")

    # 7. it comes back on the same port: the alert resolves
    engine.bind_port = port
    engine.start()
    expect(panel.locator("tr", has_text=backend_name)).to_contain_text("healthy",
                                                                       timeout=30000)
    reload_until(page, console.url + "/alerts/?state=resolved",
                 lambda: page.locator("table").first.locator("tbody tr",
                                                             has_text="Backend unhealthy"))
    expect(page.locator("table").first.locator("tbody tr").first).to_contain_text("Resolved")
    shot(page, "journey-7-alert-resolved")

    # 8. the audit log has all of it, in order, and verifies
    page.goto(console.url + "/audit/")
    log = page.locator("table").first.locator("tbody")
    for action in ("auth.login", "backend.created", "agent.created", "agent.turn",
                   "tool.called", "alert.fired", "alert.resolved"):
        expect(log).to_contain_text(action)
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#verify")).to_contain_text("The chain is intact")
    shot(page, "journey-8-audit")

    # 9. export it (JSONL ends with a signed checkpoint)
    with page.expect_download() as download:
        page.get_by_role("link", name="JSONL").click()
    lines = download.value.path().read_text().splitlines()
    events = [json.loads(line) for line in lines]
    actions = [e.get("action") for e in events]
    assert {"backend.created", "agent.turn", "alert.fired", "alert.resolved"} <= set(actions)
    assert "checkpoint" in json.dumps(events[-1])
    assert page.js_errors == []



PAGES = ["/", "/backends/", "/backends/new/", "/backends/discover/", "/models/", "/plans/",
         "/config/", "/agents/", "/agents/new/", "/agents/import/", "/playground/",
         "/knowledge/", "/tools/", "/tools/http/new/", "/tools/mcp/", "/monitoring/",
         "/monitoring/report/", "/alerts/", "/recommendations/", "/engines/", "/engines/new/",
         "/audit/", "/users/", "/account/tokens/", "/account/password/",
         "/admin/"]

# elements sticking out past the right edge that no scrolling box of theirs contains
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll" || o === "hidden") return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > width + 1 && !scrolls(el)) {
      const name = `${el.tagName.toLowerCase()}.${el.className}`.slice(0, 80);
      out.push(`${name} right=${Math.round(r.right)}`);
    }
  }
  return {pageWidth: document.documentElement.scrollWidth, width, out: out.slice(0, 8)};
}"""


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_every_page_fits_the_screen(browser, console, viewport):
    """After the journey there is data on every page; none may overflow sideways."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    try:
        sign_in(page, console)
        backend = console.url + page.evaluate("""async () => {
            const r = await fetch('/api/backends'); const b = await r.json();
            return b.length ? `/backends/${b[0].id}/` : '/backends/'; }""")
        problems = {}
        for path in [*PAGES, backend.removeprefix(console.url)]:
            response = page.goto(console.url + path)
            assert response.status == 200, (path, response.status)
            page.wait_for_load_state("networkidle")
            found = page.evaluate(OVERFLOW)
            if found["pageWidth"] > found["width"] + 1 or found["out"]:
                problems[path] = found
        if viewport[0] < 500:
            page.goto(console.url + "/")
            shot(page, "phone-overview")
        assert problems == {}, problems
    finally:
        context.close()
