"""A scripted OpenAI-compatible streaming server: each chat request plays the next script.

Script items: a dict (one SSE chunk's `choices[0].delta`-level description built
with the helpers below), ("sleep", seconds), ("reset",) to drop the connection,
("status", code, body) to answer an HTTP error instead, ("no_done",) to end
without `data: [DONE]`, ("raw", bytes) to send bytes as they are (a broken SSE
line, an unknown event), ("status", code, body, headers) with extra headers
(e.g. Retry-After), ("completion", message) to answer a non-streamed
request with one whole chat.completion (see `route_choice`), ("cut",) to stop
sending mid-body, breaking the framing where it has an end of its own. Tool
calls can stream as fragments (vLLM/llama.cpp) or whole (Ollama/Foundry).
Requests and disconnects are recorded.

`framing` is how the HTTP/1.1 body of a stream is delimited: "close" (no
Content-Length, the body ends when the server closes, as the scripts always
did), "chunked" (Transfer-Encoding: chunked, as uvicorn and Go's net/http
stream) or "length" (a Content-Length for the whole planned body, as a
buffering proxy would send).
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer, reset


def text(*pieces: str) -> list[dict]:
    return [{"delta": {"content": p}} for p in pieces]


def tool_fragments(call_id: str, name: str, arguments: str, index: int = 0,
                   parts: int = 3) -> list[dict]:
    """vLLM / llama.cpp style: id and name first, then the arguments in pieces."""
    size = max(1, len(arguments) // parts + 1)
    chunks = [{"delta": {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                         "function": {"name": name, "arguments": ""}}]}}]
    for start in range(0, len(arguments), size):
        chunks.append({"delta": {"tool_calls": [{"index": index, "function": {
            "arguments": arguments[start:start + size]}}]}})
    return chunks


def tool_whole(call_id: str, name: str, arguments: str, index: int = 0) -> list[dict]:
    """Ollama / Foundry style: the whole call in one delta."""
    return [{"delta": {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                       "function": {"name": name, "arguments": arguments}}]}}]


def finish(reason: str = "stop") -> list[dict]:
    return [{"delta": {}, "finish_reason": reason}]


def usage(prompt: int, completion: int) -> list[dict]:
    return [{"usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                       "total_tokens": prompt + completion}}]


def completion(content: str | None = None, tool_calls: list[dict] | None = None) -> tuple:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return ("completion", message)


def route_choice(specialist: str, complexity: str = "simple", reason: str = "",
                 *, as_json_text: bool = False) -> tuple:
    """A router model's answer: a forced tool call, or the same as strict JSON text."""
    arguments = json.dumps({"specialist": specialist, "complexity": complexity,
                            "reason": reason})
    if as_json_text:
        return completion(arguments)
    return completion(None, [{"id": "route_1", "type": "function", "function": {
        "name": "choose_specialist", "arguments": arguments}}])


class ScriptedOpenAI(LoopbackServer):
    def __init__(self, model: str = "scripted-1"):
        self.model = model
        self.scripts: list[list[Any]] = []
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, names lower-case
        self.disconnects = 0
        self.framing = "close"
        # a function of the request body to its script, for requests in any order (an
        # experiment's cases run concurrently); the queued scripts come first
        self.responder: Any = None

    def add(self, *items) -> ScriptedOpenAI:
        script: list[Any] = []
        for item in items:
            script.extend(item if isinstance(item, list) else [item])
        self.scripts.append(script)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"object": "list", "data": [
                    {"id": fake.model, "object": "model", "owned_by": "scripted"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                script = fake.scripts.pop(0) if fake.scripts else \
                    fake.responder(body) if fake.responder is not None else \
                    text("(no script)") + finish()
                fake.play(self, script)

        self.serve(Handler)
        return self

    def play(self, req: BaseHTTPRequestHandler, script: list[Any]) -> None:
        for item in script:
            if isinstance(item, tuple) and item[0] == "completion":
                message = item[1]
                body = json.dumps({
                    "id": "chatcmpl-scripted", "object": "chat.completion",
                    "created": int(time.time()), "model": self.model,
                    "choices": [{"index": 0, "message": message, "finish_reason":
                                 "tool_calls" if message.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5,
                              "total_tokens": 25}}).encode()
                req.send_response(200)
                req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
            if isinstance(item, tuple) and item[0] == "status":
                raw = item[2]
                body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
                req.send_response(item[1])
                req.send_header("Content-Type", "text/html" if body.startswith(b"<") else
                                "application/json")
                for name, value in (item[3] if len(item) > 3 else {}).items():
                    req.send_header(name, value)
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
        ops, done = [], True
        for item in script:
            if isinstance(item, tuple):
                if item[0] == "no_done":
                    done = False
                elif item[0] == "raw":  # bytes as they are: broken SSE, odd events
                    ops.append(("write", item[1]))
                else:
                    ops.append(item)
                continue
            ops.append(("write", b"data: " + json.dumps(self.chunk(item)).encode() + b"\n\n"))
        if done:
            ops.append(("write", b"data: [DONE]\n\n"))
        req.send_response(200)
        req.send_header("Content-Type", "text/event-stream")
        req.send_header("Cache-Control", "no-cache")
        if self.framing == "chunked":
            req.send_header("Transfer-Encoding", "chunked")
        elif self.framing == "length":  # the whole body as planned, even past a cut
            req.send_header("Content-Length", str(sum(len(op[1]) for op in ops
                                                      if op[0] == "write")))
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        try:
            for op in ops:
                if op[0] == "sleep":
                    time.sleep(op[1])
                elif op[0] == "reset":
                    reset(req)
                    return
                elif op[0] == "cut":  # the server closes; a chunked body lacks its last chunk
                    return
                elif op[0] == "write":
                    data = op[1]
                    if self.framing == "chunked":
                        data = b"%x\r\n%s\r\n" % (len(data), data)
                    req.wfile.write(data)
                    req.wfile.flush()
            if self.framing == "chunked":
                req.wfile.write(b"0\r\n\r\n")
                req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.disconnects += 1

    def chunk(self, item: dict) -> dict:
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model}
        if "usage" in item:
            return {**base, "choices": [], "usage": item["usage"]}
        return {**base, "choices": [{"index": 0, "delta": item["delta"],
                                     "finish_reason": item.get("finish_reason")}]}
