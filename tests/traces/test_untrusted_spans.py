"""What a sender writes is untrusted: odd numbers, NUL characters, times past 2262,
secrets and claims about Tanglaw's own rows are kept harmless, and one span the
database would refuse never holds up the others; a trace seen from both sides counts
its tokens and names its agent once."""

from __future__ import annotations

import math
import os
import time

import pytest

from monitoring import traffic
from monitoring.models import Sample
from tests.traces.otlp_payloads import maf_turn, span
from tests.traces.otlp_payloads import store_export as send
from traces import store
from traces.models import ExternalAgent, Span, Trace

pytestmark = pytest.mark.django_db


def test_odd_values_are_kept_harmless_and_the_rest_of_the_batch_is_stored():
    trace_id = os.urandom(16)
    odd = span(trace_id, "chat\x00 qwen", gen_ai__operation__name="chat",
               gen_ai__usage__input_tokens=2**40, gen_ai__usage__output_tokens=-5,
               gen_ai__request__model="q\x00wen", weird=math.nan, far=math.inf,
               note="a\x00b")
    late = span(trace_id, "from the future")
    late.end_time_unix_nano = 2**63 + 5
    decoded = send([odd, late, *maf_turn()])
    assert decoded.rejected == 1 and "out of range" in decoded.reasons[0]
    stored = Span.objects.get(trace_id=trace_id.hex())
    assert stored.name == "chat qwen" and stored.model == "qwen"
    assert stored.tokens_in == 2**31 - 1 and stored.tokens_out == 0
    assert stored.attributes["weird"] == "nan" and stored.attributes["far"] == "inf"
    assert stored.attributes["note"] == "ab"
    assert Span.objects.count() == 5


def test_a_span_the_database_refuses_is_dropped_alone(monkeypatch):
    real = store._write_batch

    def picky(batch):
        if any(r["name"] == "poison" for r in batch):
            raise ValueError("refused")
        real(batch)

    monkeypatch.setattr(store, "_write_batch", picky)
    rows = send([span(os.urandom(16), "poison"), *maf_turn()])
    assert rows.rejected == 0
    assert Span.objects.count() == 4 and not Span.objects.filter(name="poison").exists()
    assert store.backlog() == 0


def test_secrets_in_attributes_and_messages_are_masked():
    trace_id = os.urandom(16)
    send([span(trace_id, "POST /v1/chat", error="upstream said: Bearer tgl_abcdefghijkl",
               http__request__header__authorization="Bearer sk-live-123456789",
               db__password="hunter22", url__full="http://x/v1?api_key=s3cr3t&a=1",
               gen_ai__usage__input_tokens=3)])
    stored = Span.objects.get()
    a = stored.attributes
    assert a["http.request.header.authorization"] == "********"
    assert a["db.password"] == "********"
    assert "s3cr3t" not in a["url.full"] and a["gen_ai.usage.input_tokens"] == 3
    assert "tgl_abcdefghijkl" not in stored.status_message


def test_a_sender_cannot_attach_its_trace_to_tanglaws_rows():
    trace_id = os.urandom(16)
    send([span(trace_id, "invoke_agent x", gen_ai__operation__name="invoke_agent",
               gen_ai__agent__name="x", tanglaw__conversation__id=1,
               tanglaw__agent__id=1, tanglaw__request__id="someone-elses")])
    trace = Trace.objects.get()
    assert trace.conversation_id is None and trace.agent_id is None and trace.request_id == ""


def test_one_model_call_seen_from_both_sides_counts_once_and_the_callers_agent_names_it():
    trace_id = os.urandom(16)
    ours = [{"trace_id": trace_id.hex(), "span_id": "1" * 16, "parent_id": "2" * 16,
             "name": "invoke_agent helper", "kind": "internal", "start_ns": time.time_ns(),
             "end_ns": time.time_ns() + 10, "status": "error", "service": "tanglaw",
             "attributes": {"gen_ai.operation.name": "invoke_agent",
                            "gen_ai.agent.name": "helper", "tanglaw.agent.id": 7},
             "external": False},
            {"trace_id": trace_id.hex(), "span_id": "3" * 16, "parent_id": "1" * 16,
             "name": "chat qwen", "kind": "client", "start_ns": time.time_ns(),
             "end_ns": time.time_ns() + 10, "status": "error", "service": "tanglaw",
             "attributes": {"gen_ai.operation.name": "chat",
                            "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 13},
             "external": False}]
    store.add(ours)  # Tanglaw's side first (a failed attempt among them)
    store.flush()
    send(maf_turn(trace_id))  # then the caller's, with the same call's usage
    trace = Trace.objects.get()
    assert trace.agent == "weather" and trace.agent_id == 7
    assert (trace.tokens_in, trace.tokens_out) == (50, 13)
    assert trace.usage == {"own": [50, 13], "external": [50, 13]}
    # Tanglaw's failed attempt is not the caller's failure
    traffic.ingest_spans()
    agent = ExternalAgent.objects.get(name="weather")
    errors = Sample.objects.get(scope=f"xagent:{agent.pk}", metric="errors")
    assert errors.value == 0.0


def test_a_step_that_arrives_before_its_agent_waits_for_it():
    spans = maf_turn()
    children, root = spans[:3], spans[3]
    send(children)
    assert traffic.ingest_spans() == 0  # held: nothing names the agent yet
    send([root])
    assert traffic.ingest_spans() == 4
    agent = ExternalAgent.objects.get()
    assert Sample.objects.filter(scope=f"xagent:{agent.pk}", metric="tool_calls").count() == 1


def test_a_step_whose_agent_never_comes_is_let_go():
    from datetime import timedelta

    from django.utils import timezone

    send(maf_turn()[:3])
    later = timezone.now() + timedelta(seconds=traffic.HOLD_S + 1)
    assert traffic.ingest_spans(later) == 3
    assert not Sample.objects.exists()
