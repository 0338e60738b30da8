"""Alert rules fire only after their "for", resolve, and notify once per change; webhooks
are retried and recorded; email goes through Django's mail."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from console.audit import Actor
from console.models import AuditEvent, Backend
from monitoring import alerts, notify
from monitoring.models import Alert, AlertEvent, AlertRule, Channel, Delivery, Sample

pytestmark = pytest.mark.django_db


def add(metric, scope, value, ago_s=0, now=None):
    Sample.objects.create(ts=(now or timezone.now()) - timedelta(seconds=ago_s), metric=metric,
                          scope=scope, value=value)


def states(alert):
    return list(alert.events.values_list("state", flat=True))


def test_a_rule_fires_after_its_for_duration_and_resolves(echo):
    Channel.objects.create(name="ops", kind="webhook",
                           target=f"http://127.0.0.1:{echo.port}/hook")
    AlertRule.objects.update(enabled=False)
    rule = AlertRule.objects.create(name="Hot", metric="memory_percent", scope="host",
                                    comparator=">", threshold=85, window_s=60, for_s=120)
    t0 = timezone.now()
    add("memory_percent", "host", 91, now=t0)
    assert alerts.evaluate(t0) == {"fired": 0, "resolved": 0}
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "pending" and not Delivery.objects.exists()
    add("memory_percent", "host", 93, now=t0 + timedelta(seconds=60))
    assert alerts.evaluate(t0 + timedelta(seconds=60))["fired"] == 0  # not long enough yet
    add("memory_percent", "host", 92, now=t0 + timedelta(seconds=121))
    assert alerts.evaluate(t0 + timedelta(seconds=121))["fired"] == 1
    assert alerts.evaluate(t0 + timedelta(seconds=125))["fired"] == 0  # once per change
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.value == 92  # the mean over the last 60 s
    assert "memory_percent is 92 on this host (above 85)" in alert.message
    assert notify.run_due("w1") == {"sent": 1, "failed": 0}
    assert notify.run_due("w2") == {"sent": 0, "failed": 0}  # nothing left to send

    add("memory_percent", "host", 40, now=t0 + timedelta(seconds=300))
    assert alerts.evaluate(t0 + timedelta(seconds=300))["resolved"] == 1
    notify.run_due("w1")
    alert.refresh_from_db()
    assert alert.state == "resolved" and states(alert) == ["pending", "firing", "resolved"]
    payloads = [r["body"] for r in echo.requests]
    assert [p["state"] for p in payloads] == ["firing", "resolved"]
    assert payloads[0]["rule"] == "Hot" and payloads[0]["severity"] == "warning"


def test_a_blip_that_clears_before_its_for_never_notifies():
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(name="Hot", metric="cpu_percent", scope="host", comparator=">",
                             threshold=90, window_s=30, for_s=60)
    Channel.objects.create(name="mail", kind="email", target="ops@example.com")
    now = timezone.now()
    add("cpu_percent", "host", 99, now=now)
    alerts.evaluate(now)
    add("cpu_percent", "host", 10, now=now + timedelta(seconds=40))
    alerts.evaluate(now + timedelta(seconds=40))
    assert not Alert.objects.exists() and not Delivery.objects.exists()


def test_the_default_backend_rule_needs_two_failed_probes_and_one_good_one(echo):
    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    scope = f"backend:{backend.pk}"
    now = timezone.now()
    add("backend_up", scope, 0, now=now)
    alerts.evaluate(now)
    rule = AlertRule.objects.get(name="Backend unhealthy")
    assert not Alert.objects.filter(rule=rule, state="firing").exists()
    add("backend_up", scope, 0, now=now + timedelta(seconds=30))
    alerts.evaluate(now + timedelta(seconds=30))
    alert = Alert.objects.get(rule=rule, state="firing")
    assert alert.rule.severity == "critical" and "backend edge" in alert.message
    add("backend_up", scope, 1, now=now + timedelta(seconds=60))
    alerts.evaluate(now + timedelta(seconds=60))
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_a_failing_webhook_is_retried_and_recorded_and_email_still_goes(echo):
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(name="Hot", metric="cpu_percent", scope="host", comparator=">",
                             threshold=90, window_s=0, severity="critical")
    broken = Channel.objects.create(name="broken", kind="webhook",
                                    target=f"http://127.0.0.1:{echo.port}/status/500")
    Channel.objects.create(name="slack", kind="webhook", slack=True,
                           target=f"http://127.0.0.1:{echo.port}/slack")
    Channel.objects.create(name="mail", kind="email", target="ops@example.com, noc@example.com")
    Channel.objects.create(name="only-critical-off", kind="email", target="x@example.com",
                           enabled=False)
    add("cpu_percent", "host", 99)
    alerts.evaluate()
    assert notify.run_due("w1") == {"sent": 2, "failed": 1}
    failed = Delivery.objects.get(channel=broken)
    assert failed.attempts == 1 and "HTTP 500" in failed.error
    assert failed.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert notify.run_due("w1") == {"sent": 0, "failed": 0}  # not due again yet
    Delivery.objects.filter(pk=failed.pk).update(next_attempt_at=timezone.now())
    notify.run_due("w1")
    failed.refresh_from_db()
    assert failed.attempts == 2 and failed.delivered_at is None
    slack = next(r for r in echo.requests if r["path"] == "/slack")["body"]
    assert set(slack) == {"text"} and slack["text"].startswith("🔴 [critical] firing: Hot")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com", "noc@example.com"]
    assert json.loads(mail.outbox[0].body)["rule"] == "Hot"


def test_acknowledge_is_audited_and_only_for_firing_alerts(operator_user):
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(name="Hot", metric="cpu_percent", scope="host", comparator=">",
                             threshold=90, window_s=0)
    add("cpu_percent", "host", 99)
    alerts.evaluate()
    alert = Alert.objects.get()
    actor = Actor(user_id=operator_user.pk, username="oscar", role="operator", ip="127.0.0.1")
    alerts.acknowledge(actor, alert)
    assert alert.state == "acknowledged" and alert.acknowledged_by == "oscar"
    assert AuditEvent.objects.filter(action="alert.acknowledged", actor="oscar").exists()
    from console.actions import Refused
    with pytest.raises(Refused):
        alerts.acknowledge(actor, alert)
    add("cpu_percent", "host", 10)
    alerts.evaluate()
    assert Alert.objects.get().state == "resolved"
    assert list(AlertEvent.objects.values_list("state", "by")) == [
        ("pending", ""), ("firing", ""), ("acknowledged", "oscar"), ("resolved", "")]


def test_a_tampered_audit_log_raises_the_critical_alert(actor):
    from django.db import connection

    from console import audit as audit_log
    from monitoring.collectors.gpu import GpuCollector
    from monitoring.worker import Monitor
    from tests.support.fake_nvml import FakeNvml

    for i in range(3):
        audit_log.record("backend.discovered", actor, after={"i": i})
    monitor = Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w",
                      fixed_probe_interval=30)
    assert monitor.verify_audit() is True
    assert monitor.verify_audit() is None  # hourly: not due again yet
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER console_auditevent_no_update")
        cursor.execute("UPDATE console_auditevent SET actor = 'mallory' WHERE seq = 2")
    from monitoring.models import Lease
    Lease.objects.filter(name="audit_verify").update(until=timezone.now())
    assert monitor.verify_audit() is False
    alerts.evaluate()
    alert = Alert.objects.get(rule__name="Audit log tampered with")
    assert alert.state == "firing" and alert.rule.severity == "critical"
