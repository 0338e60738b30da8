"""Ollama: native API on :11434 (`/api/version`, `/api/tags`, `/api/ps`), OpenAI API under /v1."""

from __future__ import annotations

import asyncio
import json

import httpx

from console import egress
from console.backends.base import (
    HEALTHY,
    Adapter,
    BackendError,
    Health,
    LoadedModel,
    ModelInfo,
    parse_time,
)
from console.urlsafety import UnsafeURL


class OllamaAdapter(Adapter):
    kind = "ollama"
    engine = "Ollama"
    capabilities = frozenset({"loaded_models", "pull", "load", "unload", "delete"})

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

    async def pull(self, model: str):
        """POST /api/pull, streamed NDJSON. Ollama reports failures as an `{"error"}` line
        with HTTP 200, so every line is checked; the stream closes when we stop reading."""
        client = self._client or egress.client()
        try:
            async with client.stream("POST", self.base_url + "/api/pull",
                                     json={"model": model, "stream": True},
                                     headers=self._headers(),
                                     timeout=httpx.Timeout(None, connect=self.endpoint
                                                           .connect_timeout_s)) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise BackendError(f"Ollama refused the pull (HTTP {response.status_code}): "
                                       f"{_error_text(body)}")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise BackendError(f"Ollama sent a line that is not JSON: "
                                           f"{line[:100]!r}") from None
                    if "error" in event:
                        raise BackendError(f"Ollama: {event['error']}")
                    yield event
        except httpx.HTTPError as exc:
            raise self.translate(exc, "/api/pull") from None
        except UnsafeURL as exc:
            raise BackendError(f"refused to connect to {self.base_url}: {exc}") from None
        finally:
            if self._client is None:
                await client.aclose()

    async def tool_support(self, models: list[str]) -> dict[str, bool]:
        """`/api/show` lists a model's capabilities; "tools" means it can call tools."""
        async def one(name: str) -> tuple[str, bool | None]:
            try:
                response = await self.request("POST", "/api/show", json={"model": name})
                data = self.parse_json(response, "/api/show") if response.status_code == 200 \
                    else {}
            except BackendError:
                return name, None
            capabilities = data.get("capabilities") if isinstance(data, dict) else None
            return name, ("tools" in capabilities) if isinstance(capabilities, list) else None

        results = await asyncio.gather(*(one(m) for m in models[:50]))
        return {name: value for name, value in results if value is not None}

    async def load(self, model: str, keep_alive: str | None = None) -> None:
        """An empty generate request loads the model and keeps it for `keep_alive`."""
        body: dict = {"model": model}
        if keep_alive:
            body["keep_alive"] = keep_alive
        response = await self.request("POST", "/api/generate", json=body)
        self.check_status(response, "/api/generate")

    async def delete_model(self, model: str) -> None:
        response = await self.request("DELETE", "/api/delete", json={"model": model})
        if response.status_code == 404:
            raise BackendError(f"Ollama has no model named {model}")
        self.check_status(response, "/api/delete")

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


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    return str(data.get("error", body))[:200] if isinstance(data, dict) else body[:200]
