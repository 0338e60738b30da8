"""Ollama: native API on :11434 (`/api/version`, `/api/tags`, `/api/ps`), OpenAI API under /v1."""

from __future__ import annotations

from console.backends.base import (
    HEALTHY,
    Adapter,
    BackendError,
    Health,
    LoadedModel,
    ModelInfo,
    parse_time,
)


class OllamaAdapter(Adapter):
    kind = "ollama"
    engine = "Ollama"
    capabilities = frozenset({"loaded_models"})  # pull, load, unload: with model lifecycle

    async def health(self) -> Health:
        response, ms = await self.timed_get("/api/version")
        self.check_status(response, "/api/version")
        data = self.parse_json(response, "/api/version")
        if not isinstance(data, dict) or "version" not in data:
            raise BackendError("this does not look like Ollama: /api/version has no version")
        return Health(HEALTHY, ms, str(data["version"]))

    async def list_models(self) -> list[ModelInfo]:
        data = await self.get_json("/api/tags")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise BackendError("this does not look like Ollama: /api/tags has no model list")
        models = []
        for m in data["models"]:
            details = m.get("details") or {}
            models.append(ModelInfo(
                id=m.get("name") or m.get("model", ""),
                size_bytes=m.get("size"),
                parameter_size=details.get("parameter_size", ""),
                quantization=details.get("quantization_level", ""),
                family=details.get("family", ""),
                details={"digest": m.get("digest", ""), "modified_at": m.get("modified_at", ""),
                         "format": details.get("format", "")},
            ))
        return models

    async def unload_model(self, model: str) -> None:
        """Free a loaded model's memory now (`keep_alive: 0`, as Ollama documents)."""
        response = await self.request("POST", "/api/generate",
                                      json={"model": model, "keep_alive": 0})
        self.check_status(response, "/api/generate")
        data = self.parse_json(response, "/api/generate")
        if isinstance(data, dict) and data.get("error"):
            raise BackendError(f"Ollama could not unload {model}: {data['error']}")

    async def loaded_models(self) -> list[LoadedModel]:
        data = await self.get_json("/api/ps")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise BackendError("this does not look like Ollama: /api/ps has no model list")
        return [
            LoadedModel(
                id=m.get("name") or m.get("model", ""),
                size_bytes=m.get("size"),
                vram_bytes=m.get("size_vram"),
                expires_at=parse_time(m.get("expires_at")),
            )
            for m in data["models"]
        ]

    async def engine_metrics(self) -> dict[str, float]:
        # Ollama has no /metrics; what it says about memory comes from /api/ps
        loaded = await self.loaded_models()
        return {
            "engine_loaded_models": float(len(loaded)),
            "engine_vram_bytes": float(sum(m.vram_bytes or 0 for m in loaded)),
            "engine_model_bytes": float(sum(m.size_bytes or 0 for m in loaded)),
        }
