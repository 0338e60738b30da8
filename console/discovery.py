"""Find inference engines on this machine: well-known loopback ports and the Foundry CLI.

Each open port is identified by the engine's own endpoints. Nothing is
registered here; the operator (or `discover_backends --register`) decides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from dataclasses import asdict, dataclass

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings

from console import egress

log = logging.getLogger("tanglaw.discovery")

URL_RE = re.compile(r"https?://[\w.\-\[\]:]+")


@dataclass
class Candidate:
    kind: str
    base_url: str
    name: str
    version: str = ""
    models: int = 0
    registered_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


async def _json(client: httpx.AsyncClient, url: str):
    try:
        response = await client.get(url)
        if response.status_code != 200:
            return None
        return response.json()
    except (httpx.HTTPError, ValueError):
        return None


async def identify(client: httpx.AsyncClient, host: str, port: int) -> Candidate | None:
    root = f"http://{host}:{port}"
    version = await _json(client, root + "/api/version")
    if isinstance(version, dict) and "version" in version:
        tags = await _json(client, root + "/api/tags")
        if isinstance(tags, dict) and isinstance(tags.get("models"), list):
            return Candidate("ollama", root, f"ollama-{port}", str(version["version"]),
                             len(tags["models"]))
    models = await _json(client, root + "/v1/models")
    count = len(models["data"]) if isinstance(models, dict) and isinstance(
        models.get("data"), list) else 0
    props = await _json(client, root + "/props")
    if isinstance(props, dict) and ("default_generation_settings" in props
                                    or "total_slots" in props):
        return Candidate("llamacpp", root, f"llamacpp-{port}",
                         str(props.get("build_info", "")), count)
    version = await _json(client, root + "/version")
    owners = {m.get("owned_by") for m in models["data"]} if count else set()
    if (isinstance(version, dict) and "version" in version) or "vllm" in owners:
        return Candidate("vllm", root, f"vllm-{port}",
                         str((version or {}).get("version", "")), count)
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        name = "lm-studio" if port == 1234 else f"openai-{port}"
        return Candidate("openai_compatible", root + "/v1", name, "", count)
    return None


async def _foundry_url() -> str | None:
    cli = shutil.which(str(settings.TANGLAW_FOUNDRY_CLI))
    if not cli:
        return None
    for args in (("server", "status"), ("service", "status")):  # newer CLI, then older
        try:
            proc = await asyncio.create_subprocess_exec(
                cli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=15)
        except (OSError, TimeoutError):
            continue
        match = URL_RE.search(out.decode(errors="replace"))
        if proc.returncode == 0 and match:
            url = match.group(0)
            return url.split("/", 3)[0] + "//" + url.split("/", 3)[2]
    return None


async def discover(ports: list[int] | None = None, host: str | None = None) -> list[Candidate]:
    host = host or str(settings.TANGLAW_DISCOVERY_HOST)
    ports = ports if ports is not None else settings.TANGLAW_DISCOVERY_PORTS
    timeout = httpx.Timeout(2.0, connect=0.5)
    async with egress.client(timeout=timeout) as client:
        found = await asyncio.gather(*(identify(client, host, p) for p in ports),
                                     return_exceptions=True)
        # one port that answers strangely (or breaks the client) must not hide the rest
        for port, result in zip(ports, found, strict=True):
            if isinstance(result, Exception):
                log.warning("discovery on port %s failed: %s", port, result)
        candidates = [c for c in found if isinstance(c, Candidate)]
        foundry = await _foundry_url()
        if foundry:
            candidates.append(Candidate("foundry_local", foundry, "foundry-local"))
    return candidates


async def answers_like(base_url: str) -> str | None:
    """The kind of engine an http:// address answers like (its own endpoints, as
    discovery tells them apart), or None when it answers like none of them."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(base_url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    async with egress.client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:
        try:
            found = await identify(client, host, port)
        except httpx.HTTPError:
            return None
    return found.kind if found else None


def discover_sync(ports: list[int] | None = None) -> list[Candidate]:
    """Discover, and mark candidates whose URL is already registered."""
    from console.models import Backend

    candidates = async_to_sync(discover)(ports)
    known = {b.base_url.rstrip("/"): b.pk for b in Backend.objects.all()}
    for candidate in candidates:
        candidate.registered_id = known.get(candidate.base_url.rstrip("/"))
    return candidates
