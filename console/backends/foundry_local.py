"""Microsoft Foundry Local: the newer service paths first, the legacy ones on 404.

New (the 2.x runtime's web service, tested against the real one): `GET /status`
(`{"endpoints", "modelCachePath", "pid"}`), `/v1/models`, `/models/loaded` (a list),
`GET /models/load/{name}` and `/models/unload/{name}`, which answer an unknown model
with a 404 carrying an OpenAI-shaped error — not a missing route. Legacy (the 0.x CLI
service): `/openai/status`, `/openai/loadedmodels`, `/openai/load/{name}`, and the
catalog at `/foundry/list`. A 404 that is not JSON is a route the service lacks: then
the legacy path is tried. JSON key casing differs between versions, so keys are read
case-insensitively. Neither service downloads over HTTP here: the CLI does.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from console.backends.base import (
    HEALTHY,
    Adapter,
    BackendError,
    Health,
    LoadedModel,
    get_ci,
)


class FoundryLocalAdapter(Adapter):
    kind = "foundry_local"
    engine = "Foundry Local"
    capabilities = frozenset({"loaded_models", "load", "unload"})
    lifecycle_note = ("Foundry Local downloads models with its CLI: run `foundry model "
                      "download <alias>` on the machine")

    async def get_first(self, *paths: str):
        """GET the first path that exists (the newer service), falling back on 404."""
        for path in paths:
            response = await self.request("GET", path)
            if response.status_code == 404 and path != paths[-1]:
                continue
            self.check_status(response, path)
            return self.parse_json(response, path), path
        raise AssertionError("unreachable")

    async def health(self) -> Health:
        started = time.perf_counter()
        data, path = await self.get_first("/status", "/openai/status")
        ms = (time.perf_counter() - started) * 1000
        if not isinstance(data, dict) or get_ci(data, "endpoints") is None and get_ci(
            data, "modelDirPath"
        ) is None:
            raise BackendError(f"this does not look like Foundry Local: {path} has no status")
        return Health(HEALTHY, ms, str(get_ci(data, "version", "") or ""))

    async def _lifecycle(self, action: str, model: str, **params) -> None:
        quoted = quote(model, safe="")
        for path in (f"/models/{action}/{quoted}", f"/openai/{action}/{quoted}"):
            response = await self.request("GET", path, params=params or None)
            if response.status_code == 404 and path.startswith("/models/") \
                    and not _openai_error(response):
                continue  # an older service without the route: the legacy path
            if response.status_code == 404:
                said = _openai_error(response)
                raise BackendError(f"Foundry Local does not know the model {model}"
                                   f"{f' ({said})' if said else ''} — download it first: "
                                   f"foundry model download {model}", status_code=404)
            self.check_status(response, path)
            return

    async def load(self, model: str, keep_alive: str | None = None) -> None:
        await self._lifecycle("load", model)

    async def unload_model(self, model: str) -> None:
        await self._lifecycle("unload", model)

    async def catalog(self) -> list[dict]:
        """What Foundry Local can download (`/foundry/list`, where the service has it):
        name, alias, size, tool calling, and the CLI command that downloads it."""
        response = await self.request("GET", "/foundry/list")
        if response.status_code == 404:
            return []
        self.check_status(response, "/foundry/list")
        data = self.parse_json(response, "/foundry/list")
        out = []
        for item in data if isinstance(data, list) else []:
            if not isinstance(item, dict):
                continue
            name = str(get_ci(item, "name", "") or "")
            alias = str(get_ci(item, "alias", "") or name)
            size_mb = get_ci(item, "fileSizeMb")
            out.append({"name": name, "alias": alias,
                        "size_bytes": int(size_mb * 1024 * 1024) if isinstance(
                            size_mb, int | float) else None,
                        "tools": get_ci(item, "supportsToolCalling"),
                        "command": f"foundry model download {alias}"})
        return out

    async def tool_support(self, models: list[str]) -> dict[str, bool]:
        try:
            entries = await self.catalog()
        except BackendError:
            return {}
        known = {e["name"]: e["tools"] for e in entries if isinstance(e["tools"], bool)}
        known.update({e["alias"]: e["tools"] for e in entries if isinstance(e["tools"], bool)})
        return {m: known[m] for m in models if m in known}

    async def loaded_models(self) -> list[LoadedModel]:
        data, _ = await self.get_first("/models/loaded", "/openai/loadedmodels")
        items = get_ci(data, "models", data) if isinstance(data, dict) else data
        loaded = []
        for item in items if isinstance(items, list) else []:
            name = item if isinstance(item, str) else get_ci(item, "name") or get_ci(item, "id")
            if name:
                loaded.append(LoadedModel(id=str(name)))
        return loaded


def _openai_error(response) -> str:
    """The message of an OpenAI-shaped JSON error body (`{"error": {"message": …}}`), or ""."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:200] if message else ""
