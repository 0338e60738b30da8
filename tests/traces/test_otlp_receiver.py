"""POST /v1/traces (and /v1/metrics): OTLP/HTTP as the spec and the exporters have it,
protobuf and JSON, gzip; a refused payload stores nothing; spans join their traces in
any order; content kept only where the key allows it."""

from __future__ import annotations

import gzip
import json
import os

import httpx2
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from console.asgi import application
from console.models import ApiToken
from tests.gateway.conftest import make_key, run
from tests.traces.otlp_payloads import as_json, maf_turn, request, span
from traces.models import ExternalAgent, Span, Trace

pytestmark = pytest.mark.usefixtures("live_db")
PB = {"Content-Type": "application/x-protobuf"}


async def _post(path: str, body: bytes, headers: dict[str, str], key: str | None):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=application),
                                  base_url="http://testserver") as client:
        return await client.post(path, content=body, headers={**headers, **auth})


def post(body: bytes, headers=None, key: str | None = None, path: str = "/v1/traces"):
    return run(_post(path, body, PB if headers is None else headers, key))


@pytest.fixture
def key(operator_user):
    return make_key(operator_user, "maf")


def test_a_protobuf_export_is_stored_as_one_trace_with_its_spans(key):
    spans = maf_turn()
    answer = post(request(spans).SerializeToString(), key=key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-protobuf"
    reply = ExportTraceServiceResponse.FromString(answer.content)
    assert not reply.HasField("partial_success")
    trace = Trace.objects.get()
    assert trace.trace_id == spans[0].trace_id.hex()
    assert (trace.name, trace.agent, trace.service) == ("invoke_agent weather", "weather",
                                                         "weather-app")
    assert trace.external and trace.has_root and trace.span_count == 4
    # the model calls' usage adds up; the agent span's own total is not counted twice
    assert (trace.tokens_in, trace.tokens_out, trace.model) == (50, 13, "qwen")
    tool = Span.objects.get(operation="execute_tool")
    assert tool.parent_id == spans[3].span_id.hex()
    assert tool.attributes["gen_ai.tool.name"] == "get_weather"
    assert tool.duration_ms == pytest.approx(5, abs=0.01)
    assert ExternalAgent.objects.get().name == "weather"


def test_json_with_hex_ids_and_unknown_fields_is_accepted(key):
    spans = maf_turn()
    body = json.loads(as_json(request(spans)))
    body["someFutureField"] = {"x": 1}
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["futureSpanField"] = 3
    answer = post(json.dumps(body).encode(), {"Content-Type": "application/json"}, key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {}
    assert Span.objects.filter(trace_id=spans[0].trace_id.hex()).count() == 4


def test_a_gzipped_body_is_inflated(key):
    body = gzip.compress(request(maf_turn()).SerializeToString())
    answer = post(body, {**PB, "Content-Encoding": "gzip"}, key)
    assert answer.status_code == 200 and Span.objects.count() == 4


@pytest.mark.parametrize("body,headers,status,says", [
    (b"\x0a\xff\xff\xff", PB, 400, "protobuf"),  # a truncated length-delimited field
    (b"{not json", {"Content-Type": "application/json"}, 400, "JSON"),
    (b"[1, 2]", {"Content-Type": "application/json"}, 400, "JSON object"),
    (b'{"resourceSpans": 5}', {"Content-Type": "application/json"}, 400, "OTLP"),
    (b"abc", {"Content-Type": "text/plain"}, 415, "Content-Type"),
    (b"abc", {}, 415, "Content-Type"),
    (b"not gzip", {**PB, "Content-Encoding": "gzip"}, 400, "gzip"),
    (b"abc", {**PB, "Content-Encoding": "br"}, 415, "Content-Encoding"),
])
def test_a_bad_payload_is_refused_with_a_status_naming_what_is_wrong(key, body, headers,
                                                                     status, says):
    answer = post(body, headers, key)
    assert answer.status_code == status
    kind = answer.headers["content-type"]
    message = (answer.json()["message"] if kind == "application/json"
               else Status.FromString(answer.content).message)
    assert says in message
    assert Span.objects.count() == 0 and Trace.objects.count() == 0


def test_a_truncated_protobuf_of_a_real_export_stores_nothing(key):
    whole = request(maf_turn()).SerializeToString()
    answer = post(whole[: len(whole) - 7], key=key)
    assert answer.status_code == 400
    assert Span.objects.count() == 0


def test_a_body_over_the_limit_is_413_compressed_or_inflated(key, settings):
    settings.TANGLAW_OTLP_MAX_MB = 1
    answer = post(b"\0" * (2 * 1024 * 1024), key=key)
    assert answer.status_code == 413 and "TANGLAW_OTLP_MAX_MB" in Status.FromString(
        answer.content).message
    bomb = gzip.compress(b"\0" * (3 * 1024 * 1024))  # small on the wire, large inflated
    answer = post(bomb, {**PB, "Content-Encoding": "gzip"}, key)
    assert answer.status_code == 413
    assert Span.objects.count() == 0


def test_twenty_megabytes_are_refused_with_the_default_limit(key):
    answer = post(os.urandom(20 * 1024 * 1024), key=key)
    assert answer.status_code == 413
    assert Span.objects.count() == 0


def test_invalid_spans_are_rejected_and_counted_as_a_partial_success(key):
    good = maf_turn()
    bad = [span(b"\0" * 16, "zero trace id"), span(os.urandom(16), "short span id",
                                                   span_id=b"\1\2")]
    answer = post(request(good + bad).SerializeToString(), key=key)
    assert answer.status_code == 200
    reply = ExportTraceServiceResponse.FromString(answer.content)
    assert reply.partial_success.rejected_spans == 2
    assert "traceId" in reply.partial_success.error_message
    assert "spanId" in reply.partial_success.error_message
    assert Span.objects.count() == 4


def test_spans_arriving_out_of_order_join_their_trace_and_repeats_are_stored_once(key):
    spans = maf_turn()
    children, root = spans[:3], spans[3]
    assert post(request(children[1:]).SerializeToString(), key=key).status_code == 200
    trace = Trace.objects.get()
    assert not trace.has_root and trace.name == "execute_tool get_weather"
    assert post(request([root]).SerializeToString(), key=key).status_code == 200
    assert post(request(children).SerializeToString(), key=key).status_code == 200  # a retry
    trace = Trace.objects.get()
    assert trace.has_root and trace.name == "invoke_agent weather"
    assert trace.span_count == 4 == Span.objects.count()
    assert trace.duration_ms == pytest.approx(75, abs=0.01)


def test_content_is_kept_only_where_the_key_allows_it(key, operator_user):
    post(request(maf_turn(content=True)).SerializeToString(), key=key)
    tool = Span.objects.get(operation="execute_tool")
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    assert tool.attributes["gen_ai.tool.name"] == "get_weather"  # metadata stays
    ApiToken.objects.filter(name="maf").update(log_content=True)
    from gateway import keys

    keys.forget()
    post(request(maf_turn(content=True)).SerializeToString(), key=key)
    kept = Span.objects.filter(operation="execute_tool").exclude(pk=tool.pk).get()
    assert kept.attributes["gen_ai.tool.call.arguments"] == '{"city": "Manila"}'


def test_the_key_must_be_valid_and_allowed_to_send_telemetry(operator_user, viewer_user):
    body = request(maf_turn()).SerializeToString()
    assert post(body).status_code == 401
    assert post(body, key="tgl_not-a-key").status_code == 401
    inference_only = make_key(operator_user, "chat only", scopes=["inference"])
    answer = post(body, key=inference_only)
    assert answer.status_code == 403
    assert "telemetry:write" in Status.FromString(answer.content).message
    assert post(body, key=make_key(operator_user, "otel", scopes=["telemetry:write"])
                ).status_code == 200
    assert post(body, key=make_key(viewer_user, "viewer")).status_code == 403
    assert Span.objects.count() == 4


def test_a_key_past_its_span_rate_gets_429_with_retry_after(key, settings):
    settings.TANGLAW_OTLP_SPANS_PER_S = 3  # a burst of 6
    assert post(request(maf_turn()).SerializeToString(), key=key).status_code == 200
    answer = post(request(maf_turn()).SerializeToString(), key=key)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert Span.objects.count() == 4


def test_only_post_is_allowed():
    answer = run(_get("/v1/traces"))
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"


async def _get(path):
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=application),
                                  base_url="http://testserver") as client:
        return await client.get(path)


def test_metrics_are_checked_and_answered_as_not_kept(key):
    metrics = ExportMetricsServiceRequest()
    rm = metrics.resource_metrics.add()
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = "gen_ai.client.operation.duration", "s"
    point = m.histogram.data_points.add()
    point.count, point.sum = 3, 1.5
    answer = post(metrics.SerializeToString(), key=key, path="/v1/metrics")
    assert answer.status_code == 200
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    reply = ExportMetricsServiceResponse.FromString(answer.content)
    assert reply.partial_success.rejected_data_points == 1
    assert "/v1/traces" in reply.partial_success.error_message
    assert post(b"\x0a\xff", key=key, path="/v1/metrics").status_code == 400


def test_a_body_of_a_few_megabytes_under_the_limit_is_taken(key):
    spans = [span(os.urandom(16), "chat qwen", gen_ai__operation__name="chat",
                  padding="x" * 300) for _ in range(9000)]
    body = request(spans).SerializeToString()
    assert 3 * 1024 * 1024 < len(body) < 8 * 1024 * 1024
    answer = post(body, key=key)
    assert answer.status_code == 200, answer.content[:200]
    assert Span.objects.count() == 9000


def test_deeply_nested_json_is_a_400_not_a_500(key):
    body = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = post(body, {"Content-Type": "application/json"}, key)
    assert answer.status_code == 400 and answer.json()["code"] == 3
