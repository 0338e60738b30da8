"""Backend adapters: a registry from kind to class, and the checks built on them."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from console.backends.base import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    Adapter,
    BackendError,
    Endpoint,
    Health,
    ModelInfo,
)

REGISTRY = {
    "ollama": "console.backends.ollama.OllamaAdapter",
    "foundry_local": "console.backends.foundry_local.FoundryLocalAdapter",
    "vllm": "console.backends.vllm.VllmAdapter",
    "llamacpp": "console.backends.llamacpp.LlamaCppAdapter",
    "openai_compatible": "console.backends.openai_compatible.OpenAICompatibleAdapter",
}



def adapter_class(kind: str) -> type[Adapter]:
    try:
        return import_string(REGISTRY[kind])
    except KeyError:
        raise BackendError(f"unknown backend kind {kind!r}") from None


def endpoint_for(backend) -> Endpoint:
    return Endpoint(
        base_url=backend.base_url,
        api_key=backend.api_key,
        connect_timeout_s=backend.connect_timeout_s,
        read_timeout_s=backend.read_timeout_s,
    )


def adapter_for(backend, client: httpx.AsyncClient | None = None) -> Adapter:
    """Build the adapter for a Backend row (sync: decrypts the key)."""
    return adapter_class(backend.kind)(endpoint_for(backend), client)


def normalise_base_url(kind: str, url: str) -> str:
    """Native engines take the server root; OpenAI-compatible takes the API root."""
    url = url.rstrip("/")
    if kind != "openai_compatible" and url.endswith("/v1"):
        return url[:-3]
    if kind == "openai_compatible":
        path = url.split("://", 1)[-1].partition("/")[2]
        if not path:
            return url + "/v1"
    return url


@dataclass
class Report:
    """The answer to "Test connection": status, version, latency, models, or why not."""

    status: str
    latency_ms: float | None = None
    version: str = ""
    error: str = ""
    models: list[dict[str, Any]] = field(default_factory=list)
    # False when the probe did not ask (health only) or the engine did not answer: then
    # `models` being empty says nothing about how many it has
    models_listed: bool = False
    # whether the engine can unload models over its API (llama-server: in router mode)
    unloads: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def model_count(self) -> int | None:
        """How many models the engine listed; None when this probe does not know."""
        return len(self.models) if self.models_listed else None


MODEL_FIELDS = tuple(f.name for f in fields(ModelInfo) if f.name != "details")


def _model_dict(model: ModelInfo) -> dict[str, Any]:
    # engine-specific extras (`details`) stay out of reports; the rest are scalars, so no
    # asdict(), whose deep copy of every model's raw entry took 250 ms for 1,000 models
    out = {name: getattr(model, name) for name in MODEL_FIELDS}
    out["expires_at"] = model.expires_at.isoformat() if model.expires_at else None
    return out


async def probe(adapter: Adapter, *, with_models: bool = True) -> Report:
    """Health, then models and which are loaded. Never raises."""
    async with adapter.session():
        return await _probe(adapter, with_models=with_models)


async def _probe(adapter: Adapter, *, with_models: bool) -> Report:
    try:
        health: Health = await adapter.health()
    except BackendError as exc:
        return Report(UNHEALTHY, error=exc.message)
    report = Report(health.status, health.latency_ms, health.version, health.detail)
    if health.status == UNHEALTHY or not with_models:
        return report
    problems = []
    try:
        models = await adapter.list_models()
    except BackendError as exc:
        models = []
        problems.append(f"models: {exc.message}")
    else:
        report.models_listed = True
    if "loaded_models" in adapter.capabilities and models:
        try:
            loaded = {m.id: m for m in await adapter.loaded_models()}
        except BackendError as exc:
            problems.append(f"loaded models: {exc.message}")
        else:
            for model in models:
                hit = loaded.get(model.id)
                model.loaded = hit is not None
                if hit:
                    model.vram_bytes, model.expires_at = hit.vram_bytes, hit.expires_at
    report.models = [_model_dict(m) for m in models]
    report.unloads = adapter.unloads()
    if problems:
        report.status = DEGRADED
        report.error = "; ".join(filter(None, [report.error, *problems]))
    elif report.status == HEALTHY and (health.latency_ms or 0) > settings.TANGLAW_SLOW_MS:
        report.status = DEGRADED
        report.error = f"slow: /health answered in {health.latency_ms:.0f} ms"
    return report


async def probe_many(adapters: list[Adapter], *, with_models: bool = True) -> list[Report]:
    return list(await asyncio.gather(*(probe(a, with_models=with_models) for a in adapters)))
