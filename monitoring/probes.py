"""Cheap probes of every enabled backend, a bounded number at a time, each over its own
small pooled httpx client.

Health (status and latency), models and loaded models, and engine metrics
(Prometheus text from vLLM and llama-server, /api/ps from Ollama). Never a
completion: that would cost tokens (or money, on a cloud backend).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import openai

from console import egress
from console.backends import Report, adapter_for, probe
from console.backends.base import BackendError
from console.choices import Status
from console.models import Backend
from monitoring.collectors import Reading

log = logging.getLogger("tanglaw.monitor")
ENGINE_METRICS = ("engine_requests_running", "engine_requests_waiting",
                  "engine_kv_cache_usage", "engine_preemptions_total", "engine_loaded_models",
                  "engine_vram_bytes", "engine_model_bytes", "engine_prompt_tokens_total",
                  "engine_generation_tokens_total", "engine_tokens_per_s", "engine_ttft_avg_ms",
                  "engine_itl_avg_ms")


@dataclass
class ProbeResult:
    backend: Backend
    report: Report
    engine: dict[str, float] = field(default_factory=dict)
    engine_error: str = ""

    def readings(self) -> list[Reading]:
        scope = f"backend:{self.backend.pk}"
        up = 0.0 if self.report.status == Status.UNHEALTHY else 1.0
        out = [Reading("backend_up", scope, up),
               Reading("breaker_open", scope,
                       0.0 if self.backend.breaker_state == "closed" else 1.0)]
        if self.report.latency_ms is not None:
            out.append(Reading("probe_latency_ms", scope, self.report.latency_ms))
        if self.report.status != Status.UNHEALTHY:
            out.append(Reading("models_loaded", scope, float(sum(
                1 for m in self.report.models if m.get("loaded")))))
        out += [Reading(name, scope, self.engine[name]) for name in ENGINE_METRICS
                if name in self.engine]
        return out


ACTIVE_PROBE_TOKENS = 8


async def active_probe(backend: Backend, timeout_s: float = 30.0
                       ) -> tuple[float, float | None] | None:
    """A short streamed completion (8 tokens): its time to first token in ms and, when
    it streamed more than one chunk, its tokens/s. None on failure."""
    adapter = adapter_for(backend)
    client = adapter.chat_client()
    try:
        async with asyncio.timeout(timeout_s):
            model = backend.active_probe_model
            if not model:
                async with adapter.session():
                    models = await adapter.list_models()
                if not models:
                    return None
                model = models[0].id
            started = time.perf_counter()
            first: float | None = None
            last = 0.0
            chunks = 0
            stream = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}],
                max_tokens=ACTIVE_PROBE_TOKENS, temperature=0, stream=True)
            try:
                async for chunk in stream:
                    if chunk.choices and (chunk.choices[0].delta.content or first is None):
                        now = time.perf_counter()
                        first = first or now
                        last, chunks = now, chunks + 1
            finally:
                await stream.close()
            if first is None:
                return None
            rate = (chunks - 1) / (last - first) if chunks > 1 and last > first else None
            return (first - started) * 1000, rate
    except (TimeoutError, BackendError, openai.OpenAIError) as exc:
        log.warning("active probe of %s failed: %s", backend.name, exc)
    return None


# Probes that may run at once. The loop runs every ready callback before it looks at its
# timers again, so 200 probes answered together kept it busy for hundreds of ms (bench/:
# lag p99 213-360 ms); with 8, one pass over the ready probes takes a few ms. A round is
# CPU-bound on a fast network, so it takes no longer; and a probe's latency no longer
# includes the wait behind 199 others.
PROBE_CONCURRENCY = 8
# A probe still unanswered after this long is waiting on the network, not using the CPU:
# it gives its slot to the next, so hanging backends delay the others' start by at most
# len(backends) / PROBE_CONCURRENCY * SLOW_PROBE_S (200 backends: 5 s).
SLOW_PROBE_S = 0.2


async def probe_backends(backends: list, *, deadline_s: float = 15.0,
                         concurrency: int = PROBE_CONCURRENCY) -> list[ProbeResult]:
    slots = asyncio.Semaphore(max(1, concurrency))
    return list(await asyncio.gather(*(_gated(slots, b, deadline_s) for b in backends)))


async def _gated(slots: asyncio.Semaphore, backend, deadline_s: float) -> ProbeResult:
    """`_one` once a slot is free; the slot goes back when it ends or turns slow."""
    await slots.acquire()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release()

    timer = asyncio.get_running_loop().call_later(SLOW_PROBE_S, release)
    try:
        return await _one(backend, deadline_s)
    finally:
        timer.cancel()
        release()


async def _one(backend, deadline_s: float) -> ProbeResult:
    # a small client per backend: one pool shared by all of them scans every connection
    # for every request, which made a round of 200 backends take seconds (bench/)
    try:
        async with egress.client(max_connections=4) as client:
            return await _probe_one(backend, adapter_for(backend, client=client), deadline_s)
    except Exception as exc:  # noqa: BLE001 - one backend must never stop the round
        log.exception("probe of backend %s failed unexpectedly", backend.pk)
        return ProbeResult(backend, Report(Status.UNHEALTHY, error=f"the probe failed: "
                                                                   f"{describe_error(exc)}"))


def describe_error(exc: BaseException) -> str:
    """A one-line reason for an unexpected failure, never a traceback."""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _probe_one(backend, adapter, deadline_s: float) -> ProbeResult:
    try:
        async with asyncio.timeout(deadline_s):
            report = await probe(adapter)
    except TimeoutError:
        return ProbeResult(backend, Report(Status.UNHEALTHY, error=f"no answer within "
                                                                   f"{deadline_s:g}s"))
    result = ProbeResult(backend, report)
    if report.status == Status.UNHEALTHY:
        return result
    try:
        async with asyncio.timeout(deadline_s):
            result.engine = await adapter.engine_metrics()
    except BackendError as exc:
        result.engine_error = exc.message
    except TimeoutError:
        result.engine_error = f"/metrics did not answer within {deadline_s:g}s"
    return result
