"""With OTEL_EXPORTER_OTLP_ENDPOINT set, Tanglaw's own spans also go to that collector,
through the SDK's OTLP/HTTP exporter (protobuf, the headers given); spans that came in
over OTLP are not sent back out; with nothing set, nothing is exported."""

from __future__ import annotations

import gzip
import time
from http.server import BaseHTTPRequestHandler

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.loopback import LoopbackServer
from traces import export, store
from traces.recorder import Recorder

pytestmark = pytest.mark.django_db


class Collector(LoopbackServer):
    """An OTLP/HTTP collector that keeps what it was sent."""

    def __init__(self):
        self.received: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                fake.received.append((self.path, {k.lower(): v for k, v in
                                                  self.headers.items()},
                                      ExportTraceServiceRequest.FromString(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.serve(Handler)
        return self


@pytest.fixture
def collector(monkeypatch):
    server = Collector().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=s3cret")
    export.reset()
    yield server
    export.reset()
    server.stop()


def a_turn() -> Recorder:
    trace = Recorder()
    root = trace.enter("invoke_agent helper", gen_ai__operation__name="invoke_agent",
                       gen_ai__agent__name="helper")
    with trace.span("chat qwen", "client", gen_ai__operation__name="chat",
                    gen_ai__response__finish_reasons=["stop"]) as chat:
        chat.fail("backend_error", "cannot reach edge")
    trace.leave(root)
    return trace


def test_own_spans_go_to_the_collector_named_by_the_standard_variables(collector):
    trace = a_turn()
    store.add(trace.rows())
    external = {**trace.rows()[0], "span_id": "1" * 16, "external": True}
    store.add([external])
    store.flush()
    export.processor().force_flush(10)
    deadline = time.monotonic() + 10
    while not collector.received and time.monotonic() < deadline:
        time.sleep(0.05)
    path, headers, sent = collector.received[0]
    assert path == "/v1/traces" and headers["x-collector-key"] == "s3cret"
    spans = [s for rs in sent.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["chat qwen", "invoke_agent helper"]
    service = {kv.key: kv.value.string_value for kv in sent.resource_spans[0].resource.attributes}
    assert service["service.name"] == "tanglaw"
    chat = next(s for s in spans if s.name == "chat qwen")
    assert chat.trace_id.hex() == trace.trace_id
    assert chat.parent_span_id.hex() == trace.spans[0].span_id
    assert chat.status.code == 2 and chat.status.message == "cannot reach edge"
    attributes = {kv.key: kv.value for kv in chat.attributes}
    assert attributes["error.type"].string_value == "backend_error"
    assert [v.string_value for v in
            attributes["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]


def test_nothing_is_exported_unless_a_collector_is_named(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    export.reset()
    assert export.processor() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    export.reset()
    assert export.processor() is None
    export.reset()
