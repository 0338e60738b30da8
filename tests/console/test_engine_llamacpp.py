"""The llamacpp and openai_compatible adapters against llama.cpp's real llama-server."""

import asyncio

import pytest

from console.backends import adapter_class, probe
from console.backends.base import Endpoint
from console.models import Backend
from tests.support.llama_server import LlamaServer

pytestmark = pytest.mark.engine


def run(coro):
    return asyncio.run(coro)


def test_llamacpp_adapter_health_models_and_metrics(llama_server):
    adapter = adapter_class("llamacpp")(Endpoint(llama_server.url))
    health = run(adapter.health())
    assert health.status == "healthy" and health.latency_ms is not None
    models = run(adapter.list_models())
    assert [m.id for m in models] == ["tiny"]
    assert models[0].size_bytes and models[0].size_bytes > 100_000
    assert models[0].context_length == 256  # per slot: -c 512 shared by --parallel 2
    assert [m.id for m in run(adapter.loaded_models())] == ["tiny"]
    metrics = run(adapter.engine_metrics())
    assert "llamacpp:prompt_tokens_total" in metrics
    assert "engine_requests_running" in metrics and "engine_requests_waiting" in metrics


def test_openai_compatible_adapter_on_the_same_server(llama_server):
    adapter = adapter_class("openai_compatible")(Endpoint(llama_server.url + "/v1"))
    report = run(probe(adapter))
    assert report.status == "healthy"
    assert [m["id"] for m in report.models] == ["tiny"]


@pytest.mark.parametrize("kind,suffix", [("llamacpp", ""), ("openai_compatible", "/v1")])
def test_streamed_chat_completion_with_real_tokens(llama_server, kind, suffix):
    adapter = adapter_class(kind)(Endpoint(llama_server.url + suffix, read_timeout_s=30))

    async def chat():
        client = adapter.chat_client()
        stream = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello edge"}],
            max_tokens=12, temperature=0.0, stream=True,
            stream_options={"include_usage": True})
        pieces, usage, timings, finish = [], None, None, None
        async for chunk in stream:
            if chunk.choices:
                if chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
            timings = getattr(chunk, "timings", None) or (chunk.model_extra or {}).get(
                "timings") or timings
        await client.close()
        return pieces, usage, timings, finish

    pieces, usage, timings, finish = run(chat())
    assert len(pieces) >= 2  # streamed, not one blob
    assert usage.completion_tokens == 12 and usage.prompt_tokens > 0
    assert finish == "length"
    assert timings["predicted_n"] == 12 and timings["predicted_per_second"] > 0


@pytest.mark.django_db
def test_registered_server_is_healthy_then_unhealthy_after_it_stops(operator_client,
                                                                    tmp_path):
    server = LlamaServer(tmp_path, alias="edge-tiny").start()
    try:
        created = operator_client.post("/api/backends", data={
            "name": "llama", "kind": "llamacpp", "base_url": server.url},
            content_type="application/json").json()
        first = operator_client.post(f"/api/backends/{created['id']}/test").json()
        assert first["status"] == "healthy"
        assert first["models"][0]["id"] == "edge-tiny" and first["models"][0]["loaded"] is True
    finally:
        server.stop()
    second = operator_client.post(f"/api/backends/{created['id']}/test").json()
    assert second["status"] == "unhealthy"
    assert second["error"] == (f"connection refused at 127.0.0.1:{server.port} — "
                               f"is llama-server running?")
    backend = Backend.objects.get(pk=created["id"])
    assert backend.status == "unhealthy" and "connection refused" in backend.status_reason
