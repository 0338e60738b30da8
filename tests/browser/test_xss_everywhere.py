"""Backend-sourced and operator-typed text is inert on every page that shows it: backend
list and detail, overview, alerts, audit log, monitoring and the Django admin."""

import json
from http.server import BaseHTTPRequestHandler

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_backend
from tests.browser.test_xss import CORPUS
from tests.support.console_server import ConsoleServer
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.browser
NAME = "edge<img src=x onerror=alert('name')>"


class HostileEngine(LoopbackServer):
    """Answers every request with HTTP 500 whose error message is an XSS payload."""

    def __init__(self, payload: str):
        self.payload = payload

    def start(self) -> "HostileEngine":
        payload = self.payload

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"error": {"message": payload}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    server = ConsoleServer(tmp_path_factory.mktemp("xss") / "data",
                           TANGLAW_PROBE_INTERVAL_S="2", TANGLAW_HOST_INTERVAL_S="1").start()
    yield server
    server.stop()


def test_hostile_text_is_inert_everywhere(page, console):
    dialogs, remote = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: remote.append(r.url) if "127.0.0.1" not in r.url else None)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    engine = HostileEngine(" ".join(CORPUS[:12])[:190]).start()
    try:
        sign_in(page, console)
        add_backend(page, console, NAME, "openai_compatible", engine.url + "/v1")
        page.goto(console.url + "/")
        expect(page.locator("section.panel")).to_contain_text("Backend unhealthy",
                                                              timeout=30000)
        pages = ["/", "/backends/", "/alerts/", "/audit/", "/monitoring/",
                 "/admin/console/backend/", "/admin/monitoring/alert/", "/models/"]
        for path in pages:
            page.goto(console.url + path)
            page.wait_for_timeout(300)
            main = page.locator("main, #content").first
            assert main.locator("img[src='x'], script:not([src]), svg, iframe, object").count() \
                == 0, path
            handlers = page.evaluate("""() => [...document.querySelectorAll('main *')]
                .flatMap(e => [...e.attributes].map(a => a.name))
                .filter(n => n.startsWith('on'))""")
            assert handlers == [], (path, handlers)
        page.goto(console.url + "/backends/")
        expect(page.get_by_text(NAME).first).to_be_visible()  # shown as text, not markup
        page.get_by_role("link", name=NAME).first.click()
        expect(page.locator("main")).to_contain_text("<script>alert('s1')</script>")
        shot(page, "xss-backend-error")
    finally:
        engine.stop()
    assert dialogs == [] and remote == [] and missing == []
    assert page.js_errors == []
