"""Large engine answers: a big /metrics body is parsed in a worker thread, not on the event
loop; llama-server's /metrics is fetched once; reports copy no engine extras."""

import asyncio
import threading
import time

from console.backends import adapter_class, probe
from console.backends import base as backends_base
from console.backends.base import OFF_LOOP_BYTES, Endpoint
from tests.support.fake_engine import VLLM_METRICS

# a vLLM with many models and label sets: one gauge per (model, engine) pair
PADDING = "".join(
    f'vllm:num_requests_swapped{{engine="{i % 4}",model_name="org/model-{i}"}} 1.0\n'
    for i in range(2000))
LARGE_METRICS = VLLM_METRICS + "# TYPE vllm:num_requests_swapped gauge\n" + PADDING


def adapter(kind, url):
    return adapter_class(kind)(Endpoint(url))


def parsing_threads(monkeypatch) -> list[int]:
    """The thread each Prometheus parse ran on."""
    threads: list[int] = []
    real = backends_base.parse_prometheus

    def recording(text):
        threads.append(threading.get_ident())
        return real(text)

    monkeypatch.setattr(backends_base, "parse_prometheus", recording)
    return threads


def serve_metrics(engine, body: str) -> None:
    original = engine.route_vllm
    engine.route_vllm = lambda req, m, p: (
        (200, body, "text/plain; version=0.0.4") if p == "/metrics" else original(req, m, p))


def test_a_large_metrics_body_is_parsed_off_the_loop(fake, monkeypatch):
    assert len(LARGE_METRICS.encode()) > OFF_LOOP_BYTES
    engine = fake("vllm")
    serve_metrics(engine, LARGE_METRICS)
    threads = parsing_threads(monkeypatch)

    async def scrape():
        return threading.get_ident(), await adapter("vllm", engine.url).engine_metrics()

    loop_thread, metrics = asyncio.run(scrape())
    assert len(threads) == 1 and threads[0] != loop_thread
    assert metrics["engine_requests_waiting"] == 7.0
    assert metrics["vllm:num_requests_swapped"] == 2000.0  # summed over every label set


def test_large_bodies_are_parsed_one_at_a_time(fake, monkeypatch):
    """Parsing holds the GIL: several threads at once would starve the loop of it."""
    engine = fake("vllm")
    serve_metrics(engine, LARGE_METRICS)
    running = {"now": 0, "most": 0}
    lock = threading.Lock()
    real = backends_base.parse_prometheus

    def slow(text):
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.05)  # in the worker thread: the others would start meanwhile
        with lock:
            running["now"] -= 1
        return real(text)

    monkeypatch.setattr(backends_base, "parse_prometheus", slow)

    async def scrape_four():
        return await asyncio.gather(*(adapter("vllm", engine.url).engine_metrics()
                                      for _ in range(4)))

    results = asyncio.run(scrape_four())
    assert running["most"] == 1
    assert [r["engine_requests_waiting"] for r in results] == [7.0] * 4


def test_a_small_metrics_body_is_parsed_inline(fake, monkeypatch):
    engine = fake("vllm")
    threads = parsing_threads(monkeypatch)

    async def scrape():
        return threading.get_ident(), await adapter("vllm", engine.url).engine_metrics()

    loop_thread, metrics = asyncio.run(scrape())
    assert threads == [loop_thread]  # no thread hop for a few hundred bytes
    assert metrics["engine_requests_running"] == 3.0


def test_llamacpp_metrics_are_fetched_once(fake):
    engine = fake("llamacpp")
    metrics = asyncio.run(adapter("llamacpp", engine.url).engine_metrics())
    assert metrics["engine_prompt_tokens_total"] == 120
    assert [r["path"] for r in engine.requests].count("/metrics") == 1


def test_report_models_carry_no_engine_extras(fake):
    report = asyncio.run(probe(adapter("ollama", fake("ollama").url)))
    loaded = next(m for m in report.models if m["loaded"])
    assert set(loaded) == {"id", "size_bytes", "parameter_size", "quantization", "family",
                           "context_length", "loaded", "vram_bytes", "expires_at"}
    assert loaded["expires_at"].startswith("2026-11-24T14:38:31.837530")
    assert loaded["quantization"] == "Q4_K_M" and loaded["vram_bytes"] == 995000000
