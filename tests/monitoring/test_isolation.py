"""One backend, rule, step or port must never stop monitoring for the rest.

URLs are parsed once, with the parser the HTTP clients use, so what they would refuse
is refused on save; rows saved before that (or written around the checks) still cannot
stop a round: each backend's probe, each alert rule and each step of a round fails on
its own, with a reason.
"""

from __future__ import annotations

import pytest

from console import discovery
from console.models import Backend
from console.urlsafety import UnsafeURL, check_backend_url
from monitoring import alerts
from monitoring.collectors.gpu import GpuCollector
from monitoring.models import Alert, AlertRule, Sample
from monitoring.worker import Monitor
from tests.support.fake_nvml import FakeNvml

pytestmark = pytest.mark.django_db

# accepted by Python's urlsplit, refused by httpx/httpx2 on every request
CLIENT_REFUSES = [
    "http://0177.0.0.1:8080",        # octal dotted IPv4
    "http://127.000.000.001:8080",   # zero-padded octets
    "http://1.2.3.256:8080",         # an octet over 255
    "http://010.0.0.1",
    "http://\u2603.-bad-.example",   # a label IDNA cannot encode
    "http://a\u200d\u200db.example",  # joiners IDNA refuses
    "http://" + "\u00e9" * 70 + ".example",  # a label too long once encoded
]


def monitor():
    return Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w1",
                   fixed_probe_interval=30)


@pytest.mark.parametrize("url", CLIENT_REFUSES)
def test_urls_the_http_client_refuses_are_refused_on_save(url, operator_client):
    with pytest.raises(UnsafeURL, match="cannot be used"):
        check_backend_url(url)
    answer = operator_client.post("/api/backends", {"name": "odd", "kind": "vllm",
                                                    "base_url": url},
                                  content_type="application/json")
    assert answer.status_code == 422, answer.content
    assert "base_url" in answer.content.decode()
    page = operator_client.post("/backends/new/", {"name": "odd", "kind": "vllm",
                                                   "base_url": url})
    assert page.status_code == 200 and "cannot be used" in page.content.decode()
    assert not Backend.objects.filter(name="odd").exists()


@pytest.mark.parametrize("url", CLIENT_REFUSES[:3])
def test_urls_the_http_client_refuses_are_refused_for_tools_and_webhooks(url,
                                                                         operator_user):
    from agents.tools.http import check_template
    from console.actions import Invalid
    from console.audit import Actor
    from monitoring.channels import create_channel

    with pytest.raises(ValueError, match="cannot be used"):
        check_template(url + "/items/{id}")
    with pytest.raises(Invalid) as refused:
        create_channel(Actor.system(), {"name": "hook", "kind": "webhook", "target": url})
    assert "target" in refused.value.errors


@pytest.mark.parametrize("url", CLIENT_REFUSES)
def test_a_stored_bad_url_marks_only_its_backend_unhealthy(url, fake, viewer_client):
    good = fake("vllm")
    ok = Backend.objects.create(name="good", kind="vllm", base_url=good.url)
    # as if saved by an older release, before URLs were parsed like the client does
    bad = Backend.objects.create(name="bad", kind="vllm", base_url=url)
    summary = monitor().round(force=True)
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert ok.status == "healthy"
    assert bad.status == "unhealthy" and "URL cannot be used" in bad.status_reason
    assert summary["audit_ok"] is True and "error" not in str(summary["alerts"])
    assert Sample.objects.filter(metric="backend_up", scope=f"backend:{ok.pk}").exists()
    for path in ("/models/", f"/backends/{bad.pk}/models/", "/backends/", "/"):
        assert viewer_client.get(path).status_code == 200, path


def test_a_failing_step_does_not_stop_the_rest_of_the_round(fake, monkeypatch):
    Backend.objects.create(name="good", kind="vllm", base_url=fake("vllm").url)
    m = monitor()

    def broken():
        raise RuntimeError("disk full")

    monkeypatch.setattr(m, "rollup", broken)
    monkeypatch.setattr(m, "traffic", broken)
    summary = m.round(force=True)
    assert summary["rollup"] == {"error": "RuntimeError: disk full"}
    assert summary["probed"] == 1
    assert summary["audit_ok"] is True
    assert "alerts" in summary and "notifications" in summary and "recommendations" in summary
    assert summary["runs"] == {"error": "RuntimeError: disk full"}
    assert m.rounds == 1


def test_an_unexpected_probe_error_is_the_backends_reason(fake, monkeypatch):
    from monitoring import probes

    good = Backend.objects.create(name="good", kind="vllm", base_url=fake("vllm").url)
    odd = Backend.objects.create(name="odd", kind="ollama", base_url=fake("ollama").url)
    real = probes._probe_one

    async def flaky(backend, adapter, deadline_s):
        if backend.pk == odd.pk:
            raise KeyError("models")
        return await real(backend, adapter, deadline_s)

    monkeypatch.setattr(probes, "_probe_one", flaky)
    monitor().probe()
    good.refresh_from_db()
    odd.refresh_from_db()
    assert good.status == "healthy"
    assert odd.status == "unhealthy" and odd.status_reason == "the probe failed: KeyError: 'models'"


def test_one_broken_rule_does_not_stop_the_others(monkeypatch):
    broken = AlertRule.objects.create(name="broken", metric="host_cpu_percent", scope="host",
                                      comparator=">", threshold=-1, for_s=0)
    # a row written around the API's validation (an older release, a hand edit)
    odd = AlertRule.objects.create(name="odd", metric="host_cpu_percent", scope="host",
                                   comparator="gt", threshold=-1, for_s=0)
    working = AlertRule.objects.create(name="working", metric="host_memory_percent",
                                       scope="host", comparator=">", threshold=-1, for_s=0)
    from django.utils import timezone

    Sample.objects.create(metric="host_cpu_percent", scope="host", value=50, ts=timezone.now())
    Sample.objects.create(metric="host_memory_percent", scope="host", value=50,
                          ts=timezone.now())
    real = alerts.value_of

    def value_of(rule, scope, now):
        if rule.pk == broken.pk:
            raise ZeroDivisionError("division by zero")
        return real(rule, scope, now)

    monkeypatch.setattr(alerts, "value_of", value_of)
    changes = alerts.evaluate()
    assert changes["fired"] >= 1
    assert Alert.objects.filter(rule=working).exists()
    assert not Alert.objects.filter(rule__in=[broken, odd]).exists()


def test_discovery_goes_on_past_a_port_that_breaks(fake, monkeypatch, settings):
    engine = fake("vllm")
    port = int(engine.url.rsplit(":", 1)[1])
    real = discovery.identify

    async def identify(client, host, p):
        if p == 1:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return await real(client, host, p)

    monkeypatch.setattr(discovery, "identify", identify)
    settings.TANGLAW_FOUNDRY_CLI = "/nonexistent/foundry"
    found = discovery.discover_sync([1, port])
    assert [c.kind for c in found] == ["vllm"]
