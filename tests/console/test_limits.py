"""Rate limits answer 429 with Retry-After (and are audited); caps on concurrent
generations per user and per backend refuse with the reason."""

import pytest
from django.core.cache import cache

from console import limits
from console.actions import Refused
from console.models import AuditEvent, Backend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_the_api_rate_limit_answers_429_with_retry_after(viewer_client, monkeypatch):
    from console.api import api

    monkeypatch.setattr(api.throttle[0], "num_requests", 3)  # 3 a minute, for the test
    codes = [viewer_client.get("/api/backends").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = viewer_client.get("/api/backends")
    assert int(limited["Retry-After"]) >= 1
    assert "try again in" in limited.json()["detail"]
    event = AuditEvent.objects.filter(action="request.rate_limited").last()
    assert event.outcome == "denied" and event.actor == "vera"
    assert event.detail == "GET /api/backends"


def test_generation_caps_per_user_and_per_backend(settings, operator_user, viewer_user):
    settings.TANGLAW_MAX_GENERATIONS_PER_USER = 2
    settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND = 3
    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://10.0.0.1:8000")
    a = limits.acquire(operator_user.pk, backend.pk)
    b = limits.acquire(operator_user.pk, backend.pk)
    with pytest.raises(Refused, match="you already have 2 replies"):
        limits.acquire(operator_user.pk, backend.pk)
    c = limits.acquire(viewer_user.pk, backend.pk)
    with pytest.raises(Refused, match="the backend is generating 3 replies"):
        limits.acquire(viewer_user.pk, backend.pk)
    limits.release(a)
    d = limits.acquire(operator_user.pk, backend.pk)  # a slot came back
    for keys in (b, c, d):
        limits.release(keys)
    assert cache.get(f"tanglaw:gen:user:{operator_user.pk}") == 0


def test_a_chat_over_the_cap_is_refused(operator_client, operator_user, scripted, settings):
    settings.TANGLAW_MAX_GENERATIONS_PER_USER = 1
    backend = Backend.objects.create(name="s", kind="openai_compatible", base_url=scripted.url)
    agent = operator_client.post("/api/agents", data={
        "name": "a", "backend_id": backend.pk, "model": "scripted-1"},
        content_type="application/json").json()
    held = limits.acquire(operator_user.pk, backend.pk)  # a reply in flight elsewhere
    busy = operator_client.post(f"/api/agents/{agent['id']}/chat", data={"message": "hi"},
                                content_type="application/json")
    assert busy.status_code == 409 and "wait for one to finish" in busy.json()["detail"]
    limits.release(held)
    assert operator_client.post(f"/api/agents/{agent['id']}/chat", data={"message": "hi"},
                                content_type="application/json").status_code == 200


def test_an_oversized_body_gets_413_naming_the_limit(operator_client):
    body = '{"name": "' + "x" * 3_000_000 + '"}'
    response = operator_client.post("/api/agents", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is larger than 2.5 MB"}
