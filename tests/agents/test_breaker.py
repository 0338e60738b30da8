"""The circuit breaker stops hammering a dead backend, lets one trial through after its
cool-down, shows in the page and the API, and raises an alert when it opens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, Run
from console import generation
from console.models import AuditEvent, Backend
from tests.support.llama_server import free_port
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.django_db


def chat(client, agent, message="hi"):
    return client.post(f"/api/agents/{agent.pk}/chat", data={"message": message},
                       content_type="application/json").json()


def test_the_breaker_opens_skips_and_recovers(operator_client, scripted, settings):
    settings.TANGLAW_BREAKER_FAILURES = 3
    settings.TANGLAW_BREAKER_COOLDOWN_S = 30
    dead = Backend.objects.create(name="dead", kind="openai_compatible",
                                  base_url=f"http://127.0.0.1:{free_port()}/v1")
    agent = Agent.objects.create(name="a", backend=dead, model="m", first_token_timeout_s=2)
    for _ in range(3):
        assert "cannot reach" in chat(operator_client, agent)["error"]
    dead.refresh_from_db()
    assert (dead.breaker_state, dead.breaker_failures) == ("open", 3)
    assert AuditEvent.objects.filter(action="backend.breaker_opened").count() == 1
    reply = chat(operator_client, agent)
    assert "circuit breaker is open after 3 failures" in reply["error"]
    assert Run.objects.order_by("-pk").first().outcome == "error"
    api = operator_client.get(f"/api/backends/{dead.pk}").json()
    assert api["breaker_state"] == "open" and api["breaker_failures"] == 3
    page = operator_client.get(f"/backends/{dead.pk}/").content.decode()
    assert "circuit open" in page

    # the cool-down passes: one trial; the backend is back (now pointing at a live server)
    Backend.objects.filter(pk=dead.pk).update(
        base_url=scripted.url, breaker_opened_at=timezone.now() - timedelta(seconds=31))
    generation.bump()  # a raw UPDATE skips the signals the console's own writes send
    scripted.add(text("back"), finish())
    assert chat(operator_client, agent)["reply"] == "back"
    dead.refresh_from_db()
    assert (dead.breaker_state, dead.breaker_failures) == ("closed", 0)
    assert AuditEvent.objects.filter(action="backend.breaker_closed").exists()


def test_an_open_breaker_sends_turns_to_the_fallback(operator_client, scripted, settings):
    settings.TANGLAW_BREAKER_FAILURES = 1
    dead = Backend.objects.create(name="dead", kind="openai_compatible",
                                  base_url=f"http://127.0.0.1:{free_port()}/v1")
    alive = Backend.objects.create(name="alive", kind="openai_compatible",
                                   base_url=scripted.url)
    agent = operator_client.post("/api/agents", data={
        "name": "a", "backend_id": dead.pk, "model": "m",
        "fallbacks": [{"backend_id": alive.pk, "model": "scripted-1"}]},
        content_type="application/json").json()
    agent = Agent.objects.get(pk=agent["id"])
    scripted.add(text("one"), finish())
    first = chat(operator_client, agent)
    assert first["reply"] == "one" and first["route"][0]["type"] == "fallback"
    assert Backend.objects.get(pk=dead.pk).breaker_state == "open"
    scripted.add(text("two"), finish())
    second = chat(operator_client, agent)
    assert second["reply"] == "two" and second["route"] == []  # the dead one was skipped


def test_the_monitor_raises_an_alert_when_a_breaker_opens(fake):
    from monitoring import alerts
    from monitoring.collectors.gpu import GpuCollector
    from monitoring.models import Alert
    from monitoring.worker import Monitor
    from tests.support.fake_nvml import FakeNvml

    backend = Backend.objects.create(name="flaky", kind="vllm", base_url=fake("vllm").url,
                                     breaker_state="open", breaker_failures=5,
                                     breaker_opened_at=timezone.now())
    Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w",
            fixed_probe_interval=30).probe()
    alerts.evaluate()
    alert = Alert.objects.get(rule__name="Circuit breaker open")
    assert alert.state == "firing" and "backend flaky" in alert.message
    assert backend.status != "unhealthy"  # the probe says it is up; chats kept failing
