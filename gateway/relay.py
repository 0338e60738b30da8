"""Pass-through: a client's chat completion sent on to a backend's OpenAI API, its
answer relayed back byte for byte (a streamed answer as it comes).

On the way Tanglaw adds the circuit breaker and the concurrency cap per backend, the
fallbacks of an alias (tried only while nothing was relayed: the connection failed,
the backend answered 429/5xx or closed before its first byte), and its own
measurements: time to the first token, tokens (the backend's usage, asked for even
when the client did not ask, and then kept from the client), and Tanglaw's overhead.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from console import breaker, egress, limits
from gateway import quota
from gateway.errors import GatewayError
from gateway.targets import BackendTarget
from gateway.wire import ChatRequest, sse_response
from traces.choices import SpanKind
from traces.recorder import OFF, Recorder, server_of

CONTENT = re.compile(rb'"(?:content|reasoning_content|reasoning)":\s*"(?!")')
USAGE = re.compile(rb'"usage":\s*\{')
FINISH = re.compile(rb'"finish_reason":\s*"')
MAX_ERROR_BODY = 64 * 1024

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary())
_failed: set[int] = set()  # backends this process saw fail since their last success


def client() -> httpx.AsyncClient:
    """One pooled client per event loop, through the connect-time address check."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = _clients[loop] = egress.client(max_connections=1000)
    return found


@dataclass
class Measure:
    """What Tanglaw saw of one relayed answer."""

    started: float  # perf_counter when the request reached the view
    sent: float = 0.0  # when the request went upstream
    ttft: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    usage_reported: bool = False
    content_events: int = 0
    finished: bool = False
    done: bool = False
    status: int = 200
    error_code: str = ""
    error: str = ""
    route: list[dict[str, Any]] = field(default_factory=list)
    target: BackendTarget | None = None
    text: list[str] = field(default_factory=list)  # only when content is logged
    overhead_ms: float = 0.0

    def take_usage(self, usage: dict[str, Any]) -> None:
        self.tokens_in = int(usage.get("prompt_tokens") or 0)
        self.tokens_out = int(usage.get("completion_tokens") or 0)
        self.usage_reported = True


def upstream_body(chat: ChatRequest, target: BackendTarget) -> bytes:
    body: dict[str, Any] = {"model": target.model, "messages": chat.messages, **chat.options}
    if target.backend.kind != "openai_compatible" and "max_completion_tokens" in body:
        # local engines read max_tokens; OpenAI itself takes either
        body["max_tokens"] = body.pop("max_completion_tokens")
    if chat.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Scanner:
    """Reads the SSE events of a streamed answer for the measurements; when the client
    did not ask for usage, takes the usage chunk out (only whole events go on then)."""

    def __init__(self, measure: Measure, strip_usage: bool, keep_text: bool):
        self.m, self.strip, self.keep_text = measure, strip_usage, keep_text
        self.buffer = b""

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        if b"\n\n" not in self.buffer and b"\r\n\r\n" not in self.buffer:
            return b"" if self.strip else data
        if b"\r\n" in self.buffer:
            self.buffer = self.buffer.replace(b"\r\n", b"\n")
        *events, self.buffer = self.buffer.split(b"\n\n")
        if not self.strip:
            for event in events:
                self._event(event)
            return data
        out = [kept for event in events if (kept := self._event(event)) is not None]
        return b"".join(e + b"\n\n" for e in out)

    def end(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        if not rest.strip():
            return b""
        kept = self._event(rest)
        return (kept + b"\n\n") if self.strip and kept is not None else b""

    def _event(self, event: bytes) -> bytes | None:
        m = self.m
        if not event.startswith(b"data:"):
            return event
        if event[5:].strip() == b"[DONE]":
            m.done = True
            return event
        if CONTENT.search(event) or b'"tool_calls"' in event:
            m.content_events += 1
            if m.ttft is None:
                m.ttft = time.perf_counter()
            if self.keep_text:
                m.text.append(_text_of(event))
        if FINISH.search(event):
            m.finished = True
        if USAGE.search(event):
            try:
                chunk = json.loads(event[5:])
            except ValueError:
                return event
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                m.take_usage(chunk["usage"])
                if self.strip:
                    if not chunk.get("choices"):
                        return None
                    chunk["usage"] = None
                    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode()
        return event


def _text_of(event: bytes) -> str:
    try:
        chunk = json.loads(event[5:])
        return "".join(str((c.get("delta") or {}).get("content") or "")
                       for c in chunk.get("choices") or [])
    except (ValueError, AttributeError, TypeError):
        return ""


def _headers(target: BackendTarget) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if target.adapter.endpoint.api_key:
        headers["Authorization"] = f"Bearer {target.adapter.endpoint.api_key}"
    return headers


async def _call(fn, *args):
    """A small synchronous step (cache, breaker): on the loop when it is in memory."""
    if quota.shared_cache():
        return await sync_to_async(fn, thread_sensitive=False)(*args)
    return fn(*args)


def _cap_key(backend_id: int) -> str:
    return f"tanglaw:gen:backend:{backend_id}"


async def _usable(target: BackendTarget, measure: Measure) -> str | None:
    """The cap slot taken for the target, or None (the reason in measure.route)."""
    backend = target.backend
    if backend.breaker_state != breaker.CLOSED:
        allowed = await sync_to_async(breaker.allows, thread_sensitive=False)(backend)
        if not allowed:
            measure.route.append({"skipped": target.label, "reason": breaker.why_not(backend)})
            return None
    key = _cap_key(backend.pk)
    if not await _call(limits.take, key, settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND):
        measure.route.append({"skipped": target.label, "reason": (
            f"{backend.name} is generating {settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND} "
            f"replies already")})
        return None
    return key


def _upstream_error(response_status: int, body: bytes, target: BackendTarget) -> str:
    message = ""
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        message = str(error.get("message") if isinstance(error, dict) else error or "")
    except ValueError:
        message = body[:200].decode("utf-8", "replace")
    return f"{target.label} answered {response_status}: {message.strip()[:300]}"


async def _note_result(target: BackendTarget, ok: bool) -> None:
    """Tell the breaker, off the hot path: a failure always; a success only when this
    process saw the backend fail (or its breaker was not closed), to reset the count."""
    backend_id = target.backend.pk
    if ok and backend_id not in _failed and target.backend.breaker_state == breaker.CLOSED:
        return
    if ok:
        _failed.discard(backend_id)
    else:
        _failed.add(backend_id)
    await sync_to_async(breaker.record, thread_sensitive=False)(backend_id, ok)


class Relay:
    """One pass-through request: pick a target, send, relay; `finish` runs once."""

    def __init__(self, chat: ChatRequest, targets: list[BackendTarget], measure: Measure,
                 *, keep_text: bool, trace: Recorder = OFF):
        self.chat, self.targets, self.m = chat, targets, measure
        self.keep_text = keep_text
        self.trace = trace
        self.slot: str | None = None
        self.response: httpx.Response | None = None
        self.chunks: AsyncIterator[bytes] | None = None

    async def open(self) -> tuple[BackendTarget, httpx.Response, bytes]:
        """The first target that answers; its response (and, streamed, the first bytes).
        Raises GatewayError when none does."""
        last: GatewayError | None = None
        http = client()
        for target in self.targets:
            slot = await _usable(target, self.m)
            if slot is None:
                continue
            adapter = target.adapter
            url = f"{adapter.base_url}{adapter.api_prefix}/chat/completions"
            timeout = httpx.Timeout(adapter.endpoint.read_timeout_s,
                                    connect=adapter.endpoint.connect_timeout_s)
            span = self.trace.start(
                f"chat {target.model}", SpanKind.CLIENT, gen_ai__operation__name="chat",
                gen_ai__request__model=target.model, gen_ai__provider__name=adapter.kind,
                tanglaw__backend=target.label,
                tanglaw__backend__id=target.backend.pk,
                tanglaw__fallback=True if self.m.route else None)
            span.attributes.update(server_of(adapter.base_url))
            headers = _headers(target)
            if self.trace.enabled:  # the backend's own spans (vLLM's) join the trace
                headers["traceparent"] = self.trace.traceparent(span)
            request = http.build_request("POST", url, content=upstream_body(self.chat, target),
                                         headers=headers, timeout=timeout)
            self.m.sent = time.perf_counter()
            self.m.target = target  # the last one tried is the one a failure is recorded on
            response = None
            try:
                response = await http.send(request, stream=True)
                if response.status_code == 200:
                    first = b""
                    if self.chat.stream:
                        self.chunks = response.aiter_raw()
                        first = await anext(self.chunks, b"")
                        if not first:
                            raise httpx.RemoteProtocolError("closed before its first byte")
                    self.slot, self.response = slot, response
                    return target, response, first
                body = await response.aread()
                if response.status_code < 500 and response.status_code != 429:
                    # the request itself was refused (unknown model, bad arguments): the
                    # caller's error, not the backend's; relayed as the backend said it
                    await _call(limits.release, [slot])
                    raise _client_error(response.status_code, body, target)
                last = GatewayError(429 if response.status_code == 429 else 502,
                                    _upstream_error(response.status_code, body, target),
                                    code="upstream_error")
            except GatewayError as exc:
                if exc.code != "upstream_error":
                    span.fail(exc.code, exc.message)
                    raise
                last = exc
            except httpx.TimeoutException:
                last = GatewayError(504, f"{target.label} did not answer within "
                                         f"{adapter.endpoint.read_timeout_s:g} s",
                                    code="upstream_timeout")
            except (httpx.HTTPError, OSError) as exc:
                last = GatewayError(502, f"{target.label} could not be reached: "
                                         f"{type(exc).__name__}: {exc}"[:400],
                                    code="upstream_unreachable")
            if response is not None:
                await response.aclose()
            await _call(limits.release, [slot])
            await _note_result(target, False)
            span.fail(last.code, last.message)
            self.trace.end(span)
            self.m.route.append({"failed": target.label, "reason": last.message})
        if last is None:
            reasons = "; ".join(r["reason"] for r in self.m.route) or "no backend"
            raise GatewayError(503, f"no backend may take the request now: {reasons}",
                               code="backend_unavailable", headers={"Retry-After": "5"})
        raise last

    async def close(self, ok: bool) -> None:
        if self.response is not None:
            await self.response.aclose()
            self.response = None
        if self.slot is not None:
            slot, self.slot = self.slot, None
            await _call(limits.release, [slot])
        if self.m.target is not None:
            await _note_result(self.m.target, ok)

    async def stream(self, first: bytes) -> AsyncIterator[bytes]:
        """The relayed SSE bytes; a backend failing mid-answer ends it with an error event."""
        assert self.response is not None and self.chunks is not None
        scanner = Scanner(self.m, not self.chat.include_usage, self.keep_text)
        ok = True
        try:
            out = scanner.feed(first)
            if out:
                yield out
            async for data in self.chunks:
                out = scanner.feed(data)
                if out:
                    yield out
            out = scanner.end()
            if out:
                yield out
            if not (self.m.done or self.m.finished):
                ok = False
                self.m.status, self.m.error_code = 502, "upstream_closed"
                self.m.error = (f"{self.m.target.label if self.m.target else 'the backend'} "
                                f"closed the stream without a finish reason or [DONE]")
                yield _error_event(self.m.error, self.m.error_code)
        except (httpx.HTTPError, OSError) as exc:
            ok = False
            self.m.status, self.m.error_code = 502, "upstream_error"
            self.m.error = f"the backend failed mid-answer: {type(exc).__name__}: {exc}"[:400]
            yield _error_event(self.m.error, self.m.error_code)
        except (asyncio.CancelledError, GeneratorExit):
            # the client went away (the handler cancels the response, which closes this)
            self.m.status, self.m.error_code = 499, "client_closed"
            self.m.error = "the client went away"
            raise
        finally:
            if not self.m.usage_reported:
                self.m.tokens_out = self.m.content_events
                self.m.tokens_in = sum(len(str(x.get("content") or ""))
                                       for x in self.chat.messages) // 4
            await self.close(ok)

    async def whole(self) -> bytes:
        """A non-streamed answer, read whole."""
        assert self.response is not None
        ok = False
        try:
            body = await self.response.aread()
            try:
                data = json.loads(body)
                usage = data.get("usage") if isinstance(data, dict) else None
                if isinstance(usage, dict):
                    self.m.take_usage(usage)
                if self.keep_text and isinstance(data, dict):
                    self.m.text = [str(((c.get("message") or {}).get("content")) or "")
                                   for c in data.get("choices") or []]
            except ValueError:
                pass
            ok = True
            return body
        except (httpx.HTTPError, OSError) as exc:
            self.m.status, self.m.error_code = 502, "upstream_error"
            self.m.error = f"the backend failed mid-answer: {type(exc).__name__}: {exc}"[:400]
            raise GatewayError(502, self.m.error, code="upstream_error") from None
        finally:
            await self.close(ok)


def _client_error(status: int, body: bytes, target: BackendTarget) -> GatewayError:
    """The backend refused the request itself: its message, in OpenAI's shape, with its
    status (400, 404, 413, 422…)."""
    status = status if status in (400, 401, 403, 404, 409, 413, 422) else 400
    message = _upstream_error(status, body, target)
    if status in (401, 403):  # the backend's key, not the caller's: say so, as a 502
        return GatewayError(502, f"{message} (check the backend's API key in Tanglaw)",
                            code="upstream_auth")
    return GatewayError(status, message, code="upstream_refused")


def _error_event(message: str, code: str) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "type": "upstream_error",
                                             "code": code, "param": None}}).encode() + b"\n\n"


def streaming(relay: Relay, first: bytes) -> StreamingHttpResponse:
    return sse_response(relay.stream(first))


def whole(body: bytes, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")
