"""llama.cpp's llama-server: `/health` (503 while loading), `/props`, `/v1/models`,
`/metrics` (only with --metrics); router mode adds `/models`."""

from __future__ import annotations

from console.backends.base import (
    DEGRADED,
    HEALTHY,
    Adapter,
    BackendError,
    Health,
    LoadedModel,
    ModelInfo,
    _openai_list,
)


class LlamaCppAdapter(Adapter):
    kind = "llamacpp"
    engine = "llama-server"
    capabilities = frozenset({"loaded_models", "engine_metrics", "load", "unload"})
    lifecycle_note = ("llama-server serves the model it was started with; start it in router "
                      "mode (several models) to load and unload from here, and download GGUF "
                      "files yourself")

    # router mode, as the last loaded_models() saw it (None: not asked yet)
    router: bool | None = None

    def unloads(self) -> bool:
        return bool(self.router)

    async def router_mode(self) -> bool:
        response = await self.request("GET", "/models")
        if response.status_code != 200:
            return False
        data = self.parse_json(response, "/models")
        entries = data.get("data", data.get("models", [])) if isinstance(data, dict) else data
        return isinstance(entries, list) and any(
            isinstance(e, dict) and "status" in e for e in entries)

    async def model_actions(self) -> dict[str, str]:
        router = await self.router_mode()
        return {"pull": self.lifecycle_note, "delete": self.lifecycle_note,
                "load": "" if router else self.lifecycle_note,
                "unload": "" if router else self.lifecycle_note}

    async def _router(self, action: str, model: str) -> None:
        response = await self.request("POST", f"/models/{action}", json={"model": model})
        if response.status_code == 404:
            raise BackendError(self.lifecycle_note)
        self.check_status(response, f"/models/{action}")

    async def load(self, model: str, keep_alive: str | None = None) -> None:
        await self._router("load", model)

    async def unload_model(self, model: str) -> None:
        await self._router("unload", model)
    metric_names = {
        "llamacpp:requests_processing": "engine_requests_running",
        "llamacpp:requests_deferred": "engine_requests_waiting",
        "llamacpp:kv_cache_usage_ratio": "engine_kv_cache_usage",
        "llamacpp:prompt_tokens_total": "engine_prompt_tokens_total",
        "llamacpp:tokens_predicted_total": "engine_generation_tokens_total",
        "llamacpp:predicted_tokens_seconds": "engine_tokens_per_s",
    }

    async def health(self) -> Health:
        response, ms = await self.timed_get("/health")
        if response.status_code == 503:
            return Health(DEGRADED, ms, detail="llama-server is loading its model")
        self.check_status(response, "/health")
        data = self.parse_json(response, "/health")
        if not isinstance(data, dict) or data.get("status") not in ("ok", "no slot available"):
            raise BackendError("this does not look like llama-server: /health has no status")
        version = ""
        try:
            props = await self.get_json("/props")
            version = str(props.get("build_info", "")) if isinstance(props, dict) else ""
        except BackendError:
            pass  # /props can be disabled; health is what matters
        return Health(HEALTHY, ms, version)

    async def list_models(self) -> list[ModelInfo]:
        data = await self.get_json("/v1/models")
        models = []
        for m in _openai_list(data, self):
            meta = m.get("meta") or {}
            params = meta.get("n_params")
            models.append(ModelInfo(
                id=m["id"],
                size_bytes=meta.get("size"),
                parameter_size=_human_params(params) if params else "",
                quantization=str(meta.get("ftype", "")),
                context_length=meta.get("n_ctx") or meta.get("n_ctx_train"),
                details={"n_vocab": meta.get("n_vocab"), "n_params": params},
            ))
        return models

    async def loaded_models(self) -> list[LoadedModel]:
        response = await self.request("GET", "/models")
        self.router = False
        if response.status_code == 404:
            # single-model mode: the model it serves is the one loaded
            return [LoadedModel(id=m.id, size_bytes=m.size_bytes) for m in await self.list_models()]
        self.check_status(response, "/models")
        data = self.parse_json(response, "/models")
        entries = data.get("data", data.get("models", [])) if isinstance(data, dict) else data
        entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        if not any("status" in e for e in entries):
            # not router mode: newer builds answer /models like /v1/models, no status
            return [LoadedModel(id=m.id, size_bytes=m.size_bytes) for m in await self.list_models()]
        self.router = True
        loaded = []
        for entry in entries:
            status = entry.get("status")
            state = status.get("value") if isinstance(status, dict) else status
            if state == "loaded":
                loaded.append(LoadedModel(id=entry.get("id") or entry.get("name", "")))
        return loaded

    async def engine_metrics(self) -> dict[str, float]:
        response = await self.request("GET", "/metrics")
        if response.status_code in (404, 501):
            raise BackendError("llama-server has no /metrics — start it with --metrics")
        return await self.scrape_metrics(response)  # not a second GET of a large body


def _human_params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
