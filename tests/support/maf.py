"""Microsoft Agent Framework (agent-framework-* from PyPI, the test extra) as its users run it.

`load_exported` writes a Tanglaw export to a file and loads it the way the file's header
says (`AgentFactory().create_agent_from_yaml_path`), the key from OPENAI_API_KEY unless one
is given; `run_streamed` runs one streamed turn and returns the text and the updates. Point
an export at a live gateway (`export_yaml(agent, live_server.url + "/v1")`) to run it there.

`RecordingOpenAI` stands in for the gateway where only what MAF sends is under test: it
records each request's path, headers and body and streams a short Chat Completions reply.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.loopback import LoopbackServer


@contextmanager
def _env(name: str, value: str | None):
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def load_exported(text: str, directory: Path, *, api_key: str | None = None,
                  filename: str = "agent.maf.yaml"):
    """The exported agent as MAF builds it from the file (agent_framework.Agent)."""
    from agent_framework_declarative import AgentFactory

    path = directory / filename
    path.write_text(text, encoding="utf-8")
    # the OpenAI clients read OPENAI_API_KEY when they are built, not per request
    with _env("OPENAI_API_KEY", api_key):
        return AgentFactory().create_agent_from_yaml_path(path)


async def run_streamed(agent, prompt: str, **options: Any) -> tuple[str, list]:
    """One streamed turn (`agent.run(..., stream=True)`); options such as tools=[fn]."""
    updates = [update async for update in agent.run(prompt, stream=True, **options)]
    return "".join(u.text for u in updates), updates


class RecordingOpenAI(LoopbackServer):
    def __init__(self, reply: str = "Hello from the recorder."):
        self.reply = reply
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> RecordingOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"path": self.path, "body": body,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                if not self.path.endswith("/chat/completions"):
                    self._send(404, "application/json", json.dumps({"error": {
                        "message": "only chat completions here", "type": "not_found_error",
                        "code": None, "param": None}}).encode())
                    return
                self._send(200, "text/event-stream", fake.stream(body.get("model", "")))

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.serve(Handler)
        return self

    def stream(self, model: str) -> bytes:
        base = {"id": "chatcmpl-rec", "object": "chat.completion.chunk", "created": 0,
                "model": model}
        half = len(self.reply) // 2
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                               "content": self.reply[:half]},
                                        "finish_reason": None}]},
                  {**base, "choices": [{"index": 0, "delta": {"content": self.reply[half:]},
                                        "finish_reason": "stop"}]},
                  {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4,
                                                    "total_tokens": 9}}]
        return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
            b"data: [DONE]\n\n"
