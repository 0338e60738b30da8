"""The gateway's HTTP endpoints under /v1/: models, chat completions, responses.

Plain async views, outside django-ninja: this is the hot path. A request is
authenticated from the per-process key cache, checked, admitted against its key's
limits, and sent on — to a backend (gateway.relay) or to an agent run
(gateway.agent_runs) — without a database query on the way when the caches are
warm. Every answer carries `x-request-id` and `x-tanglaw-overhead-ms`; every request
becomes a usage record and an audit event (gateway.usage), written after it ended.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from gateway import agent_runs, keys, quota, relay, targets, usage
from gateway import responses as responses_api
from gateway.errors import GatewayError
from gateway.keys import Key
from gateway.wire import ChatRequest, body_of, chat_request, json_response, sse_response
from traces import store as trace_store
from traces.choices import SpanKind
from traces.recorder import Recorder, SpanRecord

MAX_ROUTE_HEADER = 1000


@dataclass
class Call:
    """One request through the gateway, from its arrival to its record."""

    request: Any
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    ts: Any = field(default_factory=timezone.now)
    request_id: str = ""
    key: Key | None = None
    admission: quota.Admission | None = None
    model: str = ""
    stream: bool = False
    recorded: bool = False
    trace: Recorder = field(init=False)
    root: SpanRecord | None = None  # the request's span, once it named a model

    def __post_init__(self) -> None:
        # a caller's traceparent: Tanglaw's spans of this request join the caller's trace
        # (they hold no content: a pass-through's text goes only to its audit event)
        self.trace = Recorder(self.request.headers.get("traceparent"))
        # the request's correlation id (gateway.asgi: a proxy's X-Request-ID or new)
        self.request_id = getattr(self.request, "correlation_id", "") or uuid.uuid4().hex
        # Tanglaw's time counts from the handler's first sight of the request
        arrived = getattr(self.request, "scope", {}).get("tanglaw.arrived")
        if arrived is not None:
            self.started = arrived

    def headers(self, response: HttpResponseBase,
                overhead_ms: float | None = None) -> HttpResponseBase:
        response["x-request-id"] = self.request_id
        if self.root is not None:
            response["x-tanglaw-trace-id"] = self.trace.trace_id
        if overhead_ms is not None:
            response["x-tanglaw-overhead-ms"] = f"{overhead_ms:.2f}"
        if self.admission is not None:
            for name, value in self.admission.headers.items():
                response[name] = value
        return response

    async def record(self, **values: Any) -> None:
        """The request's usage row and audit event (once); the caller's slot freed."""
        if self.recorded:
            return
        self.recorded = True
        if self.admission is not None:
            self.admission.release()
        key = self.key
        row = {"request_id": self.request_id, "ts": self.ts, "endpoint": self.endpoint,
               "model": self.model[:200], "stream": self.stream,
               "token_id": key.token_id if key else None,
               "user_id": key.user.pk if key else None,
               "key_name": key.name if key else "",
               "actor": usage.actor_for(key, self.request, self.request_id), **values}
        if row.get("error"):
            row["error"] = str(row["error"])[:500]
        if self.root is not None:
            row["trace_id"] = self.trace.trace_id
            self._end_trace(values)
        if usage.record(row):
            await sync_to_async(usage.flush, thread_sensitive=False)()
        if self.root is not None and trace_store.add(self.trace.rows()):
            await sync_to_async(trace_store.flush, thread_sensitive=False)()

    def child_traceparent(self) -> str | None:
        """The traceparent that makes an agent's turn a step of this request's span."""
        return self.trace.traceparent(self.root) if self.root is not None else None

    def open_trace(self) -> None:
        """The request's span (once it named a model): every step of it nests under it."""
        # not a model call itself (no gen_ai.operation.name): its attempts are, and only
        # they add to the trace's tokens
        self.root = self.trace.enter(
            f"chat {self.model}", SpanKind.SERVER, tanglaw__operation="gateway",
            gen_ai__request__model=self.model, tanglaw__request__id=self.request_id,
            tanglaw__endpoint=self.endpoint, tanglaw__stream=self.stream,
            tanglaw__key=self.key.name if self.key else None,
            enduser__id=self.key.user.username if self.key else None)

    def _end_trace(self, values: dict[str, Any]) -> None:
        assert self.root is not None
        status = values.get("status", 200)
        self.root.set(http__response__status_code=status,
                      gen_ai__response__model=values.get("upstream_model") or None,
                      gen_ai__usage__input_tokens=values.get("tokens_in"),
                      gen_ai__usage__output_tokens=values.get("tokens_out"),
                      tanglaw__ttft_ms=values.get("ttft_ms"),
                      tanglaw__overhead_ms=values.get("overhead_ms"),
                      tanglaw__route=[r["reason"] for r in values.get("route") or []] or None)
        if status >= 400:
            self.root.fail(values.get("error_code") or str(status),
                           str(values.get("error") or ""))
        for span in self.trace.spans:
            if span is not self.root and span.attributes.get("gen_ai.operation.name") == "chat" \
                    and not span.end_ns:  # the attempt that answered
                span.set(gen_ai__usage__input_tokens=values.get("tokens_in"),
                         gen_ai__usage__output_tokens=values.get("tokens_out"),
                         gen_ai__response__model=values.get("upstream_model") or None,
                         tanglaw__ttft_ms=values.get("ttft_ms"))
                if status >= 500:
                    span.fail(values.get("error_code") or str(status),
                              str(values.get("error") or ""))
        self.trace.leave(self.root)

    async def fail(self, exc: GatewayError) -> HttpResponseBase:
        await self.record(status=exc.status, error_code=exc.code, error=exc.message,
                          total_ms=_ms(self.started))
        return self.headers(exc.response())


def _ms(since: float, until: float | None = None) -> float:
    return ((until or time.perf_counter()) - since) * 1000


async def authenticate(request, scope: str) -> Key:
    raw = keys.bearer(request)
    if not raw:
        raise keys.refuse_missing()
    key = keys.cached(raw)
    if key is False:
        key = await sync_to_async(keys.lookup, thread_sensitive=False)(raw)
    if key is None or key is False:
        raise keys.refuse_unknown()
    if not key.allows_scope(scope):
        raise GatewayError(403, f"this key lacks the `{scope}` scope", code="scope_missing")
    return key


async def admit(call: Call) -> None:
    assert call.key is not None
    if quota.needs_thread(call.key):
        call.admission = await sync_to_async(quota.admit, thread_sensitive=False)(call.key)
    else:
        call.admission = quota.admit(call.key)


async def table() -> targets.Table:
    return targets.current_cached() or await sync_to_async(
        targets.table, thread_sensitive=False)()


def _read_body(request) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        raise GatewayError(413, f"the request body is larger than {limit} MB "
                                f"(TANGLAW_MAX_UPLOAD_MB)", code="request_too_large",
                           param="body") from None


def method_not_allowed(call: Call, allowed: str) -> HttpResponseBase:
    response = GatewayError(405, f"use {allowed} on {call.request.path}",
                            code="method_not_allowed").response()
    response["Allow"] = allowed
    return call.headers(response)


# -- /v1/chat/completions ----------------------------------------------------------------

@csrf_exempt
async def chat_completions(request) -> HttpResponseBase:
    call = Call(request, "chat.completions")
    if request.method != "POST":
        return method_not_allowed(call, "POST")
    try:
        call.key = await authenticate(request, "inference")
        chat = chat_request(body_of(_read_body(request)))
        call.model, call.stream = chat.model, chat.stream
        call.open_trace()
        target = await _target(call, chat.model)
        await admit(call)
        if isinstance(target, targets.AgentTarget):
            return await _agent(call, chat, target)
        return await _pass_through(call, chat, target)
    except GatewayError as exc:
        return await call.fail(exc)


async def _target(call: Call, model: str):
    key = call.key
    assert key is not None
    if not key.may("chat"):
        raise GatewayError(403, f"the role of this key's owner ({key.user.effective_role}) "
                                f"may not run models", code="permission_denied")
    if not key.allows_model(model):
        raise GatewayError(403, f"this key may not use {model!r}", code="model_not_allowed",
                           param="model")
    return (await table()).resolve(model)


def _log_content() -> bool:
    return bool(settings.TANGLAW_GATEWAY_LOG_CONTENT)


async def _pass_through(call: Call, chat: ChatRequest,
                        chain: list[targets.BackendTarget]) -> HttpResponseBase:
    measure = relay.Measure(call.started)
    passing = relay.Relay(chat, chain, measure, keep_text=_log_content(), trace=call.trace)
    try:
        target, _, first = await passing.open()
    except GatewayError as exc:
        await call.record(status=exc.status, error_code=exc.code, error=exc.message,
                          total_ms=_ms(call.started), route=measure.route or None,
                          backend_id=measure.target.backend.pk if measure.target else None,
                          upstream_model=measure.target.model if measure.target else "")
        return call.headers(exc.response(_route_header(measure.route)))
    opened = time.perf_counter()
    # Tanglaw's own time: before the request went upstream, and from the backend's
    # answer to handing it on
    measure.overhead_ms = _ms(call.started, measure.sent)

    async def finished() -> None:
        ended = time.perf_counter()
        content = None
        if _log_content():
            content = {"message": chat.last_user_text()[:4000],
                       "reply": "".join(measure.text)[:4000]}
        await call.record(
            status=measure.status, error_code=measure.error_code, error=measure.error,
            backend_id=target.backend.pk, upstream_model=target.model,
            ttft_ms=_ms(call.started, measure.ttft) if measure.ttft else None,
            total_ms=_ms(call.started, ended), overhead_ms=round(measure.overhead_ms, 3),
            tokens_in=measure.tokens_in, tokens_out=measure.tokens_out,
            usage_reported=measure.usage_reported, route=measure.route or None,
            content=content)

    response: HttpResponseBase
    if chat.stream:
        response = relay.streaming(passing, first)
        response.streaming_content = _then(response.streaming_content, finished)
        measure.overhead_ms += _ms(opened)
    else:
        try:
            body = await passing.whole()
        except GatewayError as exc:
            await finished()
            return call.headers(exc.response())
        read = time.perf_counter()
        response = relay.whole(body)
        measure.overhead_ms += _ms(read)
        await finished()
    response["x-tanglaw-backend"] = target.label[:200]
    for name, value in _route_header(measure.route).items():
        response[name] = value
    return call.headers(response, measure.overhead_ms)


async def _then(iterator, after):
    try:
        async for item in iterator:
            yield item
    finally:
        await after()


def _route_header(route: list[dict[str, Any]]) -> dict[str, str]:
    if not route:
        return {}
    text = json.dumps(route, ensure_ascii=True, separators=(",", ":"))
    return {"x-tanglaw-route": text[:MAX_ROUTE_HEADER]}


async def _agent(call: Call, chat: ChatRequest,
                 target: targets.AgentTarget) -> HttpResponseBase:
    assert call.key is not None
    actor = usage.actor_for(call.key, call.request, call.request_id)
    agent_run = await agent_runs.start(actor, call.key.user, chat, target,
                                       traceparent=call.child_traceparent(),
                                       request_id=call.request_id)
    overhead = _ms(call.started)

    async def finished() -> None:
        state = agent_run.state
        failed = bool(state.error) and not state.text and not state.client_calls
        error = agent_run.error() if state.error else None
        await call.record(
            status=error.status if failed and error else 200,
            error_code=state.error_code, error=state.error, agent_id=target.agent_id,
            backend_id=state.backend_id, upstream_model=state.model,
            ttft_ms=state.ttft_ms, total_ms=_ms(call.started), overhead_ms=round(overhead, 3),
            tokens_in=state.tokens_in, tokens_out=state.tokens_out,
            usage_reported=state.usage_reported, route=state.route or None)

    response: HttpResponseBase
    if not chat.stream:
        try:
            data = await agent_runs.whole(agent_run)
        except GatewayError as exc:
            await finished()
            return call.headers(exc.response(_route_header(agent_run.state.route)))
        await finished()
        response = json_response(data)
    else:
        task, frames = await agent_runs.run(agent_run)
        seen = await agent_runs.first_frames(agent_run, frames)
        last = seen[-1]
        if last["type"] in ("error", "end") and not agent_run.state.text and \
                not agent_run.state.client_calls and agent_run.state.error:
            await task
            await finished()
            return call.headers(agent_run.error().response(
                _route_header(agent_run.state.route)))
        response = agent_runs.streaming(agent_run, task, frames, seen, chat.include_usage,
                                        finished)
    response["x-tanglaw-agent"] = target.name[:200]
    for name, value in _route_header(agent_run.state.route).items():
        response[name] = value
    return call.headers(response, overhead)


# -- /v1/models --------------------------------------------------------------------------

@csrf_exempt
async def models(request, model: str | None = None) -> HttpResponseBase:
    call = Call(request, "models")
    if request.method != "GET":
        return method_not_allowed(call, "GET")
    try:
        key = await authenticate(request, "inference")
    except GatewayError as exc:
        return call.headers(exc.response())
    listed = await model_list(key)
    if model is not None:
        found = next((m for m in listed if m["id"] == model), None)
        if found is None:
            return call.headers(targets.not_found(model).response())
        return call.headers(HttpResponse(json.dumps(found), content_type="application/json"))
    return call.headers(HttpResponse(json.dumps({"object": "list", "data": listed}),
                                     content_type="application/json"))


async def model_list(key: Key) -> list[dict[str, Any]]:
    """What the key may use: agents, aliases, then every backend's models."""
    if not key.may("chat"):
        return []
    current = await table()
    created = int(time.time())
    out: list[dict[str, Any]] = []
    for slug in sorted(current.agents):
        out.append({"id": targets.AGENT_PREFIX + slug, "object": "model", "created": created,
                    "owned_by": "tanglaw-agent"})
    for name in sorted(current.aliases):
        out.append({"id": name, "object": "model", "created": created,
                    "owned_by": "tanglaw-alias"})
    listed = await targets.backend_models(current)
    for backend_name in sorted(listed):
        for model_id in listed[backend_name]:
            out.append({"id": f"{backend_name}/{model_id}", "object": "model",
                        "created": created, "owned_by": backend_name})
    return [m for m in out if key.allows_model(m["id"])]


# -- /v1/responses -----------------------------------------------------------------------

@csrf_exempt
async def responses(request) -> HttpResponseBase:
    call = Call(request, "responses")
    if request.method != "POST":
        return method_not_allowed(call, "POST")
    try:
        call.key = await authenticate(request, "inference")
        body = body_of(_read_body(request))
        asked = responses_api.request(body, call.key.token_id)
        call.model, call.stream = asked.chat.model, asked.chat.stream
        call.open_trace()
        target = await _target(call, asked.chat.model)
        await admit(call)
        writer = responses_api.Writer(asked)
        if isinstance(target, targets.AgentTarget):
            return await _responses_agent(call, writer, target)
        return await _responses_pass_through(call, writer, target)
    except GatewayError as exc:
        return await call.fail(exc)


def _remember(call: Call, writer: responses_api.Writer) -> None:
    if writer.answer.error is None and writer.req.store:
        responses_api.remember(writer.id, call.key.token_id if call.key else None,
                               writer.conversation())


async def _responses_pass_through(call: Call, writer: responses_api.Writer,
                                  chain: list[targets.BackendTarget]) -> HttpResponseBase:
    chat = writer.req.chat
    measure = relay.Measure(call.started)
    passing = relay.Relay(chat, chain, measure, keep_text=False, trace=call.trace)
    try:
        target, _, first = await passing.open()
    except GatewayError as exc:
        await call.record(status=exc.status, error_code=exc.code, error=exc.message,
                          total_ms=_ms(call.started), route=measure.route or None)
        return call.headers(exc.response(_route_header(measure.route)))
    measure.overhead_ms = _ms(call.started, measure.sent)

    async def finished() -> None:
        answer = writer.answer
        error = answer.error
        await call.record(
            status=error.status if error else 200, error_code=error.code if error else "",
            error=error.message if error else "", backend_id=target.backend.pk,
            upstream_model=target.model,
            ttft_ms=_ms(call.started, measure.ttft) if measure.ttft else None,
            total_ms=_ms(call.started), overhead_ms=round(measure.overhead_ms, 3),
            tokens_in=measure.tokens_in, tokens_out=measure.tokens_out,
            usage_reported=measure.usage_reported, route=measure.route or None)

    if not chat.stream:
        try:
            raw = await passing.whole()
            responses_api.from_completion(json.loads(raw), writer.answer)
        except GatewayError as exc:
            writer.answer.error = exc
        except (ValueError, KeyError, TypeError, AttributeError):
            writer.answer.error = GatewayError(502, f"{target.label} answered something "
                                                    f"that is not a chat completion",
                                               code="upstream_error")
        await finished()
        if writer.answer.error is not None:
            return call.headers(writer.answer.error.response())
        _remember(call, writer)
        return call.headers(json_response(writer.response(writer.status())), measure.overhead_ms)

    async def chunks():
        yield first
        assert passing.chunks is not None
        async for data in passing.chunks:
            if measure.ttft is None:
                measure.ttft = time.perf_counter()
            yield data

    async def body():
        ok = True
        try:
            source = responses_api.from_chunks(chunks(), measure.take_usage)
            async for event in writer.events(source):
                yield event
            ok = writer.answer.error is None
            _remember(call, writer)
        except Exception as exc:  # noqa: BLE001 - the stream ends with a failed response
            ok = False
            writer.answer.error = GatewayError(502, f"the backend failed mid-answer: "
                                                    f"{type(exc).__name__}", code="upstream_error")
            yield writer.event("response.failed", response=writer.response("failed"))
        finally:
            await passing.close(ok)
            await finished()

    return call.headers(sse_response(body()), measure.overhead_ms)


async def _responses_agent(call: Call, writer: responses_api.Writer,
                           target: targets.AgentTarget) -> HttpResponseBase:
    assert call.key is not None
    actor = usage.actor_for(call.key, call.request, call.request_id)
    agent_run = await agent_runs.start(actor, call.key.user, writer.req.chat, target,
                                       traceparent=call.child_traceparent(),
                                       request_id=call.request_id)
    overhead = _ms(call.started)

    async def finished() -> None:
        state = agent_run.state
        error = writer.answer.error
        await call.record(
            status=error.status if error else 200, error_code=state.error_code,
            error=state.error, agent_id=target.agent_id, backend_id=state.backend_id,
            upstream_model=state.model, ttft_ms=state.ttft_ms, total_ms=_ms(call.started),
            overhead_ms=round(overhead, 3), tokens_in=state.tokens_in,
            tokens_out=state.tokens_out, usage_reported=state.usage_reported,
            route=state.route or None)

    if not writer.req.chat.stream:
        try:
            responses_api.from_completion(await agent_runs.whole(agent_run), writer.answer)
        except GatewayError as exc:
            writer.answer.error = exc
        await finished()
        if writer.answer.error is not None:
            return call.headers(writer.answer.error.response())
        _remember(call, writer)
        return call.headers(json_response(writer.response(writer.status())), overhead)

    task, frames = await agent_runs.run(agent_run)

    async def source():
        while True:
            frame = await frames.get()
            if frame is None:
                break
            if frame["type"] == "delta":
                yield "text", frame["text"]
            elif frame["type"] == "error":
                yield "error", agent_run.error()
        state = agent_run.state
        if state.client_calls:
            yield "calls", [dict(c) for c in state.client_calls]
        yield "usage", agent_run.usage()
        yield "finish", agent_run.finish_reason()

    async def body():
        try:
            async for event in writer.events(source()):
                yield event
            _remember(call, writer)
        finally:
            await agent_run.settle(task)
            await finished()

    response = sse_response(body())
    response["x-tanglaw-agent"] = target.name[:200]
    return call.headers(response, overhead)
