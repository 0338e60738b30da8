"""The adapter contract every backend kind implements, and what they share.

Adapters are plain async classes over httpx: no ORM, so the monitor, views and
the agent runtime can all use them. Every failure is a BackendError whose
message an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import httpx
import httpx2
from openai import AsyncOpenAI
from openai import Timeout as OpenAITimeout
from prometheus_client.parser import text_string_to_metric_families

from console import egress
from console.urlsafety import UnsafeURL

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
T = TypeVar("T")


class BackendError(Exception):
    """A backend call failed. `message` is for people; `retryable` says if trying again helps."""

    def __init__(self, message: str, *, retryable: bool = False, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


# chat clients per event loop and endpoint (see Adapter.chat_client)
_CHAT_CLIENTS: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, AsyncOpenAI]] = (
    WeakKeyDictionary())
MAX_CHAT_CLIENTS = 64

@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str = ""
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 60.0


@dataclass
class Health:
    status: str
    latency_ms: float | None = None
    version: str = ""
    detail: str = ""


@dataclass
class ModelInfo:
    id: str
    size_bytes: int | None = None
    parameter_size: str = ""
    quantization: str = ""
    family: str = ""
    context_length: int | None = None
    loaded: bool | None = None  # None: the engine cannot say
    vram_bytes: int | None = None
    expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    id: str
    size_bytes: int | None = None
    vram_bytes: int | None = None
    expires_at: datetime | None = None


# Bodies larger than this are parsed in a worker thread: prometheus_client's parser is
# pure Python (a 300 KiB vLLM exposition took ~150 ms), and the loop must keep running
# the other probes and chats meanwhile. One such thread per loop at a time: the parse
# holds the GIL, which the loop gets back within the switch interval (5 ms) from one
# thread but seldom when eight take turns with it (eight scrapes of 240 KiB at once,
# before the filter below: the loop's lag p99 ~2 s inline, 466 ms with eight threads,
# 33 ms with one; with the filter: 225 ms inline, ~23 ms with one thread).
# JSON stays inline: json's C decoder holds the GIL whichever thread runs it.
OFF_LOOP_BYTES = 64 * 1024
_OFF_LOOP_SLOTS: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    WeakKeyDictionary())


async def off_loop(size: int, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` inline for small inputs, in a worker thread from OFF_LOOP_BYTES on."""
    if size < OFF_LOOP_BYTES:
        return func(*args)
    loop = asyncio.get_running_loop()
    slot = _OFF_LOOP_SLOTS.get(loop)
    if slot is None:
        slot = _OFF_LOOP_SLOTS[loop] = asyncio.Semaphore(1)
    async with slot:
        return await asyncio.to_thread(func, *args)


# Histogram buckets are most lines of a large exposition, and skipped anyway: dropped
# before the pure-Python parser reads them, a 240 KiB vLLM body parses 8x faster. A line
# this misses (indented, say) still reaches the parser and is skipped there.
_SKIPPED_LINES = re.compile(r"^[^#\s{]*_(?:bucket|created)[{\s].*$\n?", re.MULTILINE)


def parse_prometheus(text: str) -> dict[str, float]:
    """Flatten Prometheus text to {sample name: value summed over label sets}."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(_SKIPPED_LINES.sub("", text)):
            for sample in family.samples:
                if sample.name.endswith(("_bucket", "_created")):
                    continue
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    except ValueError as exc:
        raise BackendError(f"/metrics is not valid Prometheus text: {exc}") from None
    return values


class Adapter:
    kind: ClassVar[str]
    engine: ClassVar[str]  # how people call the engine, for messages
    capabilities: ClassVar[frozenset[str]] = frozenset()
    api_prefix: ClassVar[str] = "/v1"  # where its OpenAI-compatible API lives
    # Prometheus sample → normalised engine metric name
    metric_names: ClassVar[dict[str, str]] = {}
    # Prometheus histogram → normalised name of its mean (sum / count, seconds → ms)
    histogram_means: ClassVar[dict[str, str]] = {}

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient | None = None):
        self.endpoint = endpoint
        self.base_url = endpoint.base_url.rstrip("/")
        self._client = client

    # -- the contract ------------------------------------------------------
    async def health(self) -> Health:
        raise NotImplementedError

    async def list_models(self) -> list[ModelInfo]:
        data = await self.get_json(f"{self.api_prefix}/models")
        return [ModelInfo(id=str(m.get("id")), details=m) for m in _openai_list(data, self)]

    async def loaded_models(self) -> list[LoadedModel]:
        return []

    async def engine_metrics(self) -> dict[str, float]:
        return {}

    # -- model lifecycle: engines that can override these and list them in capabilities --
    # why an action is impossible here, shown instead of a dead button
    lifecycle_note: ClassVar[str] = ("this engine offers no API to pull, load or unload "
                                     "models")

    async def model_actions(self) -> dict[str, str]:
        """{action: ""} when supported, or {action: "why not"}, for pull/load/unload/delete."""
        return {a: "" if a in self.capabilities else self.lifecycle_note
                for a in ("pull", "load", "unload", "delete")}

    async def tool_support(self, models: list[str]) -> dict[str, bool]:
        """Which models the engine says can call tools (empty: it does not say)."""
        return {}

    async def catalog(self) -> list[dict]:
        """Models the engine can download (Foundry Local); empty for the others."""
        return []

    def unloads(self) -> bool:
        """Can this engine unload a model over its API (as far as the last probe saw)?"""
        return "unload" in self.capabilities

    def pull(self, model: str):
        """An async iterator of progress events {status, digest, total, completed}."""
        raise BackendError(self.lifecycle_note)

    async def load(self, model: str, keep_alive: str | None = None) -> None:
        raise BackendError(self.lifecycle_note)

    async def unload_model(self, model: str) -> None:
        raise BackendError(self.lifecycle_note)

    async def delete_model(self, model: str) -> None:
        raise BackendError(self.lifecycle_note)

    def chat_client(self) -> AsyncOpenAI:
        """The OpenAI SDK client for this endpoint. Inside an event loop it is shared per
        loop and endpoint, so turns reuse warm connections; callers close their streams,
        never the client."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._new_chat_client()
        clients = _CHAT_CLIENTS.setdefault(loop, {})
        key = (self.base_url + self.api_prefix, self.endpoint.api_key or "",
               self.endpoint.read_timeout_s, self.endpoint.connect_timeout_s)
        client = clients.get(key)
        if client is None or client.is_closed():
            if len(clients) >= MAX_CHAT_CLIENTS:  # endpoints edited many times over
                clients.pop(next(iter(clients)))
            client = clients[key] = self._new_chat_client()
        return client

    def _new_chat_client(self) -> AsyncOpenAI:
        try:
            return self._build_chat_client()
        except (httpx2.InvalidURL, httpx.InvalidURL) as exc:
            raise BackendError(f"the backend's URL cannot be used ({exc}); edit the "
                               f"backend and correct it") from None

    def _build_chat_client(self) -> AsyncOpenAI:
        return AsyncOpenAI(
            base_url=self.base_url + self.api_prefix,
            api_key=self.endpoint.api_key or "not-needed",
            # the SDK's own Timeout: openai 3.x runs on httpx2, not httpx
            timeout=OpenAITimeout(self.endpoint.read_timeout_s,
                                  connect=self.endpoint.connect_timeout_s),
            max_retries=0,  # retries and fallback belong to the runtime
            # every connection through the connect-time address check (console.egress)
            http_client=httpx2.AsyncClient(
                transport=egress.async_transport(egress.BACKENDS, httpx2=True,
                                                 max_connections=100),
                trust_env=False),
        )

    # -- shared HTTP -------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self):
        """Share one pooled client across several calls (and keep its set-up out of
        measured latency). A client passed in by the caller is used as is."""
        if self._client is not None:
            yield self
            return
        async with egress.client() as client:
            self._client = client
            try:
                yield self
            finally:
                self._client = None

    def _headers(self) -> dict[str, str]:
        if self.endpoint.api_key:
            return {"Authorization": f"Bearer {self.endpoint.api_key}"}
        return {}

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        timeout = httpx.Timeout(self.endpoint.read_timeout_s,
                                connect=self.endpoint.connect_timeout_s)
        url = self.base_url + path
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            if self._client is not None:
                return await self._client.request(method, url, headers=headers,
                                                  timeout=timeout, **kwargs)
            async with egress.client(timeout=timeout) as client:
                return await client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise self.translate(exc, path) from None
        except UnsafeURL as exc:  # the connect-time address check (console.egress)
            raise BackendError(f"refused to connect to {self.base_url}: {exc}") from None
        except httpx.InvalidURL as exc:  # saved before URLs were checked with this parser
            raise BackendError(f"the backend's URL cannot be used ({exc}); edit the "
                               f"backend and correct it") from None

    def translate(self, exc: httpx.HTTPError, path: str) -> BackendError:
        parts = urlsplit(self.base_url)
        where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        text = str(exc)
        if isinstance(exc, httpx.ConnectTimeout):
            seconds = self.endpoint.connect_timeout_s
            return BackendError(f"no answer from {where} within {seconds:g}s"
                                f" — is the host reachable?", retryable=True)
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"{path} on {where} did not answer within "
                                f"{self.endpoint.read_timeout_s:g}s", retryable=True)
        if isinstance(exc, httpx.ConnectError):
            if "Name or service not known" in text or "nodename nor servname" in text or (
                "Temporary failure in name resolution" in text
            ):
                return BackendError(f"cannot resolve {parts.hostname} — check the host name in "
                                    f"the URL", retryable=True)
            return BackendError(f"connection refused at {where} — is {self.engine} running?",
                                retryable=True)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return BackendError(f"connection reset by {where} while reading {path}",
                                retryable=True)
        return BackendError(f"{path} on {where} failed: {type(exc).__name__}", retryable=True)

    def check_status(self, response: httpx.Response, path: str) -> None:
        code = response.status_code
        if code < 400:
            return
        if code in (401, 403):
            raise BackendError(f"HTTP {code} from {path} — check the API key", status_code=code)
        if _is_html(response):
            raise BackendError(
                f"HTTP {code} from {path}: an HTML error page — is a proxy in front of "
                f"{self.engine}?", retryable=code >= 500, status_code=code)
        raise BackendError(f"HTTP {code} from {path}: {_error_message(response)}",
                           retryable=code >= 500 or code == 429, status_code=code)

    def parse_json(self, response: httpx.Response, path: str) -> Any:
        if _is_html(response):
            raise BackendError(f"this does not look like {self.engine}: {path} returned HTML")
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(
                f"this does not look like {self.engine}: {path} returned invalid JSON"
            ) from None

    async def get_json(self, path: str) -> Any:
        response = await self.request("GET", path)
        self.check_status(response, path)
        return self.parse_json(response, path)

    async def timed_get(self, path: str) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = await self.request("GET", path)
        return response, (time.perf_counter() - started) * 1000

    async def scrape_metrics(self, response: httpx.Response | None = None) -> dict[str, float]:
        """GET /metrics (or read the `response` to it the caller already has) and map the
        engine's names to ours."""
        if response is None:
            response = await self.request("GET", "/metrics")
        self.check_status(response, "/metrics")
        raw = await off_loop(len(response.content), _prometheus_of, response)
        for source, name in self.metric_names.items():
            if source in raw:
                raw[name] = raw[source]
        for family, name in self.histogram_means.items():
            count = raw.get(f"{family}_count")
            if count:
                raw[name] = 1000 * raw.get(f"{family}_sum", 0.0) / count
        return raw


def _prometheus_of(response: httpx.Response) -> dict[str, float]:
    return parse_prometheus(response.text)  # decoding too: off the loop with the parse


def _is_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("content-type", "").lower():
        return True
    return response.content[:100].lstrip().lower().startswith((b"<!doctype", b"<html"))


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:200]
    return str(body)[:200]


def _openai_list(data: Any, adapter: Adapter) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BackendError(f"this does not look like {adapter.engine}: "
                           f"{adapter.api_prefix}/models has no model list")
    return [m for m in data["data"] if isinstance(m, dict) and m.get("id")]


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with up to nanoseconds (Ollama) → datetime; None when absent or odd."""
    if not value or not isinstance(value, str):
        return None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def get_ci(mapping: Any, key: str, default: Any = None) -> Any:
    """Case-insensitive dict lookup (Foundry Local mixes key casing across versions)."""
    if not isinstance(mapping, dict):
        return default
    lowered = key.lower()
    for k, v in mapping.items():
        if str(k).lower() == lowered:
            return v
    return default
