"""Notifiers say when a failure can never succeed: those are tried once and marked
permanent; server errors, timeouts and 429 are retried. Counted on real local servers."""

import socket

import pytest
from django.utils import timezone

from monitoring import alerts, notify
from monitoring.models import AlertRule, Channel, Delivery, Sample
from monitoring.notifiers import webhook
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings):
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.stop()


def fire() -> None:
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(name="Hot", metric="cpu_percent", scope="host", comparator=">",
                             threshold=90, window_s=0, severity="critical")
    Sample.objects.create(ts=timezone.now(), metric="cpu_percent", scope="host", value=99)
    assert alerts.evaluate()["fired"] == 1


def send_until_done() -> Delivery:
    """Run the sender as the clock passes every backoff, until nothing is scheduled."""
    for _ in range(notify.MAX_ATTEMPTS + 2):
        notify.run_due("w1")
        Delivery.objects.filter(next_attempt_at__isnull=False).update(
            next_attempt_at=timezone.now())
    return Delivery.objects.get()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("slack", [False, True])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_hook_answering_a_client_error_is_tried_once_and_marked_permanent(echo, status,
                                                                             slack):
    Channel.objects.create(name="ops", kind="webhook", slack=slack,
                           target=f"http://127.0.0.1:{echo.port}/status/{status}")
    fire()
    assert notify.run_due("w1") == {"sent": 0, "failed": 1}
    one = send_until_done()
    assert len(echo.requests) == 1
    assert one.permanent and one.attempts == 1 and one.next_attempt_at is None
    assert one.delivered_at is None and f"HTTP {status}" in one.error


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_408_and_429_are_retried_until_the_last_attempt(echo, status):
    Channel.objects.create(name="ops", kind="webhook",
                           target=f"http://127.0.0.1:{echo.port}/status/{status}")
    fire()
    one = send_until_done()
    assert len(echo.requests) == notify.MAX_ATTEMPTS == one.attempts
    assert not one.permanent and one.next_attempt_at is None and one.delivered_at is None
    assert f"HTTP {status}" in one.error


def test_a_hook_that_does_not_answer_in_time_is_retried(echo, monkeypatch):
    monkeypatch.setattr(webhook, "TIMEOUT_S", 0.3)
    Channel.objects.create(name="ops", kind="webhook",
                           target=f"http://127.0.0.1:{echo.port}/sleep?s=2")
    fire()
    notify.run_due("w1")
    one = Delivery.objects.get()
    assert not one.permanent and one.next_attempt_at is not None
    assert "no answer within 0.3 s" in one.error
    Delivery.objects.update(next_attempt_at=timezone.now())
    notify.run_due("w1")
    assert len(echo.requests) == 2 and Delivery.objects.get().attempts == 2


def test_a_hook_that_refuses_connections_is_retried():
    Channel.objects.create(name="ops", kind="webhook",
                           target=f"http://127.0.0.1:{closed_port()}/hook")
    fire()
    one = send_until_done()
    assert one.attempts == notify.MAX_ATTEMPTS and not one.permanent


@pytest.mark.parametrize("target, why", [
    ("http://169.254.169.254/latest/meta-data", "link-local"),  # refused at connect time
    ("ftp://example.com/hook", "ftp"),
])
def test_a_hook_misconfigured_is_a_permanent_failure(target, why):
    Channel.objects.create(name="ops", kind="webhook", target=target)
    fire()
    one = send_until_done()
    assert one.permanent and one.attempts == 1, one.error
    assert why in one.error


def test_an_address_the_mail_server_rejects_is_tried_once(smtp):
    smtp.rcpt_reply = "550 5.1.1 no such mailbox"
    Channel.objects.create(name="mail", kind="email", target="gone@example.com")
    fire()
    one = send_until_done()
    assert smtp.sessions == 1 and smtp.recipients == ["<gone@example.com>"]
    assert one.permanent and one.attempts == 1 and "550" in one.error
    assert smtp.messages == 0


def test_a_mail_server_saying_try_later_is_retried(smtp):
    smtp.rcpt_reply = "451 4.3.0 try again later"
    Channel.objects.create(name="mail", kind="email", target="ops@example.com")
    fire()
    one = send_until_done()
    assert smtp.sessions == notify.MAX_ATTEMPTS == one.attempts
    assert not one.permanent and "451" in one.error
    smtp.rcpt_reply = "250 OK"
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert notify.run_due("w1") == {"sent": 1, "failed": 0}
    assert smtp.messages == 1


def test_a_mail_server_that_is_down_is_retried(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
        "127.0.0.1", closed_port(), 2)
    Channel.objects.create(name="mail", kind="email", target="ops@example.com")
    fire()
    notify.run_due("w1")
    one = Delivery.objects.get()
    assert not one.permanent and one.next_attempt_at is not None and one.attempts == 1


def test_an_email_channel_without_addresses_is_a_permanent_failure(smtp):
    Channel.objects.create(name="mail", kind="email", target=" , ")
    fire()
    one = send_until_done()
    assert one.permanent and one.attempts == 1 and "no email addresses" in one.error
    assert smtp.sessions == 0
