"""Alerts in the UI, not only the API: a rule is edited, disabled and enabled again; a
channel is disabled, its severity changed, sent a test notification (its real answer
shown) and deleted. Every change is audited; the API does the same."""

import json

import pytest

from console.models import AuditEvent
from monitoring.models import AlertRule, Channel
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule(db):
    return AlertRule.objects.create(name="Slow", metric="latency_ms", scope="backends",
                                    comparator=">", threshold=2000, window_s=300)


def test_a_rule_is_edited_in_the_page(operator_client, rule):
    form = operator_client.get(f"/alerts/?edit={rule.pk}").content.decode()
    assert "Edit the rule Slow" in form and f'name="rule" value="{rule.pk}"' in form
    assert 'value="2000"' in form and ">Save the rule</button>" in form
    response = operator_client.post("/alerts/", {
        "rule": rule.pk, "name": "Slower", "metric": "latency_ms", "scope": "backends",
        "comparator": ">", "threshold": "3500", "window_s": "60", "for_s": "30",
        "severity": "critical", "enabled": "on"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.threshold, rule.window_s, rule.for_s, rule.severity) == (
        "Slower", 3500, 60, 30, "critical")
    change = AuditEvent.objects.get(action="alert_rule.updated")
    assert change.before["threshold"] == 2000 and change.after["threshold"] == 3500


def test_a_bad_edit_names_the_field_and_keeps_what_was_typed(operator_client, rule):
    page = operator_client.post("/alerts/", {
        "rule": rule.pk, "name": "Slow", "metric": "latency_ms", "scope": "backend:abc",
        "comparator": ">", "threshold": "10", "window_s": "60", "severity": "warning",
        "enabled": "on"}).content.decode()
    assert "The rule was not saved" in page and "<code>scope</code>" in page
    assert 'value="backend:abc"' in page and f'name="rule" value="{rule.pk}"' in page
    rule.refresh_from_db()
    assert rule.threshold == 2000


def test_a_rule_is_disabled_and_enabled_again(operator_client, viewer_client, rule):
    page = operator_client.get("/alerts/").content.decode()
    assert 'aria-label="Disable the rule Slow"' in page
    operator_client.post(f"/alerts/rules/{rule.pk}/enabled/", {"enabled": "off"})
    rule.refresh_from_db()
    assert not rule.enabled
    assert 'aria-label="Enable the rule Slow"' in operator_client.get("/alerts/").content.decode()
    operator_client.post(f"/alerts/rules/{rule.pk}/enabled/", {"enabled": "on"})
    rule.refresh_from_db()
    assert rule.enabled
    assert AuditEvent.objects.filter(action="alert_rule.updated").count() == 2
    assert viewer_client.post(f"/alerts/rules/{rule.pk}/enabled/",
                              {"enabled": "off"}).status_code == 403


def test_a_webhook_channel_is_tested_with_its_real_answer(operator_client, echo):
    good = Channel.objects.create(name="ops-hook", kind="webhook",
                                  target=f"http://127.0.0.1:{echo.port}/hook/secret-token")
    response = operator_client.post(f"/alerts/channels/{good.pk}/test/", follow=True)
    page = response.content.decode()
    assert "Test notification sent to ops-hook: the webhook accepted it." in page
    sent = echo.requests[-1]
    assert sent["method"] == "POST" and sent["path"] == "/hook/secret-token"
    assert sent["body"]["state"] == "test" and "test notification" in sent["body"]["message"]
    bad = Channel.objects.create(name="gone-hook", kind="webhook",
                                 target=f"http://127.0.0.1:{echo.port}/status/410")
    page = operator_client.post(f"/alerts/channels/{bad.pk}/test/", follow=True
                                ).content.decode()
    assert "The test notification to gone-hook failed: HTTP 410 from 127.0.0.1" in page
    events = AuditEvent.objects.filter(action="channel.tested").order_by("seq")
    assert [e.outcome for e in events] == ["success", "failure"]
    assert "secret-token" not in json.dumps([e.after for e in events])
    assert "secret-token" not in page  # the URL is shown masked


def test_an_email_channel_is_tested_through_the_mail_server(operator_client, settings):
    server = SmtpServer().start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        mail = Channel.objects.create(name="ops-mail", kind="email", target="ops@example.com")
        answer = operator_client.post(f"/api/channels/{mail.pk}/test").json()
        assert answer == {"ok": True, "detail": "the mail server accepted it"}
        assert server.messages == 1 and server.recipients == ["<ops@example.com>"]
        server.rcpt_reply = "550 5.1.1 no such mailbox"
        refused = operator_client.post(f"/api/channels/{mail.pk}/test").json()
        assert refused["ok"] is False and "550" in refused["detail"]
    finally:
        server.stop()


def test_a_channel_is_disabled_changed_and_deleted_in_the_page(operator_client, echo):
    channel = Channel.objects.create(name="ops", kind="webhook",
                                     target=f"http://127.0.0.1:{echo.port}/h")
    operator_client.post(f"/alerts/channels/{channel.pk}/", {"enabled": "off"})
    channel.refresh_from_db()
    assert not channel.enabled
    operator_client.post(f"/alerts/channels/{channel.pk}/", {"min_severity": "critical"})
    channel.refresh_from_db()
    assert channel.min_severity == "critical" and not channel.enabled
    bad = operator_client.post(f"/alerts/channels/{channel.pk}/", {"min_severity": "loud"},
                               follow=True).content.decode()
    assert "ops not changed: One of info, warning, critical." in bad
    page = operator_client.get("/alerts/").content.decode()
    assert 'data-confirm="Delete the channel ops? Alerts stop going there."' in page
    operator_client.post(f"/alerts/channels/{channel.pk}/delete/")
    assert not Channel.objects.exists()
    actions = list(AuditEvent.objects.filter(action__startswith="channel.").order_by("seq")
                   .values_list("action", flat=True))
    assert actions == ["channel.updated", "channel.updated", "channel.deleted"]


@pytest.mark.parametrize("patch,field", [
    ({"enabled": "yes"}, "enabled"), ({"min_severity": "loud"}, "min_severity"),
    ({"name": ""}, "name"), ({"name": ["x"]}, "name"), ({"target": "file:///etc/passwd"},
                                                        "target"),
    ({"slack": 1}, "slack"),
])
def test_the_api_patches_a_channel_and_names_bad_fields(operator_client, echo, patch, field):
    channel = Channel.objects.create(name="ops", kind="webhook",
                                     target=f"http://127.0.0.1:{echo.port}/h")
    answer = operator_client.patch(f"/api/channels/{channel.pk}", data=json.dumps(patch),
                                   content_type="application/json")
    assert answer.status_code == 422 and field in answer.json()["errors"]
    channel.refresh_from_db()
    assert channel.enabled and channel.name == "ops"


def test_the_api_disables_renames_and_deletes(operator_client, viewer_client, echo):
    channel = Channel.objects.create(name="ops", kind="webhook",
                                     target=f"http://127.0.0.1:{echo.port}/h/tok")
    answer = operator_client.patch(f"/api/channels/{channel.pk}", data=json.dumps(
        {"enabled": False, "name": "night-ops"}), content_type="application/json")
    assert answer.status_code == 200
    assert answer.json()["enabled"] is False and answer.json()["name"] == "night-ops"
    assert "tok" not in answer.json()["target"]
    assert viewer_client.post(f"/api/channels/{channel.pk}/test").status_code == 403
    assert operator_client.post("/api/channels/999999/test").status_code == 404
    assert operator_client.delete(f"/api/channels/{channel.pk}").status_code == 204
    assert AuditEvent.objects.filter(action="channel.deleted").exists()


def test_a_rule_whose_target_is_gone_can_still_be_turned_off(operator_client, db):
    rule = AlertRule.objects.create(name="Old agent", metric="error_rate",
                                    scope="xagent:424242", comparator=">", threshold=5)
    page = operator_client.post(f"/alerts/rules/{rule.pk}/enabled/", {"enabled": "off"},
                                follow=True)
    assert page.status_code == 200
    assert "Old agent cannot be saved as it is" in page.content.decode()


def test_an_edited_threshold_keeps_its_digits(operator_client, db):
    rule = AlertRule.objects.create(name="Precise", metric="latency_ms", scope="backends",
                                    comparator=">", threshold=2500.125)
    assert 'value="2500.125"' in operator_client.get(f"/alerts/?edit={rule.pk}"
                                                     ).content.decode()


def test_a_disabled_channel_gets_no_queued_retry(echo, db):
    from django.utils import timezone

    from monitoring import alerts, notify
    from monitoring.models import Delivery, Sample

    channel = Channel.objects.create(name="ops", kind="webhook",
                                     target=f"http://127.0.0.1:{echo.port}/status/503")
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(name="Hot", metric="cpu_percent", scope="host", comparator=">",
                             threshold=90, window_s=0, severity="critical")
    Sample.objects.create(ts=timezone.now(), metric="cpu_percent", scope="host", value=99)
    alerts.evaluate()
    assert notify.run_due("w1") == {"sent": 0, "failed": 1}  # a 503: a retry is queued
    Channel.objects.filter(pk=channel.pk).update(enabled=False)
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert notify.run_due("w1") == {"sent": 0, "failed": 0}
    assert len(echo.requests) == 1
