"""The Foundry Local adapter against the real 2.x runtime (PyPI foundry-local-sdk, its
native library, its web service on loopback). This machine cannot give it a model (its
catalog downloads need the internet), so: health, the empty model lists, and what it
says for load, unload and chat of a model it does not have — the same shapes the fake
(tests/support/fake_engine.py) now answers with."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from console.backends import adapter_for, probe
from console.backends.base import BackendError
from console.models import Backend

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    pytest.importorskip("foundry_local_sdk", reason="pip install -e '.[test]' (make test)")
    from tests.support.foundry_local import FoundryLocalRuntime

    server = FoundryLocalRuntime(tmp_path_factory.mktemp("foundry")).start()
    yield server
    server.stop()


def run(coro):
    return asyncio.run(coro)


def test_its_wire_format_is_what_the_adapter_and_the_fake_expect(runtime):
    status = httpx.get(runtime.url + "/status").json()
    assert set(status) >= {"endpoints", "modelCachePath", "pid"}
    assert status["endpoints"] == [runtime.url]
    assert httpx.get(runtime.url + "/v1/models").json() == {"data": [], "object": "list"}
    assert httpx.get(runtime.url + "/models/loaded").json() == []
    unknown = httpx.get(runtime.url + "/models/load/nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Model not found: No model matching 'nope'"
    missing_route = httpx.get(runtime.url + "/openai/status")  # no legacy paths in 2.x
    assert missing_route.status_code == 404 and "No mapping" in missing_route.text
    assert httpx.post(runtime.url + "/models/load/nope").status_code == 404  # GET only


@pytest.mark.django_db
def test_the_adapter_probes_and_lists_it(runtime):
    backend = Backend(name="foundry", kind="foundry_local", base_url=runtime.url)
    adapter = adapter_for(backend)
    health = run(adapter.health())
    assert health.status == "healthy"
    assert run(adapter.list_models()) == [] and run(adapter.loaded_models()) == []
    report = run(probe(adapter_for(backend)))
    assert report.status == "healthy" and report.models == []
    assert run(adapter.catalog()) == []  # no /foundry/list: the page shows the CLI command


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["load", "unload_model"])
def test_a_model_it_does_not_have_is_named_with_its_own_words(runtime, action):
    adapter = adapter_for(Backend(name="f", kind="foundry_local", base_url=runtime.url))
    with pytest.raises(BackendError) as failed:
        run(getattr(adapter, action)("phi-4-mini"))
    message = failed.value.message
    assert "does not know the model phi-4-mini" in message
    assert "No model matching 'phi-4-mini'" in message and not failed.value.retryable


@pytest.mark.django_db
def test_a_chat_with_a_model_it_does_not_have_says_so(runtime, admin_client):
    backend = Backend.objects.create(name="foundry", kind="foundry_local",
                                     base_url=runtime.url)
    client = adapter_for(backend).chat_client()
    with pytest.raises(openai.NotFoundError) as failed:
        run(client.chat.completions.create(model="phi-4-mini", messages=[
            {"role": "user", "content": "hi"}], max_tokens=4))
    assert "No model matching 'phi-4-mini'" in str(failed.value)
    agent = admin_client.post("/api/agents", json.dumps({
        "name": "on-foundry", "backend_id": backend.pk, "model": "phi-4-mini",
        "system_prompt": "Be brief."}), content_type="application/json")
    assert agent.status_code == 201, agent.content
    reply = admin_client.post(f"/api/agents/{agent.json()['id']}/chat",
                              json.dumps({"message": "hello"}), content_type="application/json")
    body = reply.json()
    assert "No model matching 'phi-4-mini'" in json.dumps(body), body
    assert "is the model 'phi-4-mini' served there?" in json.dumps(body)
