"""A stand-in engine *process* for the supervisor's fault tests: run as
`python engine_process.py -m BEHAVIOUR.json --host H --port P …` (llama-server's flags).

It answers `/health` as llama-server does: 503 `{"error": {"code": 503, "message":
"Loading model", "type": "unavailable_error"}}` while "loading", then 200
`{"status": "ok"}`. The model file says how it misbehaves:
`{"ready_after_s": 0.5, "exit_after_s": null, "exit_code": 3, "ignore_term": false,
"never_ready": false}`. It prints its arguments and environment names first, so tests
can read in the log what it was started with.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _arg(name: str, argv: list[str]) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> None:
    with open(_arg("-m", argv)) as handle:
        behaviour = json.load(handle)
    started = time.monotonic()
    print("args:", " ".join(argv), flush=True)
    print("env:", " ".join(sorted(os.environ)), flush=True)
    if behaviour.get("ignore_term"):
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            loading = behaviour.get("never_ready") or \
                time.monotonic() - started < behaviour.get("ready_after_s", 0.5)
            if self.path == "/health" and loading:
                status, body = 503, {"error": {"code": 503, "message": "Loading model",
                                               "type": "unavailable_error"}}
            elif self.path == "/health":
                status, body = 200, {"status": "ok"}
            elif self.path == "/v1/models":
                status, body = 200, {"object": "list", "data": [
                    {"id": "fake", "object": "model", "owned_by": "llamacpp"}]}
            else:
                status, body = 404, {"error": {"code": 404, "message": "File Not Found",
                                               "type": "not_found_error"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((_arg("--host", argv), int(_arg("--port", argv))), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening", flush=True)
    exit_after = behaviour.get("exit_after_s")
    while True:
        time.sleep(0.05)
        if exit_after is not None and time.monotonic() - started >= exit_after:
            print("error: the fake engine crashed as asked", flush=True)
            os._exit(behaviour.get("exit_code", 3))


if __name__ == "__main__":
    main(sys.argv[1:])
