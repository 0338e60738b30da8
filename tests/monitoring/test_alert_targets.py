"""An alert whose target is deleted or disabled resolves, with the reason, audited and
notified: in the action that deletes or disables it, and in the evaluator for whatever
went another way (a bulk update, a GPU that stopped reporting, a rule switched off)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import actions as agent_actions
from agents.models import Agent
from console.actions import backends as backend_actions
from console.models import AuditEvent, Backend
from monitoring import alerts
from monitoring.models import Alert, AlertRule, Channel, Delivery, Sample

pytestmark = pytest.mark.django_db


def add(metric, scope, value, ago_s=0):
    Sample.objects.create(ts=timezone.now() - timedelta(seconds=ago_s), metric=metric,
                          scope=scope, value=value)


def only(**rule):
    AlertRule.objects.update(enabled=False)
    return AlertRule.objects.create(**{"comparator": ">", "threshold": 90, "window_s": 0,
                                       **rule})


def down(backend) -> Alert:
    """The default "Backend unhealthy" rule firing for `backend`."""
    scope = f"backend:{backend.pk}"
    add("backend_up", scope, 0, ago_s=30)
    add("backend_up", scope, 0)
    alerts.evaluate()
    return Alert.objects.get(rule__name="Backend unhealthy", scope=scope, state="firing")


def resolved_rows(alert: Alert):
    alert.refresh_from_db()
    event = alert.events.last()
    audit = AuditEvent.objects.filter(action="alert.resolved", target_id=str(alert.pk)).get()
    return alert, event, audit


def test_deleting_a_backend_resolves_its_acknowledged_alert_with_the_reason(actor):
    Channel.objects.create(name="mail", kind="email", target="ops@example.com")
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    alert = down(backend)
    alerts.acknowledge(actor, alert)
    backend_actions.delete_backend(actor, backend)
    alert, event, audit = resolved_rows(alert)
    assert alert.state == "resolved" and alert.resolved_at is not None
    assert alert.resolved_reason == "backend edge was deleted"
    assert (event.state, event.by, event.reason) == ("resolved", "oscar",
                                                     "backend edge was deleted")
    assert audit.actor == "oscar" and audit.after["reason"] == "backend edge was deleted"
    assert Delivery.objects.filter(event=event).exists()  # the resolution is notified
    assert alerts.evaluate() == {"fired": 0, "resolved": 0}
    assert not Alert.objects.exclude(state="resolved").exists()


def test_disabling_a_backend_resolves_its_alerts_and_enabling_it_again_does_not(actor):
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    alert = down(backend)
    backend_actions.update_backend(actor, backend, {"enabled": False})
    alert, event, audit = resolved_rows(alert)
    assert alert.resolved_reason == "backend edge is disabled" and event.by == "oscar"
    add("backend_up", f"backend:{backend.pk}", 0)
    assert alerts.evaluate()["fired"] == 0  # a disabled backend is not evaluated
    backend_actions.update_backend(actor, backend, {"notes": "still off"})
    assert AuditEvent.objects.filter(action="alert.resolved").count() == 1


def test_the_evaluator_resolves_alerts_of_a_backend_disabled_or_deleted_another_way():
    edge = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    core = Backend.objects.create(name="core", kind="vllm", base_url="http://10.0.0.2:8000")
    first, second = down(edge), down(core)
    Backend.objects.filter(pk=edge.pk).update(enabled=False)  # e.g. a bulk change
    Backend.objects.filter(pk=core.pk).delete()
    assert alerts.evaluate()["resolved"] == 2
    first, event, audit = resolved_rows(first)
    assert first.resolved_reason == "backend edge is disabled" and audit.actor == "monitor"
    second, event, _ = resolved_rows(second)
    assert second.resolved_reason == f"backend {core.pk} was deleted" and event.by == ""


def test_a_rule_for_one_backend_resolves_when_that_backend_goes():
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    only(name="Slow edge", metric="probe_latency_ms", scope=f"backend:{backend.pk}",
         threshold=500)
    add("probe_latency_ms", f"backend:{backend.pk}", 900)  # the last sample stays forever
    assert alerts.evaluate()["fired"] == 1
    Backend.objects.filter(pk=backend.pk).delete()
    assert alerts.evaluate()["resolved"] == 1
    assert Alert.objects.get().resolved_reason == f"backend {backend.pk} was deleted"


def test_deleting_or_disabling_an_agent_resolves_its_alerts(actor):
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    gone = Agent.objects.create(name="gone", backend=backend, model="m")
    paused = Agent.objects.create(name="paused", backend=backend, model="m")
    only(name="Slow agent", metric="latency_ms", scope="agents", threshold=1000)
    for agent in (gone, paused):
        add("latency_ms", f"agent:{agent.pk}", 5000)
    assert alerts.evaluate()["fired"] == 2
    gone_pk = gone.pk
    agent_actions.delete_agent(actor, gone)
    agent_actions.update_agent(actor, paused, {"enabled": False})
    reasons = dict(Alert.objects.values_list("scope", "resolved_reason"))
    assert reasons == {f"agent:{gone_pk}": "agent gone was deleted",
                       f"agent:{paused.pk}": "agent paused is disabled"}
    assert alerts.evaluate() == {"fired": 0, "resolved": 0}


def test_a_gpu_that_stops_reporting_resolves_its_alert():
    only(name="GPU hot", metric="gpu_temperature_c", scope="gpus", threshold=85,
         window_s=300)
    add("gpu_utilization_percent", "gpu:0", 50)
    add("gpu_temperature_c", "gpu:0", 95)
    assert alerts.evaluate()["fired"] == 1
    Sample.objects.update(ts=timezone.now() - timedelta(hours=2))  # the GPU left the host
    assert alerts.evaluate()["resolved"] == 1
    assert Alert.objects.get().resolved_reason == "gpu 0 no longer reports"


def test_disabling_a_rule_resolves_its_alerts(actor):
    rule = only(name="Hot", metric="cpu_percent", scope="host")
    add("cpu_percent", "host", 99)
    assert alerts.evaluate()["fired"] == 1
    alerts.save_rule(actor, {"enabled": False}, rule)
    alert = Alert.objects.get()
    assert alert.state == "resolved" and alert.resolved_reason == "the rule Hot was disabled"
    assert alert.events.last().by == "oscar"
    other = only(name="Hotter", metric="cpu_percent", scope="host", threshold=95)
    assert alerts.evaluate()["fired"] == 1
    AlertRule.objects.filter(pk=other.pk).update(enabled=False)  # not through the action
    assert alerts.evaluate()["resolved"] == 1
    assert Alert.objects.get(rule=other).resolved_reason == "the rule Hotter was disabled"


def test_a_rule_whose_scope_changes_resolves_alerts_outside_it(actor):
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    rule = only(name="Hot", metric="cpu_percent", scope="host")
    add("cpu_percent", "host", 99)
    add("cpu_percent", f"backend:{backend.pk}", 10)
    assert alerts.evaluate()["fired"] == 1
    alerts.save_rule(actor, {"scope": "backends"}, rule)
    assert alerts.evaluate()["resolved"] == 1
    assert Alert.objects.get().resolved_reason == "the rule Hot no longer covers this host"
