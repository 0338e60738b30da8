"""Tanglaw's own spans sent on to an OpenTelemetry collector too, when the standard
variables name one (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
with `_HEADERS`, `_TIMEOUT`, `_COMPRESSION`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
it off). Off by default: with none set, nothing is imported and nothing leaves the box.

The SDK's own BatchSpanProcessor and OTLP/HTTP exporter do the sending (protobuf, with
retries and its own thread); traces.store's writer hands them the spans it stored, so
neither the turn nor the request ever waits for the collector.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

log = logging.getLogger("tanglaw.traces")
_lock = threading.Lock()
_processor: Any = None
_resource_made: Any = None
_checked = False


def configured() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def processor():
    """The batch processor, made once (None when export is off)."""
    global _processor, _resource_made, _checked
    if _checked:
        return _processor
    with _lock:
        if _checked:
            return _processor
        if configured():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
            if protocol != "http/protobuf":
                log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: Tanglaw exports with "
                            "http/protobuf only", protocol)
            _processor, _resource_made = BatchSpanProcessor(OTLPSpanExporter()), _resource()
            log.info("traces: exporting Tanglaw's spans over OTLP/HTTP")
        _checked = True
    return _processor


def reset() -> None:
    """Forget the processor (after a change of the variables; tests)."""
    global _processor, _checked
    with _lock:
        if _processor is not None:
            _processor.shutdown()
        _processor, _checked = None, False


def _resource():
    """Tanglaw's resource, made once: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
    over Tanglaw's own service.name."""
    from opentelemetry.sdk.resources import Resource

    from traces.recorder import RESOURCE

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    return Resource.create({k: v for k, v in RESOURCE.items()
                            if not (named and k == "service.name")})


def _value(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | bool | int | float)
                                               for v in value):
        return list(value)
    return json.dumps(value, default=str)


def readable(row: dict[str, Any], resource):
    """A stored span dict as the SDK's ReadableSpan."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = int(row["trace_id"], 16)
    context = SpanContext(trace_id, int(row["span_id"], 16), False, TraceFlags(1))
    parent = (SpanContext(trace_id, int(row["parent_id"], 16), True, TraceFlags(1))
              if row.get("parent_id") else None)
    status = {"error": Status(StatusCode.ERROR, row.get("status_message") or None),
              "ok": Status(StatusCode.OK)}.get(row.get("status", ""), Status(StatusCode.UNSET))
    return ReadableSpan(
        name=row["name"], context=context, parent=parent,
        resource=resource,
        attributes={k: _value(v) for k, v in (row.get("attributes") or {}).items()
                    if v is not None},
        events=[Event(e["name"], {k: _value(v) for k, v in e.get("attributes", {}).items()
                                  if v is not None}, e.get("time_ns"))
                for e in row.get("events") or []],
        kind=getattr(SpanKind, str(row.get("kind", "internal")).upper(), SpanKind.INTERNAL),
        status=status, start_time=row["start_ns"], end_time=row["end_ns"],
        instrumentation_scope=InstrumentationScope(row.get("scope") or "tanglaw"))


def export(rows: list[dict[str, Any]]) -> None:
    """Hand Tanglaw's own spans to the exporter (spans that came in over OTLP are the
    sender's to export, not ours)."""
    sink = processor()
    if sink is None:
        return
    for row in rows:
        if not row.get("external"):
            try:
                sink.on_end(readable(row, _resource_made))
            except (ValueError, TypeError):
                log.warning("a span could not be exported: %s", row.get("name"))
