"""OTLP payloads built with the official protobuf classes, as an exporter sends them."""

from __future__ import annotations

import os
import time
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out
    return AnyValue(string_value=str(v))


def attrs(d: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in d.items()]


def span(trace_id: bytes, name: str, *, parent: bytes = b"", span_id: bytes | None = None,
         start_ms: float = 0, ms: float = 10, error: str = "", kind: int = 1,
         **attributes: Any) -> Span:
    base = int(time.time() * 1e9) - 60_000_000_000
    out = Span(trace_id=trace_id, span_id=span_id or os.urandom(8), parent_span_id=parent,
               name=name, kind=kind, start_time_unix_nano=base + int(start_ms * 1e6),
               end_time_unix_nano=base + int((start_ms + ms) * 1e6),
               attributes=attrs({k.replace("__", "."): v for k, v in attributes.items()}))
    if error:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return out


def request(spans: list[Span], service: str = "weather-app") -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.extend(attrs({"service.name": service}))
    ss = rs.scope_spans.add()
    ss.scope.name = "agent_framework"
    ss.spans.extend(spans)
    return out


def maf_turn(trace_id: bytes | None = None, *, agent: str = "weather", tool_error: str = "",
             content: bool = False) -> list[Span]:
    """The spans MAF 1.23 makes for a streamed agent run with one tool call: invoke_agent
    with chat, execute_tool and chat as its children (all INTERNAL)."""
    trace_id = trace_id or os.urandom(16)
    root_id = os.urandom(8)
    secret = {"gen_ai.tool.call.arguments": '{"city": "Manila"}',
              "gen_ai.tool.call.result": "sunny"} if content else {}
    tool = span(trace_id, "execute_tool get_weather", parent=root_id, start_ms=30, ms=5,
                error=tool_error, gen_ai__operation__name="execute_tool",
                gen_ai__tool__name="get_weather", gen_ai__tool__call__id="call_1",
                **({"error.type": "ValueError"} if tool_error else {}),
                **{k.replace(".", "__"): v for k, v in secret.items()})
    return [
        span(trace_id, "chat qwen", parent=root_id, start_ms=1, ms=25,
             gen_ai__operation__name="chat", gen_ai__request__model="qwen",
             gen_ai__usage__input_tokens=20, gen_ai__usage__output_tokens=5),
        tool,
        span(trace_id, "chat qwen", parent=root_id, start_ms=40, ms=30,
             gen_ai__operation__name="chat", gen_ai__request__model="qwen",
             gen_ai__usage__input_tokens=30, gen_ai__usage__output_tokens=8),
        span(trace_id, f"invoke_agent {agent}", span_id=root_id, ms=75,
             gen_ai__operation__name="invoke_agent", gen_ai__agent__name=agent,
             gen_ai__usage__input_tokens=50, gen_ai__usage__output_tokens=13),
    ]


def as_json(message) -> bytes:
    """OTLP JSON: protobuf's JSON mapping, but trace and span ids in hex."""
    document = json_format.MessageToDict(message)
    for rs in document.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in s:
                        import base64

                        s[field] = base64.b64decode(s[field]).hex()
    import json

    return json.dumps(document).encode()


def store_export(spans: list[Span], service: str = "weather-app"):
    """Spans as the receiver queues them (decoded from the same protobuf), written now."""
    from traces import store
    from traces.otlp import PROTOBUF, decode_traces

    decoded = decode_traces(request(spans, service).SerializeToString(), PROTOBUF)
    for row in decoded.spans:
        row["external"] = True
    store.add(decoded.spans)
    store.flush()
    return decoded
