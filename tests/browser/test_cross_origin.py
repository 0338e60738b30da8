"""A page on another port of the same host must not ride a signed-in user's cookie into
the chat socket (cookies ignore ports; origins do not)."""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.browser.conftest import sign_in
from tests.support.llama_server import free_port

pytestmark = pytest.mark.browser

ATTACK = """<!doctype html><title>attack</title><script>
const result = document.title = "pending";
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws/chat/");
ws.onopen = () => { document.title = "opened"; };
ws.onclose = (e) => { if (document.title !== "opened") document.title = "refused " + e.code; };
</script>"""


def _serve(body: str) -> tuple[http.server.HTTPServer, int]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def test_page_on_another_loopback_port_cannot_open_the_chat_socket(page, console):
    sign_in(page, console)
    # the console's own page can open it (the control: the cookie works)
    page.goto(console.url + "/playground/")
    own = page.evaluate("""() => new Promise(done => {
        const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws/chat/");
        ws.onopen = () => { ws.close(); done("opened"); };
        ws.onclose = e => done("closed " + e.code);
    })""")
    assert own == "opened"
    server, port = _serve(ATTACK % {"port": console.port})
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.title !== 'pending'", timeout=10_000)
        assert page.title().startswith("refused")
    finally:
        server.shutdown()
