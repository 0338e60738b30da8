"""/v1/responses: the subset of OpenAI's Responses API that Microsoft Agent Framework's
Responses client (and the openai SDK's `responses.create`) use, run on the same paths
as a chat completion.

A request is turned into a Chat Completions request: `instructions` first, then the
conversation so far, then the `input` items (messages, `function_call`s and their
`function_call_output`s); function `tools`, `tool_choice`, `max_output_tokens`,
`temperature`, `top_p`, `text.format`. The answer comes back as a Response (or its
events: `response.created`, `response.output_text.delta`, function-call argument
events, `response.completed` with usage).

Nothing is stored server-side beyond a short memory: each response's conversation is
kept for RESPONSES_TTL_S in the cache, so a client that continues with
`previous_response_id` (MAF does, within one run, unless `store` is false) is served;
after that it must send the whole conversation (`store: false` semantics).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache

from agents.runtime.stream import accumulate
from agents.runtime.types import ToolCall
from gateway.errors import GatewayError, invalid
from gateway.wire import ChatRequest, check_tool_choice, check_tools, model_of, text_of

RESPONSES_TTL_S = 3600
MAX_ITEMS = 10_000


@dataclass
class ResponsesRequest:
    chat: ChatRequest
    tools: list[dict[str, Any]]  # as the client sent them (echoed in the Response)
    tool_choice: Any
    instructions: str | None
    previous_response_id: str | None
    store: bool
    echo: dict[str, Any] = field(default_factory=dict)  # sampling fields to echo


def _remembered(response_id: str, token_id: int | None) -> list[dict[str, Any]]:
    kept = cache.get(f"tanglaw:gw:resp:{response_id}")
    if not kept or kept.get("token") != token_id:
        raise GatewayError(404, f"previous_response_id {response_id!r} is not known here: "
                                f"Tanglaw keeps responses for {RESPONSES_TTL_S // 60} minutes; "
                                f"send the whole conversation instead (store: false)",
                           code="previous_response_not_found", param="previous_response_id")
    return kept["messages"]


def remember(response_id: str, token_id: int | None, messages: list[dict[str, Any]]) -> None:
    conversation = [m for m in messages if m.get("role") not in ("system", "developer")]
    cache.set(f"tanglaw:gw:resp:{response_id}", {"token": token_id, "messages": conversation},
              RESPONSES_TTL_S)


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(where, f"`{where}` must be a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        else:
            raise invalid(f"{where}[{i}]", f"`{where}[{i}]`: content of type {kind!r} is not "
                                           f"supported (input_text, output_text, input_image)")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _messages(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise invalid("input", f"`input` must be a string or a list of at most {MAX_ITEMS} "
                               f"items")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(where, f"`{where}` must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(f"{where}.role", f"`{where}.role` must be user, assistant, "
                                               f"system or developer")
            out.append({"role": role, "content": _parts(item.get("content"),
                                                        f"{where}.content")})
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise invalid(where, f"`{where}`: a function_call needs call_id and name")
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"],
                                 "arguments": str(item.get("arguments") or "{}")}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant message
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise invalid(where, f"`{where}`: a function_call_output needs its call_id")
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": output if isinstance(output, str) else
                        json.dumps(output, ensure_ascii=False)})
        elif kind == "reasoning":
            continue  # Tanglaw's engines return none; a client echoing one back is fine
        else:
            raise invalid(f"{where}.type", f"`{where}`: items of type {kind!r} are not "
                                           f"supported (message, function_call, "
                                           f"function_call_output)")
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools", "`tools` must be a list")
    chat_tools = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise invalid(f"tools[{i}]", f"`tools[{i}]`: only function tools are supported, "
                                         f"not {kind!r}")
        function = {"name": tool.get("name"), "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or {"type": "object",
                                                             "properties": {}}}
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        chat_tools.append({"type": "function", "function": function})
    check_tools(chat_tools)
    return chat_tools


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        choice = {"type": "function", "function": {"name": choice["name"]}}
    check_tool_choice(choice)
    return choice


def request(body: dict[str, Any], token_id: int | None) -> ResponsesRequest:
    """Check a /v1/responses body; a 400 GatewayError naming the field otherwise."""
    model = model_of(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions", "`instructions` must be a string")
    if body.get("input") is None:
        raise invalid("input", "`input` is required: a string or a list of items")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise invalid("previous_response_id", "`previous_response_id` must be a string")
    if body.get("conversation") is not None:
        raise invalid("conversation", "conversations are not kept here: send the "
                                      "conversation in `input` (store: false)", "unsupported")
    messages = [{"role": "system", "content": instructions}] if instructions else []
    if previous:
        messages += _remembered(previous, token_id)
    messages += _messages(body["input"])
    if not messages:
        raise invalid("input", "`input` is empty")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream", "`stream` must be true or false")
    options: dict[str, Any] = {}
    echo: dict[str, Any] = {}
    for name, target, low, high in (("temperature", "temperature", 0, 2),
                                    ("top_p", "top_p", 0, 1)):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not low <= value <= high:
                raise invalid(name, f"`{name}` must be a number from {low} to {high}")
            options[target] = echo[name] = value
    max_out = body.get("max_output_tokens")
    if max_out is not None:
        if isinstance(max_out, bool) or not isinstance(max_out, int) or max_out < 1:
            raise invalid("max_output_tokens", "`max_output_tokens` must be a positive integer")
        options["max_tokens"] = echo["max_output_tokens"] = max_out
    tools = _tools(body.get("tools"))
    if tools:
        options["tools"] = tools
    choice = body.get("tool_choice")
    if choice is not None:
        options["tool_choice"] = _tool_choice(choice)
    if isinstance(body.get("parallel_tool_calls"), bool):
        options["parallel_tool_calls"] = body["parallel_tool_calls"]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        options["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.get("name") or "response", "schema": fmt.get("schema") or {},
            "strict": bool(fmt.get("strict"))}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        options["response_format"] = {"type": "json_object"}
    chat = ChatRequest(model, messages, stream, True, options)
    return ResponsesRequest(chat, list(body.get("tools") or []), choice or "auto",
                            instructions, previous, body.get("store") is not False, echo)


# -- the answer, as a Response or its events ----------------------------------------------

@dataclass
class Answer:
    """What a chat completion produced, gathered for the Response."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)  # {id, name, arguments}
    usage: dict[str, int] | None = None
    finish: str = ""
    error: GatewayError | None = None


class Writer:
    """Builds the Response and its stream events for one request."""

    def __init__(self, req: ResponsesRequest):
        self.req = req
        self.id = "resp_" + uuid.uuid4().hex
        self.message_id = "msg_" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.sequence = 0
        self.answer = Answer()
        self.text_open = False

    def response(self, status: str) -> dict[str, Any]:
        answer = self.answer
        output: list[dict[str, Any]] = []
        if answer.text or (status == "completed" and not answer.calls):
            output.append(self._message("completed" if status != "in_progress" else
                                        "in_progress"))
        output += [self._call(c, "completed") for c in answer.calls]
        usage = None
        if answer.usage is not None:
            usage = {"input_tokens": answer.usage.get("prompt_tokens", 0),
                     "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": answer.usage.get("completion_tokens", 0),
                     "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": answer.usage.get("prompt_tokens", 0) +
                     answer.usage.get("completion_tokens", 0)}
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": status, "model": self.req.chat.model,
            "output": output if status != "in_progress" else [],
            "instructions": self.req.instructions, "tools": self.req.tools,
            "tool_choice": self.req.tool_choice,
            "parallel_tool_calls": self.req.chat.options.get("parallel_tool_calls", True),
            "previous_response_id": self.req.previous_response_id,
            "store": self.req.store, "text": {"format": {"type": "text"}},
            "truncation": "disabled", "metadata": {}, "usage": usage,
            "error": ({"code": answer.error.code or "server_error",
                       "message": answer.error.message} if answer.error else None),
            "incomplete_details": ({"reason": "max_output_tokens"}
                                   if status == "incomplete" else None),
            "temperature": self.req.echo.get("temperature"),
            "top_p": self.req.echo.get("top_p"),
            "max_output_tokens": self.req.echo.get("max_output_tokens"),
        }

    def _message(self, status: str) -> dict[str, Any]:
        return {"id": self.message_id, "type": "message", "status": status,
                "role": "assistant", "content": [{"type": "output_text",
                                                  "text": self.answer.text,
                                                  "annotations": [], "logprobs": []}]}

    @staticmethod
    def _call(call: dict[str, Any], status: str) -> dict[str, Any]:
        return {"id": "fc_" + call["id"][-24:], "type": "function_call", "status": status,
                "call_id": call["id"], "name": call["name"],
                "arguments": call["arguments"] if status == "completed" else ""}

    def status(self) -> str:
        if self.answer.error is not None:
            return "failed"
        return "incomplete" if self.answer.finish == "length" else "completed"

    def event(self, kind: str, **fields: Any) -> bytes:
        self.sequence += 1
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        return (f"event: {kind}\ndata: ".encode() +
                json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")

    def conversation(self) -> list[dict[str, Any]]:
        """The conversation after this answer, as chat messages (for `remember`)."""
        reply: dict[str, Any] = {"role": "assistant", "content": self.answer.text or None}
        if self.answer.calls:
            reply["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": c["arguments"]}} for c in self.answer.calls]
        return [*self.req.chat.messages, reply]

    async def events(self, source: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
        """Normalised answer events (("text", delta), ("calls", [...]), ("usage", {...}),
        ("finish", reason), ("error", GatewayError)) as Responses stream events."""
        yield self.event("response.created", response=self.response("in_progress"))
        yield self.event("response.in_progress", response=self.response("in_progress"))
        async for kind, value in source:
            if kind == "text":
                if not self.text_open:
                    self.text_open = True
                    yield self.event("response.output_item.added", output_index=0,
                                     item={**self._message("in_progress"), "content": []})
                    yield self.event("response.content_part.added", item_id=self.message_id,
                                     output_index=0, content_index=0,
                                     part={"type": "output_text", "text": "",
                                           "annotations": [], "logprobs": []})
                self.answer.text += value
                yield self.event("response.output_text.delta", item_id=self.message_id,
                                 output_index=0, content_index=0, delta=value, logprobs=[])
            elif kind == "calls":
                self.answer.calls = value
            elif kind == "usage":
                self.answer.usage = value
            elif kind == "finish":
                self.answer.finish = value
            elif kind == "error":
                self.answer.error = value
        if self.text_open:
            part = {"type": "output_text", "text": self.answer.text, "annotations": [],
                    "logprobs": []}
            # no response.output_text.done: MAF (1.23) adds its full text to the stream's
            # updates, so a client printing update.text would show the answer twice; the
            # whole text is in content_part.done, output_item.done and response.completed
            yield self.event("response.content_part.done", item_id=self.message_id,
                             output_index=0, content_index=0, part=part)
            yield self.event("response.output_item.done", output_index=0,
                             item=self._message("completed"))
        base = 1 if self.text_open else 0
        for offset, call in enumerate(self.answer.calls):
            index, item = base + offset, self._call(call, "in_progress")
            yield self.event("response.output_item.added", output_index=index, item=item)
            yield self.event("response.function_call_arguments.delta", item_id=item["id"],
                             output_index=index, delta=call["arguments"])
            yield self.event("response.function_call_arguments.done", item_id=item["id"],
                             output_index=index, arguments=call["arguments"],
                             name=call["name"])
            yield self.event("response.output_item.done", output_index=index,
                             item=self._call(call, "completed"))
        status = self.status()
        final = {"completed": "response.completed", "incomplete": "response.incomplete",
                 "failed": "response.failed"}[status]
        yield self.event(final, response=self.response(status))


# -- where the normalised events come from --------------------------------------------------

def from_completion(data: dict[str, Any], answer: Answer) -> None:
    """A whole chat.completion into the answer."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    answer.text = text_of(message.get("content")) or ""
    answer.calls = [{"id": c.get("id") or f"call_{i}", "name": c["function"]["name"],
                     "arguments": c["function"].get("arguments") or "{}"}
                    for i, c in enumerate(message.get("tool_calls") or [])]
    answer.usage = data.get("usage")
    answer.finish = choice.get("finish_reason") or "stop"


async def from_chunks(chunks: AsyncIterator[bytes], on_usage) -> AsyncIterator[tuple[str, Any]]:
    """A relayed SSE stream of chat.completion.chunk events as normalised events."""
    buffer = b""
    calls: dict[int, ToolCall] = {}
    async for data in chunks:
        buffer += data.replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data:"):
                continue
            payload = event[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                yield "error", GatewayError(502, str(chunk["error"].get("message")),
                                            code="upstream_error")
                continue
            if isinstance(chunk.get("usage"), dict):
                on_usage(chunk["usage"])
                yield "usage", chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield "text", str(delta["content"])
                for fragment in delta.get("tool_calls") or []:
                    accumulate(calls, fragment)  # by index, or whole calls, as the runtime
                if choice.get("finish_reason"):
                    yield "finish", choice["finish_reason"]
    if calls:
        yield "calls", [{**c, "id": c["id"] or f"call_{i}"}
                        for i, c in sorted(calls.items())]
