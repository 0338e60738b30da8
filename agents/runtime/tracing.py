"""What a turn's spans say about its steps (traces.recorder holds them): the GenAI
attributes of a model call and a tool call. Content (messages, arguments, results) only
where the recorder may keep it."""

from __future__ import annotations

import json
from typing import Any

from agents.runtime.types import Candidate, TurnSettings, TurnState
from traces.recorder import SpanRecord, server_of


def chat_start(span: SpanRecord, candidate: Candidate, settings: TurnSettings,
               tools: list[dict[str, Any]], messages: list[dict[str, Any]], attempt: int,
               content: bool) -> None:
    span.attributes.update(server_of(candidate.adapter.base_url))
    span.set(gen_ai__operation__name="chat", gen_ai__request__model=candidate.model,
             gen_ai__provider__name=candidate.adapter.kind,
             gen_ai__request__temperature=settings.temperature,
             gen_ai__request__max_tokens=settings.max_tokens,
             tanglaw__backend__id=candidate.backend_id,
             tanglaw__backend=candidate.label or None, tanglaw__attempt=attempt)
    if candidate.escalation:
        span.set(tanglaw__escalation=True)
    elif attempt > 1:
        span.set(tanglaw__fallback=True)
    if tools:
        span.set(gen_ai__tool__definitions=json.dumps([
            {"type": "function", "name": t["function"]["name"],
             "description": t["function"].get("description", "")[:300]} for t in tools],
            ensure_ascii=False))
    if content:
        span.set(gen_ai__input__messages=json.dumps(messages, default=str,
                                                           ensure_ascii=False)[:32_000])


def chat_end(span: SpanRecord, state: TurnState, before: tuple[int, int], began: float,
             step: tuple[str, list[Any], str], content: bool) -> None:
    text, calls, finish = step
    span.set(gen_ai__response__model=span.attributes.get("gen_ai.request.model"),
             gen_ai__usage__input_tokens=state.tokens_in - before[0],
             gen_ai__usage__output_tokens=state.tokens_out - before[1],
             gen_ai__response__finish_reasons=[finish or ("tool_calls" if calls else "stop")])
    if state.first_token_at is not None and state.first_token_at >= began:
        span.set(tanglaw__ttft_ms=round((state.first_token_at - began) * 1000, 1))
    if content:
        message: dict[str, Any] = {"role": "assistant", "parts": []}
        if text:
            message["parts"].append({"type": "text", "content": text})
        for call in calls:
            message["parts"].append({"type": "tool_call", "id": call["id"],
                                     "name": call["name"], "arguments": call["arguments"]})
        span.set(gen_ai__output__messages=json.dumps([message], ensure_ascii=False)[:32_000])


def tool_start(span: SpanRecord, call: dict[str, Any], kind: str | None,
               content: bool) -> None:
    span.set(gen_ai__operation__name="execute_tool", gen_ai__tool__name=call["name"],
             gen_ai__tool__call__id=call["id"], gen_ai__tool__type="function",
             tanglaw__tool__kind=kind)
    if content:
        span.set(gen_ai__tool__call__arguments=(call.get("arguments") or "{}")[:32_000])


def tool_end(span: SpanRecord, ok: bool, output: Any, content: bool) -> None:
    if not ok:
        span.fail("tool_error", str(output)[:500])
    if content:
        span.set(gen_ai__tool__call__result=json.dumps(output, default=str,
                                                            ensure_ascii=False)[:32_000])
