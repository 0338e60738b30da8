"""The OpenAI Chat Completions request, checked: what a client may send, what goes
upstream, and what an agent run takes from it. Unknown fields are ignored; routing
fields a client might send (`api_base`, `base_url`, `api_key`, headers…) are never
honoured: only the fields in FORWARD travel on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from console.safeinput import UnsafeInput, loads_json
from gateway.errors import GatewayError, invalid

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# what a pass-through request sends upstream, beside model, messages and stream
FORWARD = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "max_tokens",
           "max_completion_tokens", "stop", "temperature", "top_p", "seed",
           "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user")
MAX_MESSAGES = 10_000


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # the FORWARD fields sent

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.options.get("tools") or []

    @property
    def max_tokens(self) -> int | None:
        return self.options.get("max_completion_tokens") or self.options.get("max_tokens")

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return text_of(message.get("content"))
        return ""


def text_of(content: Any) -> str:
    """A message's text, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content
                       if isinstance(p, dict) and p.get("type") in ("text", "input_text",
                                                                    "output_text"))
    return ""


def body_of(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise invalid("body", "the request has no body: send a JSON object", "missing_body")
    try:
        body = loads_json(raw, "body")
    except UnsafeInput as exc:
        raise GatewayError(400, f"the body is not acceptable JSON: {exc}",
                           code="invalid_json", param=exc.field) from None
    if not isinstance(body, dict):
        raise invalid("body", "the body must be a JSON object", "invalid_json")
    return body


def _number(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(name, f"`{name}` must be a number from {low:g} to {high:g}")


def _integer(body: dict, name: str, low: int, high: int = 2**31) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(name, f"`{name}` must be an integer from {low} to {high}")


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model", "`model` is required: a model name from GET /v1/models",
                      "missing_model")
    if len(model) > 300:
        raise invalid("model", "`model` is longer than 300 characters")
    return model.strip()


def check_tools(tools: Any, name: str = "tools") -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or len(tools) > 128:
        raise invalid(name, f"`{name}` must be a list of at most 128 tools")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or \
                not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not function["name"]:
            raise invalid(f"{name}[{i}]", f"`{name}[{i}]` must be "
                                          f'{{"type": "function", "function": {{"name": …}}}}')
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise invalid(f"{name}[{i}].function.parameters", "the parameters must be a JSON "
                                                              "Schema object")


def check_tool_choice(choice: Any) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("function"), dict) and isinstance(choice["function"].get("name"), str):
        return
    raise invalid("tool_choice", '`tool_choice` must be "none", "auto", "required" or '
                                 '{"type": "function", "function": {"name": …}}')


def chat_request(body: dict[str, Any]) -> ChatRequest:
    """Check a /v1/chat/completions body; a 400 GatewayError naming the field otherwise."""
    model = model_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "`messages` must be a non-empty list of messages")
    if len(messages) > MAX_MESSAGES:
        raise invalid("messages", f"`messages` has more than {MAX_MESSAGES} messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid(f"messages[{i}].role", f"`messages[{i}]` needs a role: one of "
                                                 f"{', '.join(sorted(ROLES))}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise invalid(f"messages[{i}].content", f"`messages[{i}].content` must be a "
                                                    f"string or a list of parts")
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid("n", "only `n: 1` is supported: ask again for more choices",
                      "unsupported_value")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream", "`stream` must be true or false")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("stream_options", "`stream_options` must be an object")
    include_usage = bool((stream_options or {}).get("include_usage"))
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))):
        raise invalid("stop", "`stop` must be a string or a list of at most 4 strings")
    check_tools(body.get("tools"))
    check_tool_choice(body.get("tool_choice"))
    if "parallel_tool_calls" in body and not isinstance(body["parallel_tool_calls"], bool):
        raise invalid("parallel_tool_calls", "`parallel_tool_calls` must be true or false")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") in (
            "text", "json_object", "json_schema")):
        raise invalid("response_format", '`response_format` must be {"type": "text"}, '
                                         '{"type": "json_object"} or {"type": "json_schema", …}')
    options = {name: body[name] for name in FORWARD if body.get(name) is not None}
    return ChatRequest(model, messages, stream, include_usage, options)


def json_response(data: dict[str, Any]) -> HttpResponse:
    return HttpResponse(json.dumps(data, ensure_ascii=False), content_type="application/json")


def sse_response(body) -> StreamingHttpResponse:
    """An event stream as OpenAI sends one: not cached, not buffered by a proxy."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
