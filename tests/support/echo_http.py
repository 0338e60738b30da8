"""A small HTTP server for the HTTP-tool, egress and notifier tests: echo, redirect, big,
status, sleep."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer


class EchoServer(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[dict] = []

    def start(self) -> EchoServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes, content_type="application/json",
                        headers=None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = {"method": self.command, "path": parts.path,
                        "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw) if raw else None}
                server.requests.append(seen)
                if parts.path.startswith("/redirect"):
                    self._answer(302, b"", headers={"Location": seen["query"]["to"]})
                elif parts.path.startswith("/big"):
                    self._answer(200, b"x" * int(seen["query"].get("n", "100000")),
                                 "text/plain")
                elif parts.path.startswith("/sleep"):
                    time.sleep(float(seen["query"].get("s", "1")))
                    self._answer(200, b"{}")
                elif parts.path.startswith("/status/"):
                    self._answer(int(parts.path.rsplit("/", 1)[1]), b"<h1>nope</h1>",
                                 "text/html")
                else:
                    self._answer(200, json.dumps(seen).encode())

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.serve(Handler)
        return self
