"""SQLite under load: 50 concurrent writers for 30 s — chat turns, probes, samples and
audit events — never see "database is locked", and nothing is lost."""

import threading
import time

import pytest
from django.db import close_old_connections, connection

from agents.actions import persist_turn
from agents.models import Agent, Conversation, Run
from agents.runtime import TurnState
from console import audit
from console.actions.backends import record_probe
from console.audit import Actor
from console.backends import Report
from console.models import AuditEvent, Backend
from monitoring.collectors import Reading
from monitoring.models import Sample
from monitoring.store import record

pytestmark = pytest.mark.slow
WRITERS = 50
SECONDS = 30


def test_fifty_writers_for_thirty_seconds(live_db, operator_user):
    if connection.vendor != "sqlite":
        pytest.skip("this is about SQLite")
    backend = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:1")
    agent = Agent.objects.create(name="a", backend=backend, model="m")
    conversations = [Conversation.objects.create(owner=operator_user, agent=agent)
                     for _ in range(WRITERS)]
    counts = {"turns": 0, "probes": 0, "samples": 0, "audit": 0}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    actor = Actor(user_id=operator_user.pk, username="oscar", role="operator")

    def writer(i: int) -> None:
        done = {k: 0 for k in counts}
        try:
            n = 0
            while time.monotonic() < deadline:
                kind = n % 4
                n += 1
                if kind == 0:
                    state = TurnState(text=f"reply {i}-{n}", backend_id=backend.pk,
                                      model="m", ttft_ms=12, total_ms=80, tokens_in=5,
                                      tokens_out=7, messages=[{"role": "assistant",
                                                               "content": "ok"}])
                    persist_turn(actor, agent, conversations[i], f"q{n}", state,
                                 started_at=conversations[i].created_at)
                    done["turns"] += 1
                    done["audit"] += 1  # the turn's own event
                elif kind == 1:
                    record_probe(backend, Report("healthy" if n % 8 else "degraded", 3.0))
                    done["probes"] += 1
                elif kind == 2:
                    done["samples"] += record([Reading("cpu_percent", "host", n),
                                               Reading("probe_latency_ms",
                                                       f"backend:{backend.pk}", n)])
                else:
                    audit.record("backend.discovered", actor, after={"writer": i, "n": n})
                    done["audit"] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
            errors.append(f"writer {i}: {type(exc).__name__}: {exc}")
        finally:
            with lock:
                for key, value in done.items():
                    counts[key] += value
            close_old_connections()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    assert errors == []
    assert Run.objects.count() == counts["turns"] > WRITERS
    assert Sample.objects.count() == counts["samples"]
    before = AuditEvent.objects.filter(action__in=["backend.discovered", "agent.turn"]).count()
    assert before == counts["audit"]
    result = audit.verify()
    assert result.ok, result.reason
    print(f"\n{counts} in {SECONDS} s by {WRITERS} writers")
