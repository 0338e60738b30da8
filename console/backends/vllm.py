"""vLLM: `/health` (503 when the engine died), `/version`, `/v1/models`, Prometheus `/metrics`."""

from __future__ import annotations

from console.backends.base import (
    HEALTHY,
    UNHEALTHY,
    Adapter,
    Health,
    LoadedModel,
    ModelInfo,
    _openai_list,
)


class VllmAdapter(Adapter):
    kind = "vllm"
    engine = "vLLM"
    capabilities = frozenset({"loaded_models", "engine_metrics"})
    lifecycle_note = ("vLLM serves the model it was started with (`vllm serve <model>`); "
                      "to change it, restart vLLM — see Deployment plans")
    metric_names = {
        "vllm:num_requests_running": "engine_requests_running",
        "vllm:num_requests_waiting": "engine_requests_waiting",
        "vllm:gpu_cache_usage_perc": "engine_kv_cache_usage",  # before v0.10
        "vllm:kv_cache_usage_perc": "engine_kv_cache_usage",
        "vllm:num_preemptions_total": "engine_preemptions_total",
        "vllm:prompt_tokens_total": "engine_prompt_tokens_total",
        "vllm:generation_tokens_total": "engine_generation_tokens_total",
    }
    # histogram → mean since the engine started, in ms
    histogram_means = {
        "vllm:time_to_first_token_seconds": "engine_ttft_avg_ms",
        "vllm:inter_token_latency_seconds": "engine_itl_avg_ms",  # vLLM ≥ 0.10
        "vllm:time_per_output_token_seconds": "engine_itl_avg_ms",  # before
    }

    async def health(self) -> Health:
        response, ms = await self.timed_get("/health")
        if response.status_code == 503:
            return Health(UNHEALTHY, ms, detail="vLLM reports its engine is dead "
                                                "(HTTP 503 from /health) — restart it")
        self.check_status(response, "/health")
        version = ""
        try:
            data = await self.get_json("/version")
            version = str(data.get("version", "")) if isinstance(data, dict) else ""
        except Exception:  # noqa: BLE001 - /version is optional in some builds
            version = ""
        return Health(HEALTHY, ms, version)

    async def list_models(self) -> list[ModelInfo]:
        data = await self.get_json("/v1/models")
        return [
            ModelInfo(id=m["id"], context_length=m.get("max_model_len"), loaded=True,
                      details={"root": m.get("root", ""), "parent": m.get("parent")})
            for m in _openai_list(data, self)
        ]

    async def loaded_models(self) -> list[LoadedModel]:
        # vLLM serves exactly the models it loaded at start-up
        return [LoadedModel(id=m.id) for m in await self.list_models()]

    async def engine_metrics(self) -> dict[str, float]:
        return await self.scrape_metrics()
