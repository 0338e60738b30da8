"""The audit log on real PostgreSQL: the trigger refuses changes, concurrent appends never fork."""

import json

import pytest

from tests.support.postgres_console import postgres_manage

pytestmark = pytest.mark.postgres  # a real server: part of the slow suite

SCRIPT = r'''
import json, threading
from django.db import DatabaseError, connection, transaction
from console import audit
from console.audit import Actor
from console.models import AuditEvent

def writer(n):
    for i in range(25):
        audit.record("backend.discovered", Actor.system(f"w{n}"), after={"i": i})
    connection.close()

threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
result = {"verify": audit.verify().__dict__}
for name, statement in [("update", "UPDATE console_auditevent SET detail = 'x'"),
                        ("delete", "DELETE FROM console_auditevent WHERE seq = 1"),
                        ("truncate", "TRUNCATE console_auditevent")]:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
        result[name] = "allowed"
    except DatabaseError as exc:
        result[name] = str(exc).splitlines()[0]
from agents.knowledge import add_document, search
add_document(Actor.system(), "Ops manual", "Restart the llama server with the metrics flag.")
add_document(Actor.system(), "Lunch", "Noodles on Friday.")
result["search"] = [(h.title, [h.excerpt[a:b] for a, b in h.highlights])
                    for h in search("restarting llama")]
result["count"] = AuditEvent.objects.count()
result["seqs_unique"] = AuditEvent.objects.values("seq").distinct().count()
print("RESULT" + json.dumps(result))
'''


def test_audit_on_postgresql(tmp_path):
    with postgres_manage(tmp_path) as manage:
        out = manage("shell", "-c", SCRIPT)
        result = json.loads(out.split("RESULT", 1)[1])
        assert result["verify"]["ok"] is True and result["verify"]["checked"] == 100
        assert result["count"] == result["seqs_unique"] == 102  # + two knowledge.added
        assert [title for title, _ in result["search"]] == ["Ops manual"]
        # ts_headline marks the matches (as spans of the plain excerpt, no <b> in it)
        assert {w.lower() for w in result["search"][0][1]} >= {"restart", "llama"}
        for name in ("update", "delete", "truncate"):
            assert "append-only" in result[name], result
        assert "OK: 102 events checked" in manage("verify_audit")
