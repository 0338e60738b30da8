"""Every adapter against the faithful fake: the contract, and the operator-facing errors."""

import asyncio

import pytest

from console.backends import adapter_class, normalise_base_url, probe
from console.backends.base import BackendError, Endpoint, parse_prometheus
from tests.support.fake_engine import LLAMACPP_METRICS, VLLM_METRICS
from tests.support.llama_server import free_port


def adapter(kind, url, **kw):
    return adapter_class(kind)(Endpoint(url, **kw))


def run(coro):
    return asyncio.run(coro)


def test_ollama_health_models_loaded_and_metrics(fake):
    engine = fake("ollama")
    a = adapter("ollama", engine.url)
    health = run(a.health())
    assert (health.status, health.version) == ("healthy", "0.12.3")
    assert health.latency_ms is not None and health.latency_ms >= 0
    models = run(a.list_models())
    assert [m.id for m in models] == ["qwen2.5:0.5b", "llama3.2:3b"]
    assert models[0].quantization == "Q4_K_M" and models[0].size_bytes == 397821319
    loaded = run(a.loaded_models())
    assert loaded[0].id == "qwen2.5:0.5b" and loaded[0].vram_bytes == 995000000
    assert loaded[0].expires_at is not None and loaded[0].expires_at.year == 2026
    assert run(a.engine_metrics())["engine_vram_bytes"] == 995000000.0


def test_probe_marks_loaded_models_with_vram(fake):
    report = run(probe(adapter("ollama", fake("ollama").url)))
    by_id = {m["id"]: m for m in report.models}
    assert report.status == "healthy"
    assert by_id["qwen2.5:0.5b"]["loaded"] is True
    assert by_id["qwen2.5:0.5b"]["vram_bytes"] == 995000000
    assert by_id["llama3.2:3b"]["loaded"] is False


def test_vllm_health_models_and_metrics_with_key(fake):
    engine = fake("vllm", api_key="sk-vllm-secret")
    a = adapter("vllm", engine.url, api_key="sk-vllm-secret")
    assert run(a.health()).version == "0.11.0"
    models = run(a.list_models())
    assert models[0].id == "Qwen/Qwen2.5-1.5B-Instruct" and models[0].context_length == 32768
    metrics = run(a.engine_metrics())
    assert metrics["engine_requests_running"] == 3.0
    assert metrics["engine_requests_waiting"] == 7.0
    assert metrics["engine_kv_cache_usage"] == 0.42
    assert metrics["vllm:num_preemptions_total"] == 2.0
    # the key went to /v1 only as a bearer header
    v1 = [r for r in engine.requests if r["path"] == "/v1/models"]
    assert v1 and v1[0]["headers"]["Authorization"] == "Bearer sk-vllm-secret"


def test_vllm_wrong_key_says_check_the_key(fake):
    engine = fake("vllm", api_key="right")
    with pytest.raises(BackendError, match=r"HTTP 401 from /v1/models — check the API key"):
        run(adapter("vllm", engine.url, api_key="wrong").list_models())


def test_vllm_dead_engine_is_unhealthy(fake):
    engine = fake("vllm")
    engine.route_vllm = lambda req, m, p: (503, b"", "text/plain")
    health = run(adapter("vllm", engine.url).health())
    assert health.status == "unhealthy" and "engine is dead" in health.detail


def test_llamacpp_loading_then_healthy(fake):
    engine = fake("llamacpp", loading_polls=1)
    a = adapter("llamacpp", engine.url)
    first = run(a.health())
    assert first.status == "degraded" and "loading" in first.detail
    second = run(a.health())
    assert second.status == "healthy" and second.version == "b6500-fake"


def test_llamacpp_models_metrics_and_router_mode(fake):
    engine = fake("llamacpp", router=True, models=["qwen-small", "phi-mini"])
    a = adapter("llamacpp", engine.url)
    models = run(a.list_models())
    assert models[0].parameter_size == "1.5B" and models[0].context_length == 32768
    assert [m.id for m in run(a.loaded_models())] == ["qwen-small"]
    metrics = run(a.engine_metrics())
    assert metrics["engine_requests_running"] == 1 and metrics["engine_requests_waiting"] == 4


def test_llamacpp_single_model_mode_reports_its_model_loaded(fake):
    engine = fake("llamacpp")
    assert [m.id for m in run(adapter("llamacpp", engine.url).loaded_models())] == ["tiny"]


def test_llamacpp_without_metrics_flag_says_so(fake):
    engine = fake("llamacpp")
    engine.route_llamacpp = lambda req, m, p: (
        (501, {"error": {"message": "This server does not support metrics endpoint."}})
        if p == "/metrics" else (200, {"status": "ok"}))
    with pytest.raises(BackendError, match="--metrics"):
        run(adapter("llamacpp", engine.url).engine_metrics())


@pytest.mark.parametrize("legacy", [False, True])
def test_foundry_new_paths_and_legacy_fallback(fake, legacy):
    engine = fake("foundry_local", foundry_legacy=legacy)
    a = adapter("foundry_local", engine.url)
    assert run(a.health()).status == "healthy"
    assert [m.id for m in run(a.loaded_models())] == ["phi-4-mini-instruct-generic-cpu"]
    paths = [r["path"] for r in engine.requests]
    if legacy:
        assert "/status" in paths and "/openai/status" in paths  # tried new, fell back on 404
    else:
        assert "/openai/status" not in paths


def test_foundry_keys_are_case_insensitive(fake):
    engine = fake("foundry_local")
    engine.route_foundry_local = lambda req, m, p: (
        (200, {"endpoints": ["x"], "modeldirpath": "/m"}) if p == "/status"
        else (200, {"Models": [{"Name": "phi-3.5-mini"}]}))
    a = adapter("foundry_local", engine.url)
    assert run(a.health()).status == "healthy"
    assert [m.id for m in run(a.loaded_models())] == ["phi-3.5-mini"]


def test_openai_compatible_models_and_key(fake):
    engine = fake("openai_compatible", api_key="sk-lmstudio-1234")
    a = adapter("openai_compatible", engine.url, api_key="sk-lmstudio-1234")
    assert run(a.health()).status == "healthy"
    assert [m.id for m in run(a.list_models())] == ["qwen2.5-7b-instruct"]
    assert str(a.chat_client().base_url).rstrip("/") == engine.url


def test_chat_client_has_key_timeouts_and_no_retries(fake):
    a = adapter("ollama", "http://127.0.0.1:11434", api_key="k-123", read_timeout_s=42,
                connect_timeout_s=2)
    client = a.chat_client()
    assert client.max_retries == 0
    assert str(client.base_url).rstrip("/") == "http://127.0.0.1:11434/v1"
    assert client.api_key == "k-123"
    assert client.timeout.read == 42 and client.timeout.connect == 2
    assert type(client.timeout).__module__.startswith(("openai", "httpx2"))


# -- errors an operator can act on ------------------------------------------------

def test_connection_refused_names_the_engine():
    port = free_port()
    with pytest.raises(BackendError) as err:
        run(adapter("ollama", f"http://127.0.0.1:{port}").health())
    assert err.value.message == f"connection refused at 127.0.0.1:{port} — is Ollama running?"
    assert err.value.retryable


def test_html_instead_of_json_says_wrong_engine(fake):
    engine = fake("ollama", fault="html200")
    with pytest.raises(BackendError,
                       match="this does not look like Ollama: /api/version returned HTML"):
        run(adapter("ollama", engine.url).health())


@pytest.mark.parametrize("kind", ["ollama", "vllm", "llamacpp", "foundry_local",
                                  "openai_compatible"])
def test_html_502_from_a_proxy(fake, kind):
    engine = fake(kind, fault="html502")
    report = run(probe(adapter(kind, engine.url)))
    assert report.status == "unhealthy"
    assert "HTTP 502" in report.error and "HTML error page" in report.error
    assert "<html" not in report.error.lower()


@pytest.mark.parametrize("kind", ["ollama", "vllm", "llamacpp", "foundry_local",
                                  "openai_compatible"])
def test_401_everywhere_says_check_the_key(fake, kind):
    engine = fake(kind, fault="401")
    report = run(probe(adapter(kind, engine.url)))
    assert report.status == "unhealthy" and "check the API key" in report.error


def test_stall_times_out_with_the_deadline(fake):
    engine = fake("ollama", fault="stall", stall_s=2)
    with pytest.raises(BackendError, match=r"/api/version on 127.0.0.1:\d+ did not answer "
                                           r"within 0.3s"):
        run(adapter("ollama", engine.url, read_timeout_s=0.3).health())


def test_malformed_json(fake):
    engine = fake("ollama")
    engine.fault = None
    engine.route_ollama = lambda req, m, p: (200, b'{"version": ', "application/json")
    with pytest.raises(BackendError, match="returned invalid JSON"):
        run(adapter("ollama", engine.url).health())


def test_malformed_models_list_degrades_but_keeps_health(fake):
    engine = fake("ollama")
    original = engine.route_ollama
    engine.route_ollama = lambda req, m, p: (
        (200, b"{not json", "application/json") if p == "/api/tags" else original(req, m, p))
    report = run(probe(adapter("ollama", engine.url)))
    assert report.status == "degraded" and "models:" in report.error


def test_connection_reset(fake):
    engine = fake("vllm", fault="reset")
    with pytest.raises(BackendError, match="connection reset by 127.0.0.1"):
        run(adapter("vllm", engine.url).health())


def test_unresolvable_host():
    with pytest.raises(BackendError, match="cannot resolve no-such-host.invalid"):
        run(adapter("ollama", "http://no-such-host.invalid:11434").health())


def test_prometheus_parser_on_real_expositions():
    vllm = parse_prometheus(VLLM_METRICS)
    assert vllm["vllm:time_to_first_token_seconds_count"] == 9.0
    assert vllm["vllm:time_to_first_token_seconds_sum"] == 1.25
    assert "vllm:time_to_first_token_seconds_bucket" not in vllm
    assert parse_prometheus(LLAMACPP_METRICS)["llamacpp:prompt_tokens_total"] == 120
    with pytest.raises(BackendError, match="not valid Prometheus"):
        parse_prometheus("this is { not prometheus")


@pytest.mark.parametrize("kind,url,expected", [
    ("ollama", "http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434"),
    ("llamacpp", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("openai_compatible", "http://127.0.0.1:1234", "http://127.0.0.1:1234/v1"),
    ("openai_compatible", "https://api.openai.com/v1/", "https://api.openai.com/v1"),
])
def test_base_url_normalisation(kind, url, expected):
    assert normalise_base_url(kind, url) == expected


def test_probe_shares_one_connection(fake):
    """One pooled client per probe: health, models and loaded models reuse the connection."""
    engine = fake("ollama")
    run(probe(adapter("ollama", engine.url)))
    peers = {r["peer_port"] for r in engine.requests}
    assert len(engine.requests) == 3 and len(peers) == 1  # one TCP connection
