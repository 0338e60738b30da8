"""One streamed completion: text deltas to the client as they come, tool-call
fragments merged by index (and whole-call deltas), TTFT and tokens measured here for
every backend, the first-token and idle timeouts, and a stream that ends without a
finish reason or `[DONE]` told apart from one that finished."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai

from agents.runtime.chunks import ChunkStream, StreamClosed, parts
from agents.runtime.errors import TurnFailed, explain
from agents.runtime.types import Candidate, Emit, ToolCall, TurnSettings, TurnState

MAX_REPLY_CHARS = 1_000_000  # a reply (or one chunk) beyond this ends the turn, kept partial


async def stream_step(candidate: Candidate, settings: TurnSettings,
                      messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                      state: TurnState, emit: Emit, started: float,
                      extra: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> tuple[str, list[ToolCall], str]:
    """One streamed completion. Returns (content, tool calls, finish reason). `headers`
    go with the request (the trace's traceparent)."""
    client = candidate.adapter.chat_client()
    kwargs: dict[str, Any] = {"model": candidate.model, "messages": messages, "stream": True,
                              "temperature": settings.temperature,
                              "max_tokens": settings.max_tokens,
                              "stream_options": {"include_usage": True}}
    if tools:
        kwargs["tools"] = tools
    if extra:
        kwargs.update(extra)
    if headers:
        kwargs["extra_headers"] = headers
    content_parts: list[str] = []
    calls: dict[int, ToolCall] = {}
    finish = ""
    usage: dict[str, Any] | None = None
    chunks_out = 0
    stream: ChunkStream | None = None
    try:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            # (stop/disconnect) that lands as the awaited call completes
            async with asyncio.timeout(settings.first_token_timeout_s):
                stream = await ChunkStream(
                    client.chat.completions.with_streaming_response.create(**kwargs)).open()
            first = True
            while True:
                timeout = settings.first_token_timeout_s if first else settings.idle_timeout_s
                try:
                    async with asyncio.timeout(timeout):
                        chunk = await stream.next()
                except TimeoutError:
                    if first:
                        raise TurnFailed("first_token_timeout", f"no first token from "
                                         f"{candidate.label or candidate.model} within "
                                         f"{timeout:g}s") from None
                    raise TurnFailed("idle_timeout", f"the stream stalled: no token for "
                                     f"{timeout:g}s") from None
                except StreamClosed as exc:
                    if finish:  # the reply had ended; only what follows it (usage) is lost
                        break
                    raise _closed(candidate, state, exc.how) from None
                if chunk is None:
                    if not finish and not stream.saw_done:
                        raise _closed(candidate, state, "ended the response")
                    break
                chunk_usage, text, fragments, finish_reason = parts(chunk)
                if chunk_usage:
                    usage = chunk_usage
                if (text or fragments) and first:
                    first = False
                    state.first_token_at = time.perf_counter()
                    if state.ttft_ms is None:
                        state.ttft_ms = (time.perf_counter() - started) * 1000
                if text and len(state.text) + len(text) > MAX_REPLY_CHARS:
                    raise TurnFailed("reply_too_large", f"the reply passed "
                                     f"{MAX_REPLY_CHARS // 1000} kB; stopped")
                if text:
                    chunks_out += 1
                    content_parts.append(text)
                    state.text += text
                    state.committed = True
                    await emit({"type": "delta", "text": text})
                for fragment in fragments or []:
                    chunks_out += 1
                    accumulate(calls, fragment)
                if finish_reason:
                    finish = finish_reason
        except TurnFailed:
            raise
        except (openai.OpenAIError, ValueError) as exc:
            if state.committed:
                reason = explain(exc, candidate, settings.first_token_timeout_s)
                raise TurnFailed("backend_error",
                                 f"the backend failed mid-reply: {reason}") from None
            raise TurnFailed("backend_error",
                             explain(exc, candidate, settings.first_token_timeout_s)) from None
        except TimeoutError:
            raise TurnFailed("first_token_timeout", f"{candidate.label or candidate.model} did "
                             f"not answer within {settings.first_token_timeout_s:g}s") from None
    except asyncio.CancelledError:
        # stopped (Stop, a closed tab, shutdown): the reply so far keeps its counts; the
        # engine never sends usage for a stream that was cut
        if chunks_out or usage is not None:
            _count(state, usage, chunks_out, messages)
        raise
    finally:
        if stream is not None:
            await stream.close()  # closes the upstream connection (stop, errors, timeouts)
    _count(state, usage, chunks_out, messages)
    ordered = [calls[i] for i in sorted(calls)]
    for call in ordered:
        call["id"] = call["id"] or f"call_{len(state.tool_calls)}_{call['name']}"
    return "".join(content_parts), ordered, finish


def _count(state: TurnState, usage: dict[str, Any] | None, chunks_out: int,
           messages: list[dict[str, Any]]) -> None:
    """The tokens of one call: the engine's usage, or without it what we saw (deltas ≈
    tokens) and an estimate of the prompt."""
    if usage is not None:
        state.tokens_in += usage.get("prompt_tokens") or 0
        state.tokens_out += usage.get("completion_tokens") or 0
    else:
        state.usage_reported = False
        state.tokens_out += chunks_out
        state.tokens_in += sum(len(str(m.get("content") or "")) for m in messages) // 4


def _closed(candidate: Candidate, state: TurnState, how: str) -> TurnFailed:
    """The backend ended the stream with neither a finish reason nor `[DONE]`: whatever
    the framing, the reply is cut off, not finished (an engine that crashed, a proxy
    that timed out), and must not be stored as a complete answer."""
    where = candidate.label or candidate.adapter.base_url
    when = "mid-reply" if state.committed else "before replying"
    return TurnFailed("upstream_closed", f"the backend closed the stream {when}: {where} "
                                         f"{how} without a finish reason or [DONE]")


def accumulate(calls: dict[int, ToolCall], fragment: object) -> None:
    """Merge a tool-call delta: fragments by index (vLLM, llama.cpp) or whole calls (Ollama)."""
    if not isinstance(fragment, dict):
        raise ValueError("a tool-call fragment is not a JSON object")
    index = fragment.get("index")
    index = index if isinstance(index, int) else len(calls)
    entry = calls.get(index)
    call_id = fragment.get("id")
    if entry is not None and call_id and entry["id"] and call_id != entry["id"]:
        index = max(calls) + 1  # a whole call reusing an index: a new call
        entry = None
    if entry is None:
        entry = calls[index] = {"id": "", "name": "", "arguments": ""}
    if call_id:
        entry["id"] = str(call_id)
    function = fragment.get("function")
    if isinstance(function, dict):
        name, arguments = function.get("name"), function.get("arguments")
        if name and name != entry["name"]:
            entry["name"] += str(name)
        if arguments:
            entry["arguments"] += arguments if isinstance(arguments, str) else json.dumps(
                arguments)
