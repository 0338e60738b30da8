"""The Engines pages in real Chromium: an admin sees the empty list, fills the form with
the stand-in engine, saves and starts it, and watches its page turn Running (the state
panel and the log refresh by themselves) while a supervisor runs it; then stops it. The
list and the engine page on a laptop and a phone: no sideways scroll, even with a
100-character name without spaces.

The console here is its own ASGI application (HTTP and WebSockets) served by uvicorn in a
thread of this process, not `manage.py serve`: the test's settings and a supervisor thread
of its own then share its database, as the monitor's supervisor thread does."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from console.audit import Actor
from tests.browser.conftest import shot
from tests.conftest import PASSWORD
from tests.engines.conftest import FAKE_COMMAND
from tests.support.llama_server import free_port

pytestmark = pytest.mark.browser
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LONG_NAME = "engine-" + "x" * 93  # 100 characters, no spaces


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright():
    """Playwright's sync API keeps an event loop in the main thread, where Django refuses
    database calls (the admin, the flush after the test, the second engine): allow them
    for this module only."""
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def engines_allowed(settings, tmp_path):
    settings.TANGLAW_ENGINE_COMMANDS = [FAKE_COMMAND]
    settings.DATA_DIR = tmp_path / "data"  # the engines' logs
    settings.DATA_DIR.mkdir()


@pytest.fixture
def console(live_db, engines_allowed):
    """console.asgi:application on a free port (uvicorn, in a thread): `.url`."""
    import uvicorn

    from console.asgi import application

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def supervisor(console):
    """A supervisor in a thread of its own, a pass every 0.2 s, as the monitor runs it."""
    from django.db import close_old_connections, connection

    from engines.supervisor import Supervisor

    stop, failures = threading.Event(), []
    sup = Supervisor("browser-monitor")

    def run():
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    sup.step()
                except Exception as exc:  # noqa: BLE001 - reported at the end
                    failures.append(repr(exc))
                stop.wait(0.2)
            sup.shutdown()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="browser-monitor", daemon=True)
    thread.start()
    yield sup
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the supervisor did not shut down"
    assert failures == []


def behaviour_file(tmp_path, name: str, **fields) -> str:
    """The stand-in engine's "model": how it behaves (tests/support/engine_process.py)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(fields))
    return str(path)


def sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def both_sizes(page, name: str) -> None:
    """The page at 1280×800 and at 390×844, each shot; at 390 nothing scrolls sideways."""
    page.set_viewport_size(LAPTOP)
    assert no_sideways_scroll(page), f"{name} scrolls sideways at 1280 px"
    shot(page, f"{name}-1280")
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page), f"{name} scrolls sideways at 390 px"
    shot(page, f"{name}-390")
    page.set_viewport_size(LAPTOP)


def test_an_admin_runs_an_engine_from_the_pages_and_stops_it(
        page, console, supervisor, admin_user, tmp_path):
    from engines import actions

    sign_in(page, console.url, admin_user.username)
    page.goto(console.url + "/engines/")
    expect(page.get_by_role("heading", name="No managed engines")).to_be_visible()
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page)
    page.set_viewport_size(LAPTOP)

    page.locator("section.empty").get_by_role("button", name="Run an engine").click()
    expect(page.get_by_role("heading", name="Run an engine")).to_be_visible()
    port = free_port()
    page.get_by_label("Name", exact=True).fill("browser-llama")
    page.get_by_label("Kind", exact=True).select_option(label="llama.cpp server")
    page.get_by_label("Model", exact=True).fill(behaviour_file(tmp_path, "browser-llama",
                                                          ready_after_s=0.3))
    page.get_by_label("Port", exact=True).fill(str(port))
    page.get_by_label("Extra flags", exact=True).fill("--parallel 2")
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page), "the form scrolls sideways at 390 px"
    page.set_viewport_size(LAPTOP)
    page.get_by_role("button", name="Save and start").click()

    expect(page.get_by_role("heading", name="browser-llama")).to_be_visible()
    expect(page.locator("p.flash").first).to_contain_text("Saved browser-llama")
    badge = page.locator("#engine-state .badge").first
    # the supervisor starts it, /health answers, and the panel (every 2 s) says so
    expect(badge).to_have_text("Running", timeout=20000)
    log = page.locator("pre.engine-log")
    expect(log).to_contain_text("args:", timeout=15000)
    first = log.inner_text().splitlines()[1]  # after the supervisor's "--- start" line
    assert first.startswith("args:") and f"--port {port}" in first \
        and "--parallel 2" in first, log.inner_text()
    expect(page.locator("pre.snippet-inline")).to_contain_text("--parallel 2")
    expect(page.locator("#engine-state")).to_contain_text("browser-monitor")

    # a second engine with a 100-character name and no spaces, made by the actions
    other = actions.create_engine(Actor.system(), {
        "name": LONG_NAME, "kind": "llamacpp", "command": FAKE_COMMAND,
        "model_path": behaviour_file(tmp_path, "long", ready_after_s=0.3), "port": free_port()})
    assert len(other.name) == 100

    page.goto(console.url + "/engines/")
    rows = page.locator("#engine-rows tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="browser-llama").locator(".badge")).to_have_text("Running")
    expect(rows.filter(has_text=LONG_NAME).locator(".badge")).to_have_text("Stopped")
    both_sizes(page, "engines-list")

    page.goto(f"{console.url}/engines/{other.pk}/")
    expect(page.get_by_role("heading", name=LONG_NAME)).to_be_visible()
    page.set_viewport_size(PHONE)
    assert no_sideways_scroll(page), "a long engine name widens its page at 390 px"
    page.set_viewport_size(LAPTOP)

    page.goto(console.url + "/engines/")
    page.locator("#engine-rows").get_by_role("link", name="browser-llama").first.click()
    expect(badge).to_have_text("Running")
    expect(log).to_contain_text("args:")
    both_sizes(page, "engine-detail")

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(badge).to_have_text("Stopped", timeout=20000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_visible()
    page.reload()  # the events table does not poll
    expect(page.locator("table tbody tr").first).to_contain_text("Stopped")
    assert page.js_errors == []
