"""Spans of the same traces written by four writers at once on real PostgreSQL: every
span stored once and every trace's summary adds up (no lost count, no deadlock)."""

import json

import pytest

from tests.support.postgres_console import postgres_manage

pytestmark = pytest.mark.postgres

SCRIPT = r'''
import json, os, random, threading, time
from django.db import connection
from traces import store
from traces.models import Span, Trace

random.seed(5)
traces = [os.urandom(16).hex() for _ in range(20)]
rows = []
now = time.time_ns()
for t in traces:
    root = os.urandom(8).hex()
    rows.append({"trace_id": t, "span_id": root, "parent_id": "", "name": "invoke_agent a",
                 "kind": "internal", "start_ns": now, "end_ns": now + 10**9, "status": "unset",
                 "service": "s", "attributes": {"gen_ai.agent.name": "a",
                 "gen_ai.operation.name": "invoke_agent"}, "external": True})
    for i in range(9):
        rows.append({"trace_id": t, "span_id": os.urandom(8).hex(), "parent_id": root,
                     "name": "chat m", "kind": "client", "start_ns": now + i,
                     "end_ns": now + i + 10, "status": "error" if i == 0 else "unset",
                     "service": "s", "attributes": {"gen_ai.operation.name": "chat",
                     "gen_ai.usage.output_tokens": 2}, "external": True})
random.shuffle(rows)
parts = [rows[n::4] for n in range(4)]
errors = []

def writer(part):
    try:
        for i in range(0, len(part), 7):
            store._write(part[i:i + 7])
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=writer, args=(p,)) for p in parts]
[t.start() for t in threads]
[t.join() for t in threads]
summary = [(t.span_count, t.tokens_out, t.error_count, t.has_root, t.name)
           for t in Trace.objects.order_by("trace_id")]
print("RESULT" + json.dumps({"errors": errors, "spans": Span.objects.count(),
                             "traces": Trace.objects.count(), "summary": summary}))
'''


def test_concurrent_writers_on_postgresql(tmp_path):
    with postgres_manage(tmp_path) as manage:
        result = json.loads(manage("shell", "-c", SCRIPT).split("RESULT", 1)[1])
    assert result["errors"] == []
    assert result["spans"] == 200 and result["traces"] == 20
    assert all(s == [10, 18, 1, True, "invoke_agent a"] for s in result["summary"]), \
        result["summary"]
