"""An external agent's spans are its traffic: requests, errors (a tool that raised),
latency, tokens and tool calls as samples of `xagent:<id>`, in the performance report,
under an alert rule of its own or of every agent; retention prunes old traces by age
and by count."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import alerts, queries, traffic
from monitoring.models import Alert, AlertRule, Sample
from tests.traces.otlp_payloads import maf_turn
from tests.traces.otlp_payloads import store_export as send
from traces import retention
from traces.models import ExternalAgent, Span, Trace

pytestmark = pytest.mark.django_db


def test_an_external_agents_spans_become_its_samples():
    send(maf_turn())
    send(maf_turn(tool_error="the weather service is down"))
    assert traffic.ingest_spans() == 8
    agent = ExternalAgent.objects.get(name="weather")
    scope = f"xagent:{agent.pk}"
    values = {}
    for metric, value in Sample.objects.filter(scope=scope).values_list("metric", "value"):
        values.setdefault(metric, []).append(value)
    assert values["requests"] == [1.0, 1.0]
    assert sorted(values["errors"]) == [0.0, 1.0]  # the turn whose tool raised
    assert values["tool_calls"] == [1.0, 1.0] and sorted(values["tool_errors"]) == [0.0, 1.0]
    assert values["tokens_in"] == [50.0, 50.0] and values["tokens_out"] == [13.0, 13.0]
    assert values["latency_ms"] == [pytest.approx(75, abs=0.01)] * 2
    assert traffic.ingest_spans() == 0  # incremental
    row = next(r for r in queries.performance(3600) if r["scope"] == scope)
    assert row["name"] == "weather (external)" and row["requests"] == 2
    assert row["error_rate"] == 0.5


def test_an_app_without_agent_spans_is_named_by_its_service():
    trace_id = os.urandom(16)
    from tests.traces.otlp_payloads import span

    send([span(trace_id, "chat qwen", gen_ai__operation__name="chat",
               gen_ai__request__model="qwen", gen_ai__usage__input_tokens=4,
               gen_ai__server__time_to_first_token=0.25)], service="nightly-eval")
    traffic.ingest_spans()
    agent = ExternalAgent.objects.get()
    assert agent.name == "nightly-eval"
    ttft = Sample.objects.get(scope=f"xagent:{agent.pk}", metric="ttft_ms")
    assert ttft.value == pytest.approx(250)
    # an HTTP span of the same app is not an agent of its own
    send([span(os.urandom(16), "GET /health")], service="other-app")
    assert ExternalAgent.objects.count() == 1


def test_an_error_rate_rule_on_the_external_agent_fires_when_its_tool_raises():
    send(maf_turn())
    agent = ExternalAgent.objects.get()
    own = AlertRule.objects.create(name="weather errors", metric="error_rate",
                                   scope=f"xagent:{agent.pk}", comparator=">", threshold=0.2,
                                   window_s=600)
    every = AlertRule.objects.create(name="any agent errors", metric="error_rate",
                                     scope="agents", comparator=">", threshold=0.2,
                                     window_s=600)
    AlertRule.objects.exclude(pk__in=[own.pk, every.pk]).update(enabled=False)
    traffic.ingest_spans()
    alerts.evaluate()
    assert not Alert.objects.exists()
    for _ in range(2):
        send(maf_turn(tool_error="boom"))
    traffic.ingest_spans()
    alerts.evaluate()
    fired = Alert.objects.filter(state="firing").order_by("rule__name")
    assert [(a.rule.name, a.scope) for a in fired] == [
        ("any agent errors", f"xagent:{agent.pk}"), ("weather errors", f"xagent:{agent.pk}")]
    assert "external agent weather" in fired[0].message


def test_a_rule_for_an_unknown_external_agent_is_refused(operator_client):
    answer = operator_client.post("/api/alert-rules", data={
        "name": "x", "metric": "error_rate", "scope": "xagent:999", "threshold": 0.1},
        content_type="application/json")
    assert answer.status_code == 422 and "external agent" in answer.json()["errors"]["scope"][0]


def test_retention_prunes_by_age_and_by_count(settings):
    for _ in range(3):
        send(maf_turn())
    oldest = Trace.objects.order_by("started_at").first()
    Trace.objects.filter(pk=oldest.pk).update(started_at=timezone.now() - timedelta(days=15))
    pruned = retention.prune()
    assert pruned["traces"] == 1 and pruned["spans"] == 4
    assert not Span.objects.filter(trace_id=oldest.trace_id).exists()
    settings.TANGLAW_TRACE_MAX_SPANS = 5  # two traces of four spans: the older goes
    assert retention.prune()["traces"] == 1
    assert Trace.objects.count() == 1 and Span.objects.count() == 4
    ExternalAgent.objects.update(last_seen=timezone.now() - timedelta(days=20))
    assert retention.prune()["external_agents"] == 1


def test_an_external_agent_that_fails_often_gets_a_recommendation():
    from monitoring import advisor
    from monitoring.models import Recommendation

    for n in range(10):
        send(maf_turn(tool_error="boom" if n % 2 else ""))
    traffic.ingest_spans()
    advisor.run()
    agent = ExternalAgent.objects.get()
    rec = Recommendation.objects.get(rule="agent_failing")
    assert rec.scope == f"xagent:{agent.pk}" and rec.title == "weather fails 50% of its runs"
    assert "5 of its tool calls raised" in rec.action
    assert rec.evidence[0]["metric"] == "error_rate"


def test_the_traces_api_is_in_the_openapi_document_and_the_admin_only_browses(admin_client):
    paths = admin_client.get("/api/openapi.json").json()["paths"]
    assert {"/api/traces", "/api/traces/{trace_id}", "/api/external-agents"} <= set(paths)
    send(maf_turn())
    trace = Trace.objects.get()
    assert admin_client.get("/admin/traces/trace/").status_code == 200
    page = admin_client.get(f"/admin/traces/trace/{trace.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.get("/admin/traces/span/add/").status_code == 403


def test_the_traces_api_filters_and_refuses_bad_filters(viewer_client):
    send(maf_turn())
    send(maf_turn(agent="other", tool_error="boom"))
    items = viewer_client.get("/api/traces?agent=other").json()["items"]
    assert [t["agent"] for t in items] == ["other"] and items[0]["status"] == "error"
    assert len(viewer_client.get("/api/traces?status=error&external=true").json()["items"]) == 1
    assert viewer_client.get("/api/traces?min_ms=1000").json()["items"] == []
    for bad in ("status=broken", "min_ms=slow", "since=yesterday", "external=maybe",
                "cursor=nope", "limit=0"):
        answer = viewer_client.get(f"/api/traces?{bad}")
        assert answer.status_code == 422, bad
        assert bad.split("=")[0] in answer.json()["errors"], answer.json()
    page = viewer_client.get("/api/traces?limit=1").json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = viewer_client.get(f"/api/traces?limit=1&cursor={page['next_cursor']}").json()
    assert rest["items"][0]["trace_id"] != page["items"][0]["trace_id"]
    assert rest["next_cursor"] is None
    detail = viewer_client.get(f"/api/traces/{items[0]['trace_id']}").json()
    assert [s["name"] for s in detail["spans"]][0] == "invoke_agent other"
    tool = next(s for s in detail["spans"] if s["operation"] == "execute_tool")
    assert tool["status"] == "error" and tool["parent_id"] == detail["spans"][0]["span_id"]
    assert viewer_client.get("/api/traces/" + "f" * 32).status_code == 404
