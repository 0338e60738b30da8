"""What a model name means: `agent/<slug>` (Tanglaw runs the agent), an alias
(`default`, `small`… : an ordered chain of backend+model targets), or
`<backend-name>/<model-id>` (pass-through to that backend).

Each process keeps the table of backends, aliases and agent slugs in memory and
rebuilds it when the configuration generation moves (console.generation), so naming a
target costs no query.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from django.db.models.signals import post_delete, post_save
from django.utils.text import slugify

from agents.models import Agent
from console import generation
from console.backends import adapter_for
from console.backends.base import Adapter
from console.models import Backend, ModelRole
from gateway.errors import GatewayError
from gateway.models import Alias

AGENT_PREFIX = "agent/"
# aliases that stand for the site's model roles when the operator defined none by that name
ROLE_ALIASES = {"default": ModelRole.Role.PRIMARY, "small": ModelRole.Role.SECONDARY}


def agent_slug(name: str) -> str:
    return slugify(name) or "agent"


@dataclass
class BackendTarget:
    backend: Backend  # as read at the generation (its breaker state may have moved on)
    adapter: Adapter
    model: str

    @property
    def label(self) -> str:
        return f"{self.backend.name}/{self.model}"


@dataclass
class AgentTarget:
    agent_id: int
    name: str
    slug: str


@dataclass
class Table:
    backends: dict[str, Backend] = field(default_factory=dict)  # enabled, by name
    adapters: dict[int, Adapter] = field(default_factory=dict)
    aliases: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    agents: dict[str, AgentTarget] = field(default_factory=dict)  # enabled, by slug
    disabled: dict[str, str] = field(default_factory=dict)  # slug -> name
    by_length: list[str] = field(default_factory=list)  # backend names, longest first

    def target(self, backend_id: int, model: str) -> BackendTarget | None:
        for backend in self.backends.values():
            if backend.pk == backend_id:
                return BackendTarget(backend, self.adapters[backend.pk], model)
        return None

    def resolve(self, name: str) -> AgentTarget | list[BackendTarget]:
        """The agent, or the backend targets in order; a 404 GatewayError naming the
        model when it means nothing here."""
        if name.startswith(AGENT_PREFIX):
            slug = name[len(AGENT_PREFIX):]
            agent = self.agents.get(slug)
            if agent is None and slug in self.disabled:
                raise GatewayError(409, f"the agent {self.disabled[slug]} is disabled; an "
                                        f"operator can enable it on its page",
                                   code="agent_disabled", param="model")
            if agent is None:
                raise not_found(name)
            return agent
        chain = self.aliases.get(name)
        if chain is not None:
            targets = [t for b, m in chain if (t := self.target(b, m)) is not None]
            if not targets:
                raise GatewayError(503, f"every backend of the alias {name!r} is disabled or "
                                        f"deleted", code="model_unavailable", param="model")
            return targets
        for backend_name in self.by_length:
            if name.startswith(backend_name + "/") and len(name) > len(backend_name) + 1:
                backend = self.backends[backend_name]
                return [BackendTarget(backend, self.adapters[backend.pk],
                                      name[len(backend_name) + 1:])]
        raise not_found(name)


def not_found(name: str) -> GatewayError:
    return GatewayError(404, f"the model {name!r} does not exist here: ask GET /v1/models "
                             f"for `agent/<name>`, an alias, or `<backend>/<model>`",
                        code="model_not_found", param="model")


def build() -> Table:
    """Read the table from the database (sync)."""
    table = Table()
    for backend in Backend.objects.filter(enabled=True):
        table.backends[backend.name] = backend
        table.adapters[backend.pk] = adapter_for(backend)
    table.by_length = sorted(table.backends, key=len, reverse=True)
    enabled = {b.pk for b in table.backends.values()}
    for role_alias, role in ROLE_ALIASES.items():
        chain = [(r.backend_id, r.model) for r in ModelRole.objects.filter(
            role=role, backend_id__in=enabled).order_by("backend__name", "model")]
        if chain:
            table.aliases[role_alias] = chain
            table.descriptions[role_alias] = f"the site's {role} models (model roles)"
    for alias in Alias.objects.all():
        table.aliases[alias.name] = [(int(t["backend"]), str(t["model"]))
                                     for t in alias.targets]
        table.descriptions[alias.name] = alias.description
    for agent in Agent.objects.only("pk", "name", "enabled"):
        slug = agent_slug(agent.name)
        if agent.enabled:
            table.agents.setdefault(slug, AgentTarget(agent.pk, agent.name, slug))
        else:
            table.disabled.setdefault(slug, agent.name)
    return table


_lock = threading.Lock()
_cached: tuple[object, Table] | None = None


def current_cached() -> Table | None:
    """The table when this process's copy is current (no query), else None."""
    cached = _cached
    now = generation.current()
    if cached is not None and now is not None and cached[0] == now:
        return cached[1]
    return None


def table() -> Table:
    """The current table (sync: rebuilt from the database when the generation moved)."""
    global _cached
    found = current_cached()
    if found is not None:
        return found
    now = generation.current()
    if now is None:
        generation.bump_now()
        now = generation.current()
    built = build()
    with _lock:
        _cached = (now, built)
    return built


def forget() -> None:
    global _cached
    with _lock:
        _cached = None


# -- /v1/models: what the backends list, kept for a short while -------------------------

LIST_TTL_S = 30.0
LIST_TIMEOUT_S = 3.0
_listed: dict[int, tuple[float, list[str]]] = {}


async def backend_models(table: Table) -> dict[str, list[str]]:
    """Each enabled backend's model ids (asked concurrently, cached LIST_TTL_S; a backend
    that does not answer lists nothing)."""
    now = time.monotonic()

    async def one(backend: Backend) -> tuple[str, list[str]]:
        cached = _listed.get(backend.pk)
        if cached is not None and now - cached[0] < LIST_TTL_S:
            return backend.name, cached[1]
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                models = [m.id for m in await table.adapters[backend.pk].list_models()]
        except Exception:  # noqa: BLE001 - a backend that is down lists nothing
            models = cached[1] if cached is not None else []
        _listed[backend.pk] = (now, models)
        return backend.name, models

    pairs = await asyncio.gather(*(one(b) for b in table.backends.values()))
    return dict(pairs)


def _changed(sender, **kwargs) -> None:
    generation.bump()


for _model in (Alias, ModelRole):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"gateway-save-{_model.__name__}")
    post_delete.connect(_changed, sender=_model,
                        dispatch_uid=f"gateway-delete-{_model.__name__}")
