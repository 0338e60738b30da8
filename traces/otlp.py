"""OTLP/HTTP payloads into span rows: protobuf or JSON, gzip or not, decoded with the
official classes (opentelemetry-proto), nothing parsed by hand but OTLP JSON's one
departure from protobuf's JSON mapping (hex, not base64, trace and span ids).

`decode_traces` either refuses the whole payload (OtlpError: the HTTP status and a
message naming what is wrong, nothing stored) or returns the spans it accepts and how
many it rejected and why — the OTLP partial success.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from traces.choices import KIND_BY_NUMBER, STATUS_BY_NUMBER

PROTOBUF, JSON = "application/x-protobuf", "application/json"
MAX_ATTRIBUTES = 128  # the SDKs' default span limits
MAX_EVENTS = 128
MAX_LINKS = 32
MAX_VALUE_CHARS = 32_000
MAX_DEPTH = 8
MAX_NS = 2**63 - 1  # a signed 64-bit column: later than the year 2262 is not a time


def text(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """A sender's string as a column or JSON can keep it (no NUL, which PostgreSQL
    refuses), at most `limit` characters."""
    return value[:limit].replace("\x00", "")


class OtlpError(Exception):
    """The payload as a whole cannot be taken: `status` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Decoded:
    spans: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` → `application/json`; OtlpError 415 otherwise."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise OtlpError(415, f"Content-Type {kind or '(none)'!r} is not OTLP: send "
                             f"{PROTOBUF} or {JSON}")
    return kind


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate or none), at most `limit`
    bytes once inflated (OtlpError 413 past it, 400 when it is not what it says)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpError(415, f"Content-Encoding {encoding!r} is not supported: send gzip, "
                             f"deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
        if not inflater.eof and len(out) <= limit:
            raise OtlpError(400, f"the {encoding} body is truncated (Content-Encoding)")
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise OtlpError(400, f"the body is not valid {encoding} (Content-Encoding): "
                             f"{exc}") from None
    if len(out) > limit:
        raise OtlpError(413, f"the body is larger than {limit // (1024 * 1024)} MB once "
                             f"inflated (TANGLAW_OTLP_MAX_MB)")
    return out


def _parse(message: Message, payload: bytes, kind: str, what: str) -> None:
    if kind == PROTOBUF:
        try:
            message.ParseFromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OtlpError(400, f"the body is not a valid protobuf {what}: "
                                 f"{exc or 'truncated or malformed'}") from None
        return
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OtlpError(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise OtlpError(400, f"the body must be a JSON object (an OTLP {what})")
    _hex_ids_to_base64(document)
    try:
        # receivers must ignore unknown fields (OTLP's JSON encoding)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise OtlpError(400, f"the JSON is not an OTLP {what}: {str(exc)[:300]}") from None


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as
    base64. An id that is not hex becomes empty, and its span is rejected below."""
    for resource in _dicts(document.get("resourceSpans")):
        for scope in _dicts(resource.get("scopeSpans")):
            for span in _dicts(scope.get("spans")):
                for holder in [span, *_dicts(span.get("links"))]:
                    for name in ("traceId", "spanId", "parentSpanId"):
                        value = holder.get(name)
                        if isinstance(value, str):
                            holder[name] = _b64(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _b64(hex_id: str) -> str:
    try:
        return base64.b64encode(binascii.unhexlify(hex_id)).decode()
    except (binascii.Error, ValueError):
        return ""


def value_of(any_value: Any, depth: int = 0) -> Any:
    """An OTLP AnyValue as plain JSON."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return text(any_value.string_value)
    if which == "double_value" and not math.isfinite(any_value.double_value):
        return str(any_value.double_value)  # NaN and infinities are not JSON numbers
    if which == "bytes_value":
        return base64.b64encode(any_value.bytes_value[:MAX_VALUE_CHARS]).decode()
    if which == "array_value":
        if depth >= MAX_DEPTH:
            return None
        return [value_of(v, depth + 1) for v in any_value.array_value.values[:MAX_ATTRIBUTES]]
    if which == "kvlist_value":
        if depth >= MAX_DEPTH:
            return None
        return attributes_of(any_value.kvlist_value.values, depth + 1)
    return getattr(any_value, which)


def attributes_of(pairs: Any, depth: int = 0) -> dict[str, Any]:
    return {text(kv.key, 200): value_of(kv.value, depth) for kv in list(pairs)[:MAX_ATTRIBUTES]}


def decode_traces(payload: bytes, kind: str) -> Decoded:
    request = ExportTraceServiceRequest()
    _parse(request, payload, kind, "ExportTraceServiceRequest")
    out = Decoded()
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "")[:200]
        for scope_spans in resource_spans.scope_spans:
            scope = text(scope_spans.scope.name, 200)
            for span in scope_spans.spans:
                row = _span(span, out)
                if row is not None:
                    row.update(service=service, scope=scope, resource=resource)
                    out.spans.append(row)
    return out


def _valid_id(raw: bytes, size: int) -> bool:
    return len(raw) == size and any(raw)


def _span(span: Any, out: Decoded) -> dict[str, Any] | None:
    if not _valid_id(span.trace_id, 16):
        out.reject("a span's traceId is not 16 non-zero bytes")
        return None
    if not _valid_id(span.span_id, 8):
        out.reject("a span's spanId is not 8 non-zero bytes")
        return None
    if span.parent_span_id and not _valid_id(span.parent_span_id, 8):
        out.reject("a span's parentSpanId is not 8 bytes")
        return None
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start or end < start or end > MAX_NS:
        out.reject("a span's startTimeUnixNano is missing, after its endTimeUnixNano or "
                   "out of range")
        return None
    events = [{"name": text(e.name, 200), "time_ns": min(e.time_unix_nano, MAX_NS),
               "attributes": attributes_of(e.attributes)} for e in span.events[:MAX_EVENTS]]
    links = [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
              "attributes": attributes_of(link.attributes)} for link in span.links[:MAX_LINKS]]
    return {"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
            "parent_id": span.parent_span_id.hex(), "name": text(span.name, 200) or "(unnamed)",
            "kind": KIND_BY_NUMBER.get(span.kind, KIND_BY_NUMBER[0]).value,
            "start_ns": start, "end_ns": end,
            "status": STATUS_BY_NUMBER.get(span.status.code, STATUS_BY_NUMBER[0]).value,
            "status_message": text(span.status.message, 500),
            "attributes": attributes_of(span.attributes), "events": events, "links": links}


def count_metric_points(payload: bytes, kind: str) -> int:
    """The gen_ai.* histogram and sum data points of an ExportMetricsServiceRequest,
    decoded (OtlpError as for traces) and counted: Tanglaw keeps none of them (it reads
    the same figures from the spans)."""
    request = ExportMetricsServiceRequest()
    _parse(request, payload, kind, "ExportMetricsServiceRequest")
    return sum(len(getattr(metric, data).data_points)
               for resource_metrics in request.resource_metrics
               for scope_metrics in resource_metrics.scope_metrics
               for metric in scope_metrics.metrics
               if metric.name.startswith("gen_ai.")
               and (data := metric.WhichOneof("data")) in ("histogram", "sum"))
