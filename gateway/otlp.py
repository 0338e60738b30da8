"""The OTLP/HTTP receiver: `POST /v1/traces` (and `/v1/metrics`), for code-first agents
that export OpenTelemetry (Microsoft Agent Framework's `configure_otel_providers`, any
OTLP exporter pointed at the console).

As the OTLP/HTTP spec has it: protobuf or JSON bodies, gzip or not; 200 with an
ExportTraceServiceResponse (its `partial_success` says how many spans were rejected and
why); a refused request gets a 4xx or 429/503 with a google.rpc.Status body in the
request's encoding, and Retry-After where trying again later helps. The key needs the
`telemetry:write` scope. Nothing of a refused payload is stored; accepted spans are
queued for traces.store's writer, never written on the request's path.
"""

from __future__ import annotations

import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from console.safeinput import digits
from gateway.errors import GatewayError
from gateway.views import authenticate
from traces import content as content_rules
from traces import store
from traces.otlp import (
    JSON,
    PROTOBUF,
    OtlpError,
    count_metric_points,
    decode_traces,
    inflate,
    media_type,
)

MAX_BACKLOG = 50_000  # spans waiting for the writer: past this, senders are asked to wait
# google.rpc.Code for each status we answer with
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 3, 415: 3, 429: 8, 503: 14}


class _Bucket:
    """Spans per second per key, in this process: a token bucket (burst: twice the rate)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.levels: dict[int, tuple[float, float]] = {}

    def take(self, key_id: int, spans: int) -> float | None:
        """None when the spans may pass now, else the seconds to wait. A batch larger
        than the burst passes when the bucket is full, and the key then waits it off."""
        rate = float(settings.TANGLAW_OTLP_SPANS_PER_S)
        now = time.monotonic()
        with self.lock:
            level, then = self.levels.get(key_id, (rate * 2, now))
            level = min(rate * 2, level + (now - then) * rate)
            if spans > level and level < rate * 2:
                self.levels[key_id] = (level, now)
                return max(1.0, (min(spans, rate * 2) - level) / rate)
            self.levels[key_id] = (level - spans, now)
            return None


_bucket = _Bucket()


def _answer(kind: str, message, status: int = 200, headers: dict[str, str] | None = None):
    if kind == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    response = HttpResponse(body, status=status, content_type=kind)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _refuse(kind: str, status: int, message: str, headers: dict[str, str] | None = None):
    return _answer(kind, Status(code=GRPC_CODES.get(status, 2), message=message), status,
                   headers)


def _limit() -> int:
    """The largest body in bytes, compressed or inflated (TANGLAW_OTLP_MAX_MB)."""
    return settings.TANGLAW_OTLP_MAX_MB * 1024 * 1024


def _body(request) -> bytes:
    limit = _limit()
    declared = request.headers.get("Content-Length", "")
    too_big = OtlpError(413, f"the body is larger than {settings.TANGLAW_OTLP_MAX_MB} MB "
                             f"(TANGLAW_OTLP_MAX_MB): send smaller batches")
    if digits(declared) and int(declared) > limit:
        raise too_big
    # read here, not through request.body (whose limit is the console's upload size)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_big
    return body


async def _receive(request, signal: str):
    """The common part: method, encoding, key, body. Returns (kind, payload, key)."""
    if request.method != "POST":
        raise OtlpError(405, f"use POST on /v1/{signal}")
    kind = media_type(request.headers.get("Content-Type", ""))
    try:
        key = await authenticate(request, "telemetry:write")
    except GatewayError as exc:
        raise OtlpError(exc.status, exc.message) from None
    if not key.may("telemetry.send"):
        raise OtlpError(403, f"the role of this key's owner ({key.user.effective_role}) may "
                             f"not send telemetry")
    return kind, _body(request), key


def _decode(payload: bytes, kind: str, encoding: str, content: bool):
    """Inflate, decode and (without the key's content switch) strip: the CPU-bound part,
    in one go (a worker thread for a large body)."""
    decoded = decode_traces(inflate(payload, encoding, _limit()), kind)
    for span in decoded.spans:
        span["external"] = True
        if not content:
            content_rules.strip(span)
    return decoded


def _kind_of(request) -> str:
    """The encoding to answer in: the request's, or protobuf when it named neither."""
    try:
        return media_type(request.headers.get("Content-Type", ""))
    except OtlpError:
        return PROTOBUF


@csrf_exempt
async def traces(request) -> HttpResponse:
    try:
        kind, payload, key = await _receive(request, "traces")
        if store.backlog() > MAX_BACKLOG:
            return _refuse(kind, 503, "the console is behind writing spans; retry later",
                           {"Retry-After": "5"})
        args = (payload, kind, request.headers.get("Content-Encoding", ""), key.log_content)
        decoded = await sync_to_async(_decode, thread_sensitive=False)(*args) \
            if len(payload) > 64 * 1024 else _decode(*args)
        if decoded.spans:
            wait = _bucket.take(key.token_id, len(decoded.spans))
            if wait is not None:
                return _refuse(kind, 429, f"more than {settings.TANGLAW_OTLP_SPANS_PER_S} "
                                          f"spans a second from this key "
                                          f"(TANGLAW_OTLP_SPANS_PER_S); retry later",
                               {"Retry-After": str(round(wait))})
            if store.add(decoded.spans):
                await sync_to_async(store.flush, thread_sensitive=False)()
    except OtlpError as exc:
        return _refuse(_kind_of(request), exc.status, exc.message,
                       {"Allow": "POST"} if exc.status == 405 else None)
    response = ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = "; ".join(decoded.reasons)
    return _answer(kind, response)


@csrf_exempt
async def metrics(request) -> HttpResponse:
    """Metrics are checked and answered as OTLP asks, but not kept: Tanglaw computes the
    same GenAI figures (requests, durations, tokens) from the spans, per agent. The
    partial success says so (rejected points are not retried by exporters)."""
    try:
        kind, payload, _ = await _receive(request, "metrics")
        encoding = request.headers.get("Content-Encoding", "")
        points = await sync_to_async(lambda: count_metric_points(
            inflate(payload, encoding, _limit()), kind), thread_sensitive=False)()
    except OtlpError as exc:
        return _refuse(_kind_of(request), exc.status, exc.message,
                       {"Allow": "POST"} if exc.status == 405 else None)
    response = ExportMetricsServiceResponse()
    if points:
        response.partial_success.rejected_data_points = points
        response.partial_success.error_message = (
            "Tanglaw keeps traces, not metrics: it derives the gen_ai figures from the spans "
            "sent to /v1/traces")
    return _answer(kind, response)
