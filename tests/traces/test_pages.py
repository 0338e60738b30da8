"""The trace pages: the list (filters, errors on their fields, keyset pages, a constant
number of queries), one trace as a waterfall (nesting, labels, content only where it was
kept), an external agent's page, and the links to traces from the agents list, the
playground, the audit log, gateway usage and alerts."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pytest
from django.utils import timezone

from agents.models import Agent, Conversation, Message, Run
from console.audit import record
from console.choices import AuditAction
from console.models import Backend
from gateway.models import Request
from monitoring.models import Alert, AlertRule
from traces import store
from traces.models import ExternalAgent, Trace

NOW_NS = time.time_ns()


def span(trace_id: str, name: str, start_ms: float, ms: float, *, parent: str = "",
         span_id: str | None = None, error: str = "", external: bool = False,
         service: str = "tanglaw", events: list[dict[str, Any]] | None = None,
         **attributes: Any) -> dict[str, Any]:
    """A span row as traces.recorder.Recorder.rows() (or the OTLP decoder) makes it;
    `start_ms` counts from a minute ago."""
    start = NOW_NS - 60_000_000_000 + int(start_ms * 1e6)
    return {"trace_id": trace_id, "span_id": span_id or os.urandom(8).hex(),
            "parent_id": parent, "name": name, "kind": "internal", "start_ns": start,
            "end_ns": start + int(ms * 1e6), "status": "error" if error else "unset",
            "status_message": error, "service": service,
            "scope": "agent_framework" if external else "tanglaw",
            "attributes": {k.replace("__", "."): v for k, v in attributes.items()},
            "events": events or [], "resource": {"service.name": service}, "links": [],
            "external": external}


def turn(*, content: bool = False, agent: str = "helper", start_ms: float = 0,
         **root: Any) -> list[dict[str, Any]]:
    """A turn of Tanglaw's own: routed, its first model down, a fallback, an escalation
    offered a tool, the tool called after an approval, the answer."""
    tid, root_id, tool_id = os.urandom(16).hex(), os.urandom(8).hex(), os.urandom(8).hex()
    s = start_ms
    kept = {"gen_ai__tool__call__arguments": '{"expression": "2+2"}',
            "gen_ai__tool__call__result": '{"value": 4}'} if content else {}
    messages = {"gen_ai__input__messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "what is 2+2?"}]}])} \
        if content else {}
    return [
        span(tid, f"invoke_agent {agent}", s, 900, span_id=root_id,
             gen_ai__operation__name="invoke_agent", gen_ai__agent__name=agent, **root),
        span(tid, "route", s + 5, 50, parent=root_id, tanglaw__router=True,
             tanglaw__route__reason="keywords: math"),
        span(tid, "chat qwen-primary", s + 60, 100, parent=root_id,
             error="connection refused by edge-primary", gen_ai__operation__name="chat",
             gen_ai__request__model="qwen-primary", error__type="connect_error",
             events=[{"name": "exception", "time_ns": NOW_NS - 59_850_000_000,
                      "attributes": {"exception.type": "ConnectError",
                                     "exception.message": "All connection attempts failed"}}]),
        span(tid, "chat qwen-spare", s + 160, 140, parent=root_id, tanglaw__fallback=True,
             gen_ai__operation__name="chat", gen_ai__request__model="qwen-spare",
             gen_ai__usage__input_tokens=20, gen_ai__usage__output_tokens=0,
             error="first token deadline passed"),
        span(tid, "chat gpt-cloud", s + 300, 200, parent=root_id, tanglaw__escalation=True,
             gen_ai__operation__name="chat", gen_ai__request__model="gpt-cloud",
             gen_ai__usage__input_tokens=30, gen_ai__usage__output_tokens=7,
             tanglaw__ttft_ms=123.4, gen_ai__tool__definitions=json.dumps([
                 {"type": "function", "name": "calculator",
                  "description": "Evaluate an arithmetic expression"}]), **messages),
        span(tid, "execute_tool calculator", s + 500, 200, parent=root_id, span_id=tool_id,
             gen_ai__operation__name="execute_tool", gen_ai__tool__name="calculator",
             gen_ai__tool__call__id="call_42", **kept),
        span(tid, "await_approval calculator", s + 510, 180, parent=tool_id,
             tanglaw__approved_by="oscar"),
        span(tid, "chat gpt-cloud", s + 700, 180, parent=root_id,
             gen_ai__operation__name="chat", gen_ai__request__model="gpt-cloud",
             gen_ai__usage__input_tokens=40, gen_ai__usage__output_tokens=5),
    ]


def external_turn(agent: str = "weather", start_ms: float = 0, error: str = ""):
    tid, root_id = os.urandom(16).hex(), os.urandom(8).hex()
    return [
        span(tid, f"invoke_agent {agent}", start_ms, 75, span_id=root_id, external=True,
             service="weather-app", gen_ai__operation__name="invoke_agent",
             gen_ai__agent__name=agent),
        span(tid, "chat qwen", start_ms + 1, 25, parent=root_id, external=True,
             service="weather-app", error=error, gen_ai__operation__name="chat",
             gen_ai__request__model="qwen", gen_ai__usage__input_tokens=20,
             gen_ai__usage__output_tokens=5),
    ]


def save(*turns: list[dict[str, Any]]) -> list[str]:
    for rows in turns:
        store.add(rows)
    store.flush()
    return [rows[0]["trace_id"] for rows in turns]


def html(response) -> str:
    return response.content.decode()


# -- the list ----------------------------------------------------------------------------


def test_the_list_shows_traces_newest_first_with_their_facts(viewer_client):
    own, outside = save(turn(), external_turn(start_ms=5000))
    response = viewer_client.get("/traces/")
    assert response.status_code == 200
    page = html(response)
    assert page.index(f"trace-{outside}") < page.index(f"trace-{own}")  # newest first
    row = re.search(rf'<tr id="trace-{own}".*?</tr>', page, re.S).group(0)
    assert f'href="/traces/{own}/"' in row and "invoke_agent helper" in row
    assert "<code>qwen-primary</code>" in row  # the first model it called
    assert "badge-bad" in row and "(2 failed)" in row and "trace-error" in row
    assert "90 / 12" in row  # the model calls' tokens added up
    assert "900 ms" in row and 'class="num">8 <small' in row
    assert "external" not in row
    other = re.search(rf'<tr id="trace-{outside}".*?</tr>', page, re.S).group(0)
    assert 'badge-external">external' in other and "weather-app" in other
    assert "badge-muted" in other  # no span said ok or error: unset


def test_the_filters_pick_external_status_and_agent(viewer_client):
    own, outside, failed = save(turn(), external_turn(), external_turn("radar",
                                                                       error="boom"))
    def listed(**params) -> set[str]:
        response = viewer_client.get("/traces/", params)
        assert response.status_code == 200
        return {t for t in (own, outside, failed) if f"trace-{t}" in html(response)}

    assert listed() == {own, outside, failed}
    assert listed(external="yes") == {outside, failed}
    assert listed(external="no") == {own}
    assert listed(status="error") == {own, failed}
    assert listed(agent="weather") == {outside}
    assert listed(agent="radar", status="error") == {failed}
    assert listed(model="qwen-primary") == {own}
    assert listed(min_ms="500") == {own}
    assert listed(since="15m") == {own, outside, failed}
    old = Trace.objects.get(trace_id=own)
    old.started_at -= timezone.timedelta(hours=2)
    old.save(update_fields=["started_at"])
    assert listed(since="1h") == {outside, failed}
    start = timezone.localtime(old.started_at - timezone.timedelta(minutes=1))
    end = timezone.localtime(old.started_at + timezone.timedelta(minutes=1))
    assert listed(since="custom", **{"from": start.strftime("%Y-%m-%dT%H:%M:%S"),
                                     "until": end.strftime("%Y-%m-%dT%H:%M:%S")}) == {own}
    page = html(viewer_client.get("/traces/", {"agent": "nobody"}))
    assert "No traces match these filters" in page


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"min_ms": "slow"}, "min_ms", "A number of milliseconds."),
    ({"since": "yesterday"}, "since", "Give an ISO 8601 time"),
    ({"since": "custom", "from": "not a time"}, "from", "Give an ISO 8601 time"),
    ({"status": "broken"}, "status", "One of unset, ok, error."),
    ({"external": "maybe"}, "external", "true or false."),
])
def test_a_bad_filter_is_a_400_that_names_its_field(viewer_client, params, field, message):
    save(turn())
    response = viewer_client.get("/traces/", params)
    assert response.status_code == 400
    page = html(response)
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', page)
    assert f'<small id="{field}-error">{message}' in page
    assert "<tr id=" not in page


def test_a_bad_cursor_is_a_400_and_the_form_stays(viewer_client):
    response = viewer_client.get("/traces/", {"cursor": "nonsense"})
    assert response.status_code == 400
    assert "<code>cursor</code>: Use the next_cursor" in html(response)


def test_older_pages_follow_the_keyset_and_keep_the_filters(viewer_client):
    save(*[external_turn(start_ms=i * 100) for i in range(55)], turn())
    first = viewer_client.get("/traces/", {"external": "yes"})
    page = html(first)
    assert page.count("<tr id=") == 50
    older = re.search(r'href="(\?[^"]*cursor=[^"]+)"', page).group(1).replace("&amp;", "&")
    assert "external=yes" in older
    second = viewer_client.get("/traces/" + older)
    rest = html(second)
    assert rest.count("<tr id=") == 5 and "Older →" not in rest and "← Newest" in rest
    shown = set(re.findall(r'<tr id="trace-(\w+)"', page + rest))
    assert shown == set(Trace.objects.filter(external=True).values_list("trace_id", flat=True))
    partial = viewer_client.get("/traces/" + older, HTTP_HX_REQUEST="true")
    assert "<html" not in html(partial) and html(partial).count("<tr id=") == 5


def test_the_list_costs_the_same_queries_for_one_trace_or_many(viewer_client,
                                                             django_assert_num_queries):
    save(turn())
    # session, user, the page of traces, the agents' and the external agents' names
    with django_assert_num_queries(5):
        assert viewer_client.get("/traces/").status_code == 200
    save(*[external_turn(f"agent-{i}", start_ms=i) for i in range(30)])
    with django_assert_num_queries(5):
        page = html(viewer_client.get("/traces/"))
    assert page.count("<tr id=") == 31


def test_an_empty_list_says_how_traces_get_here(viewer_client):
    page = html(viewer_client.get("/traces/"))
    assert "No traces yet" in page and 'href="/playground/"' in page
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://testserver/v1/traces" in page


def test_signed_out_visitors_go_to_sign_in(client):
    response = client.get("/traces/")
    assert response.status_code == 302 and "/login/" in response["Location"]


# -- one trace ---------------------------------------------------------------------------


def steps(page: str) -> list[tuple[int, str, str]]:
    """(depth, name, classes) of each waterfall row, in order."""
    return [(int(depth), name, classes) for classes, depth, name in re.findall(
        r'<li class="(step depth-(\d)[^"]*)".*?<span class="step-title wrap-any">([^<]+)</span>',
        page, re.S)]


def test_a_trace_is_a_waterfall_of_its_nested_steps_with_their_labels(viewer_client):
    (tid,) = save(turn())
    response = viewer_client.get(f"/traces/{tid}/")
    assert response.status_code == 200
    page = html(response)
    shown = steps(page)
    assert [(d, n) for d, n, _ in shown] == [
        (0, "invoke_agent helper"), (1, "route"), (1, "chat qwen-primary"),
        (1, "chat qwen-spare"), (1, "chat gpt-cloud"), (1, "execute_tool calculator"),
        (2, "await_approval calculator"), (1, "chat gpt-cloud")]
    classes = {n: c for _, n, c in shown}
    assert "step-router" in classes["route"]
    assert "step-error" in classes["chat qwen-primary"]
    assert "step-fallback" in classes["chat qwen-spare"]
    assert "step-approval" in classes["await_approval calculator"]
    assert 'badge-escalation">escalation' in page and 'badge-fallback">fallback' in page
    assert "connection refused by edge-primary" in page  # the error, in the row
    assert "ConnectError: All connection attempts failed" in page  # its exception event
    assert "TTFT 123 ms" in page and "30 in / 7 out" in page
    # bars placed by SVG attributes, and no inline style anywhere (the CSP)
    assert '<rect x="0.000%" y="15%" width="100.000%"' in page
    assert '<rect x="55.556%" y="15%" width="22.222%"' in page  # the tool: 500–700 of 900
    assert "style=" not in page
    assert "<code>calculator</code> <small class=\"muted\">Evaluate an arithmetic" in page
    assert "90 / 12" in page and "<dd>8 <span" in page and "<dd>900 ms</dd>" in page


def test_tool_arguments_and_messages_show_only_where_they_were_kept(viewer_client):
    bare, kept = save(turn(), turn(content=True))
    page = html(viewer_client.get(f"/traces/{bare}/"))
    assert "Arguments</h4>" not in page and "Input messages" not in page
    assert "<code>call_42</code>" in page
    assert page.count("Content not kept: a pass-through request&#x27;s text goes only to its "
                      "audit event") == 5
    full = html(viewer_client.get(f"/traces/{kept}/"))
    assert "Arguments</h4>" in full and "&quot;expression&quot;: &quot;2+2&quot;" in full
    assert "Result</h4>" in full and "&quot;value&quot;: 4" in full
    assert "Input messages</h3>" in full and "what is 2+2?" in full
    assert full.count("Content not kept") == 3  # the model calls without messages


def test_a_trace_links_its_conversation_request_and_audit_events(admin_client, admin_user):
    backend = Backend.objects.create(name="edge", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    agent = Agent.objects.create(name="helper", backend=backend, model="qwen")
    conversation = Conversation.objects.create(owner=admin_user, agent=agent)
    (tid,) = save(turn(tanglaw__agent__id=agent.pk, tanglaw__conversation__id=conversation.pk,
                       tanglaw__request__id="req-77"))
    page = html(admin_client.get(f"/traces/{tid}/"))
    assert f'href="/agents/{agent.pk}/">helper</a>' in page
    assert f'href="/playground/?c={conversation.pk}">Conversation</a>' in page
    assert 'href="/gateway/usage/?request=req-77">Gateway request</a>' in page
    audit = re.search(r'href="(/audit/\?[^"]+)">Audit log', page).group(1)
    assert f"target=agents.conversation%3A{conversation.pk}" in audit and "since=" in audit
    assert "Content not kept: enable content logging on the agent." in page


def test_an_unknown_trace_is_a_404_page(viewer_client):
    response = viewer_client.get(f"/traces/{'0' * 32}/")
    assert response.status_code == 404
    assert "Trace not found" in html(response) and 'href="/traces/"' in html(response)


def test_an_external_trace_links_its_agent_page(viewer_client):
    (tid,) = save(external_turn())
    agent = ExternalAgent.objects.get(name="weather")
    page = html(viewer_client.get(f"/traces/{tid}/"))
    assert f'href="/agents/external/{agent.pk}/">weather</a>' in page
    assert "enable content logging on the key that sends these spans" in page


# -- an external agent --------------------------------------------------------------------


def test_an_external_agent_page_charts_it_and_lists_its_recent_traces(operator_client,
                                                                     viewer_client):
    save(*[external_turn(start_ms=i) for i in range(22)], external_turn("radar"))
    agent = ExternalAgent.objects.get(name="weather")
    response = operator_client.get(f"/agents/external/{agent.pk}/")
    assert response.status_code == 200
    page = html(response)
    assert "weather-app" in page and "last seen" in page
    for metric in ("requests", "error_rate", "latency_ms", "ttft_ms", "tokens_in",
                   "tokens_out", "tool_calls"):
        assert f'data-metric="{metric}" data-scope="xagent:{agent.pk}"' in page
    assert 'data-set-window="24h"' in page
    assert page.count("<tr id=") == 20  # the recent ones; radar's is not among them
    assert 'href="/traces/?agent=weather">All traces' in page
    alert = re.search(r'href="(/alerts/\?[^"]+)">Alert on this agent', page).group(1)
    assert f"scope=xagent%3A{agent.pk}" in alert and "metric=error_rate" in alert
    assert "name=weather+errors" in alert
    prefilled = html(operator_client.get(alert.replace("&amp;", "&").split("#")[0]))
    assert f'name="scope" value="xagent:{agent.pk}"' in prefilled
    assert "Alert on this agent" not in html(viewer_client.get(f"/agents/external/{agent.pk}/"))
    assert viewer_client.get("/agents/external/999999/").status_code == 404


# -- links from elsewhere -----------------------------------------------------------------


def test_the_agents_list_shows_external_agents(viewer_client):
    page = html(viewer_client.get("/agents/"))
    assert "No external agents yet" in page and "http://testserver/v1/traces" in page
    save(external_turn())
    agent = ExternalAgent.objects.get()
    page = html(viewer_client.get("/agents/"))
    assert f'<a href="/agents/external/{agent.pk}/">weather</a>' in page
    assert 'badge-external">external' in page and "weather-app" in page and " ago" in page


def test_the_nav_links_the_traces(viewer_client):
    assert 'href="/traces/" aria-current="page">Traces' in html(viewer_client.get("/traces/"))


def test_the_playground_links_a_turn_to_its_trace(operator_client, operator_user):
    backend = Backend.objects.create(name="edge", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    agent = Agent.objects.create(name="helper", backend=backend, model="qwen")
    conversation = Conversation.objects.create(owner=operator_user, agent=agent)
    Message.objects.create(conversation=conversation, role="user", content="hi")
    run = Run.objects.create(conversation=conversation, agent=agent, model="qwen",
                             started_at=timezone.now(), outcome="success",
                             trace_id="ab" * 16)
    Message.objects.create(conversation=conversation, run=run, role="assistant",
                           content="hello")
    page = html(operator_client.get(f"/playground/?c={conversation.pk}"))
    assert f'<a href="/traces/{"ab" * 16}/">Trace</a>' in page


def test_the_audit_log_links_a_turn_to_its_trace(viewer_client, actor):
    record(AuditAction.AGENT_TURN, actor, target_type="agents.conversation", target_id=3,
           after={"agent": "helper", "trace_id": "cd" * 16})
    record(AuditAction.AGENT_TURN, actor, target_type="agents.conversation", target_id=4,
           after={"agent": "helper"})
    page = html(viewer_client.get("/audit/"))
    assert page.count('">trace</a>') == 1
    assert f'<a href="/traces/{"cd" * 16}/">trace</a>' in page


def test_the_usage_page_finds_a_request_and_links_its_trace(operator_client, viewer_client):
    Request.objects.create(request_id="req-77", endpoint="chat.completions", model="fast",
                           status=200, total_ms=420, tokens_in=20, tokens_out=5,
                           trace_id="ef" * 16)
    Request.objects.create(request_id="req-78", endpoint="chat.completions", model="fast",
                           status=502, error_code="upstream", error="backend down")
    page = html(operator_client.get("/gateway/usage/", {"request": "req-77"}))
    assert f'<a href="/traces/{"ef" * 16}/">trace</a>' in page and "420 ms" in page
    failed = html(operator_client.get("/gateway/usage/", {"request": "req-78"}))
    assert "upstream: backend down" in failed and "badge-red" in failed
    assert ">trace</a>" not in failed
    # a viewer sees the requests of their own keys only
    assert "No request <code>req-77</code>" in html(
        viewer_client.get("/gateway/usage/", {"request": "req-77"}))


def test_an_agents_alert_links_its_traces(viewer_client, operator_user):
    backend = Backend.objects.create(name="edge", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    agent = Agent.objects.create(name="helper", backend=backend, model="qwen")
    rule = AlertRule.objects.create(name="slow", metric="latency_ms", scope="agents",
                                    comparator=">", threshold=100)
    now = timezone.now()
    Alert.objects.create(rule=rule, scope=f"agent:{agent.pk}", state="firing", value=300,
                         threshold=100, pending_since=now, started_at=now,
                         message="latency_ms of agent helper is 300")
    Alert.objects.create(rule=rule, scope="host", state="firing", value=300, threshold=100,
                         pending_since=now, started_at=now, message="host")
    page = html(viewer_client.get("/alerts/"))
    assert page.count('">traces</a>') == 1
    assert f'href="/traces/?scope=agent%3A{agent.pk}">traces</a>' in page
    own, _ = save(turn(), external_turn())
    listed = viewer_client.get("/traces/", {"scope": f"agent:{agent.pk}"})
    assert listed.status_code == 200 and f"trace-{own}" in html(listed)
    assert html(listed).count("<tr id=") == 1 and 'value="helper"' in html(listed)
    gone = viewer_client.get("/traces/", {"scope": "agent:999999"})
    assert gone.status_code == 400 and "There is no agent agent:999999" in html(gone)


def test_the_json_link_and_the_page_agree(viewer_client):
    (tid,) = save(turn())
    spans = viewer_client.get(f"/api/traces/{tid}").json()["spans"]
    page = html(viewer_client.get(f"/traces/{tid}/"))
    assert len(steps(page)) == len(spans) == 8
    assert f'href="/api/traces/{tid}">JSON</a>' in page
