"""Recommendations that act: per rule suggest (the dry run: what it would have done, when,
why) or apply automatically (through the same apply as the button, audited with the
evidence), a rate limit and a per-scope cooldown; the managed-engine rules (restart a
failed engine, stop an idle one when memory is tight, start it when traffic returns);
the API and the page."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from console.audit import Actor
from console.choices import AuditAction
from console.models import AuditEvent, Backend
from engines.choices import Desired, EngineState
from engines.models import ManagedEngine
from monitoring import advisor, automation
from monitoring.choices import AutoOutcome
from monitoring.models import AutoAction, Recommendation, Sample
from monitoring.worker import Monitor

pytestmark = pytest.mark.django_db
OPERATOR = Actor(username="oscar", role="operator")


def add(metric, scope, values, every_s=20):
    now = timezone.now()
    Sample.objects.bulk_create([
        Sample(ts=now - timedelta(seconds=i * every_s), metric=metric, scope=scope, value=v)
        for i, v in enumerate(values)])


def engine(name="edge-llama", port=18300, **fields) -> ManagedEngine:
    defaults = {"kind": "llamacpp", "command": "/usr/bin/llama-server",
                "model_path": "/models/m.gguf", "port": port}
    return ManagedEngine.objects.create(name=name, **{**defaults, **fields})


def failed(name="edge-llama", port=18300) -> ManagedEngine:
    return engine(name, port, state=EngineState.FAILED, desired=Desired.STOPPED,
                  state_reason="exited with code 1: error: failed to load model",
                  last_exit_code=1)


@pytest.fixture(autouse=True)
def allowed(settings):
    settings.TANGLAW_ENGINE_COMMANDS = ["/usr/bin/llama-server"]


def round_():
    advisor.run()
    return automation.run()


def test_by_default_it_only_says_what_it_would_have_done(settings):
    broken = failed()
    assert round_() == {"would_do": 1}
    rec = Recommendation.objects.get(rule="engine_failed")
    assert rec.apply == {"kind": "restart_engine", "engine_id": broken.pk}
    dry = AutoAction.objects.get()
    assert (dry.outcome, dry.rule, dry.recommendation_id) == (AutoOutcome.WOULD,
                                                              "engine_failed", rec.pk)
    assert dry.description == "restart the managed engine edge-llama"
    assert dry.reason == rec.title and "failed to load model" in rec.action
    assert dry.evidence == rec.evidence
    broken.refresh_from_db()
    assert broken.desired == Desired.STOPPED  # nothing was done
    assert round_() == {}  # said once per recommendation, not every round
    assert AutoAction.objects.count() == 1


def test_applied_automatically_it_acts_through_the_same_apply_and_audits_the_evidence():
    broken = failed()
    automation.set_policy(OPERATOR, "engine_failed", "apply")
    assert round_() == {"done": 1}
    broken.refresh_from_db()
    assert (broken.desired, broken.state, broken.generation) == (Desired.RUNNING,
                                                                 EngineState.QUEUED, 1)
    done = AutoAction.objects.get()
    assert done.outcome == AutoOutcome.DONE and "Restarting the managed engine" in done.detail
    rec = Recommendation.objects.get(rule="engine_failed")
    assert (rec.state, rec.applied_by) == ("applied", "automation")
    applied = AuditEvent.objects.get(action=AuditAction.RECOMMENDATION_APPLIED)
    assert applied.actor == "automation" and applied.after["automatic"] is True
    assert applied.after["evidence"][0]["metric"] == "last_exit_code"
    assert AuditEvent.objects.filter(action=AuditAction.ENGINE_RESTARTED,
                                     actor="automation").count() == 1
    changed = AuditEvent.objects.get(action=AuditAction.AUTOMATION_CHANGED)
    assert changed.after == {"mode": "apply", "max_per_hour": 4}


def test_the_rate_limit_holds_the_rest_back_and_says_so():
    first, second = failed("a", 18301), failed("b", 18302)
    automation.set_policy(OPERATOR, "engine_failed", "apply", max_per_hour=1)
    assert round_() == {"done": 1, "rate_limited": 1}
    states = {e.name: e.desired for e in ManagedEngine.objects.all()}
    assert sorted(states.values()) == [Desired.RUNNING, Desired.STOPPED]
    held = AutoAction.objects.get(outcome=AutoOutcome.LIMITED)
    assert "at most 1 an hour" in held.detail
    assert round_() == {}  # held back once, not every round
    assert {first.pk, second.pk}


def test_an_idle_engine_is_stopped_when_memory_is_tight_and_started_when_traffic_returns():
    backend = Backend.objects.create(name="edge-llama", kind="llamacpp",
                                     base_url="http://127.0.0.1:18300")
    idle = engine(state=EngineState.RUNNING, desired=Desired.RUNNING, backend=backend,
                  worker="monitor-a")
    add("memory_percent", "host", [88, 91, 90])
    for rule in ("unload_idle", "traffic_returned"):
        automation.set_policy(OPERATOR, rule, "apply")
    assert round_() == {"done": 1}
    rec = Recommendation.objects.get(rule="unload_idle")
    assert rec.apply == {"kind": "stop_engine", "engine_id": idle.pk}
    idle.refresh_from_db()
    assert idle.desired == Desired.STOPPED
    # the supervisor stops it; later turns ask for its backend again
    ManagedEngine.objects.filter(pk=idle.pk).update(state=EngineState.STOPPED, worker="",
                                                    stopped_at=timezone.now())
    Sample.objects.filter(metric="memory_percent").delete()
    add("requests", f"backend:{backend.pk}", [1, 1])
    assert round_() == {"done": 1}
    back = Recommendation.objects.get(rule="traffic_returned")
    assert back.apply == {"kind": "start_engine", "engine_id": idle.pk}
    assert "2 turn(s)" in back.action
    idle.refresh_from_db()
    assert (idle.desired, idle.state) == (Desired.RUNNING, EngineState.QUEUED)
    assert [a.rule for a in AutoAction.objects.order_by("at", "pk")] == [
        "unload_idle", "traffic_returned"]


def test_an_engine_an_operator_stopped_is_not_started_by_traffic():
    backend = Backend.objects.create(name="edge-llama", kind="llamacpp",
                                     base_url="http://127.0.0.1:18300")
    engine(state=EngineState.STOPPED, desired=Desired.STOPPED, backend=backend,
           stopped_at=timezone.now())
    add("requests", f"backend:{backend.pk}", [1, 1])
    automation.set_policy(OPERATOR, "traffic_returned", "apply")
    round_()
    assert not Recommendation.objects.filter(rule="traffic_returned").exists()


def test_a_failed_attempt_is_recorded_and_tried_again_after_the_cooldown(settings):
    broken = failed()
    automation.set_policy(OPERATOR, "engine_failed", "apply")
    settings.TANGLAW_ENGINE_COMMANDS = []  # its command is no longer allowed
    assert round_() == {"failed": 1}
    attempt = AutoAction.objects.get()
    assert "no longer allowed" in attempt.detail
    assert round_() == {}
    AutoAction.objects.update(at=timezone.now() - timedelta(
        seconds=automation.COOLDOWN_S + 1))
    settings.TANGLAW_ENGINE_COMMANDS = ["/usr/bin/llama-server"]
    assert round_() == {"done": 1}
    broken.refresh_from_db()
    assert broken.desired == Desired.RUNNING


def test_the_monitor_round_runs_the_automation():
    failed()
    summary = Monitor(worker="m1").round(force=True)
    assert summary["automation"] == {"would_do": 1}


def test_the_api_and_the_page(operator_client, viewer_client):
    failed()
    round_()
    policies = {p["rule"]: p for p in viewer_client.get("/api/automation/policies").json()}
    assert set(policies) == set(automation.RULES)
    assert policies["engine_failed"]["mode"] == "suggest"
    bad = operator_client.put("/api/automation/policies/engine_failed",
                              json.dumps({"mode": "sometimes"}),
                              content_type="application/json")
    assert bad.status_code == 422 and "mode" in bad.json()["errors"]
    bad = operator_client.put("/api/automation/policies/reboot_the_world",
                              json.dumps({"mode": "apply"}), content_type="application/json")
    assert bad.status_code == 422 and "rule" in bad.json()["errors"]
    bad = operator_client.put("/api/automation/policies/engine_failed",
                              json.dumps({"mode": "apply", "max_per_hour": 0}),
                              content_type="application/json")
    assert bad.status_code == 422 and "max_per_hour" in bad.json()["errors"]
    assert viewer_client.put("/api/automation/policies/engine_failed",
                             json.dumps({"mode": "apply"}),
                             content_type="application/json").status_code == 403
    ok = operator_client.put("/api/automation/policies/engine_failed",
                             json.dumps({"mode": "apply", "max_per_hour": 2}),
                             content_type="application/json")
    assert ok.json()["mode"] == "apply" and ok.json()["updated_by"] == "oscar"
    actions = viewer_client.get("/api/automation/actions?outcome=would_do").json()
    assert actions[0]["description"] == "restart the managed engine edge-llama"
    assert viewer_client.get("/api/automation/actions?outcome=maybe").status_code == 422
    page = viewer_client.get("/recommendations/").content.decode()
    assert "Automatic actions" in page and "restart the managed engine edge-llama" in page
    assert "Would have done" in page and 'name="mode"' not in page
    page = operator_client.get("/recommendations/").content.decode()
    assert 'action="/recommendations/automation/engine_failed/"' in page
    response = operator_client.post("/recommendations/automation/unload_idle/",
                                    {"mode": "apply", "max_per_hour": "3"}, follow=True)
    assert "apply automatically" in response.content.decode().lower()
    response = operator_client.post("/recommendations/automation/unload_idle/",
                                    {"mode": "apply", "max_per_hour": "lots"}, follow=True)
    assert "a whole number" in response.content.decode()


def test_llama_server_unloads_idle_models_only_in_router_mode(fake, settings):
    from monitoring.worker import Monitor as RealMonitor

    router = fake("llamacpp", router=True, models=["tiny", "small"])
    single = fake("llamacpp", models=["tiny"])
    routed = Backend.objects.create(name="router", kind="llamacpp", base_url=router.url)
    plain = Backend.objects.create(name="single", kind="llamacpp", base_url=single.url)
    results = {r.backend.pk: r.report for r in RealMonitor(worker="m").probe()}
    assert results[routed.pk].unloads is True and results[plain.pk].unloads is False
    add("memory_percent", "host", [88, 91, 90])
    for backend in (routed, plain):
        add("models_loaded", f"backend:{backend.pk}", [1])
    advisor.run()
    recs = {r.scope: r for r in Recommendation.objects.filter(rule="unload_idle")}
    assert set(recs) == {f"backend:{routed.pk}"}
    assert recs[f"backend:{routed.pk}"].apply == {"kind": "unload_loaded",
                                                   "backend_id": routed.pk}
