"""What a chat turn needs to know about its agent, kept in memory per process.

A blueprint is an agent as the runtime runs it: its backends and models (adapters
built, keys decrypted), fallbacks, escalation, a router's specialists and the enabled
tools as ToolSpecs. Building one takes several queries and decryptions; a turn only
needs it again when something changed, so each process keeps one per agent and
rebuilds it when the configuration generation (console.generation) moved: any save or
delete of an agent, its fallbacks, specialists or tools, a tool, an MCP server or a
backend — on whichever worker or process it happened — and every circuit-breaker
transition. What changes per turn (the breaker's verdict, the slots) is applied by
`settings_for` to a fresh TurnSettings each time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.db.models.signals import m2m_changed, post_delete, post_save

from agents.choices import AgentKind, ToolKind
from agents.models import Agent, AgentFallback, AgentSpecialist, McpServer, Tool
from agents.runtime import Candidate, RouterSettings, Specialist, ToolSpec, TurnSettings
from agents.tool_actions import server_secrets
from agents.tools import mcp as mcp_tool
from console import breaker, generation
from console.backends import adapter_for
from console.models import Backend


@dataclass
class Route:
    """One backend+model an agent may use, with the row its breaker state is on."""

    backend: Backend
    candidate: Candidate


@dataclass
class SpecialistLink:
    agent_id: int
    name: str
    description: str
    keywords: list[str]
    blueprint: Blueprint


@dataclass
class Blueprint:
    agent: Agent
    primary: Route
    fallbacks: list[Route] = field(default_factory=list)
    escalation: Route | None = None
    specialists: list[SpecialistLink] = field(default_factory=list)
    tools: dict[str, ToolSpec] = field(default_factory=dict)


def _route(backend: Backend, model: str, escalation: bool = False) -> Route:
    return Route(backend, Candidate(adapter_for(backend), model, backend.pk,
                                    f"{backend.name}/{model}", escalation))


def tool_spec(tool: Tool) -> ToolSpec:
    """A tool as the runtime runs it; HTTP and MCP secrets decrypted into the spec only."""
    config, secrets = dict(tool.config), server_secrets(tool)
    if tool.kind == ToolKind.MCP and tool.server is not None:
        config = {"server": mcp_tool.server_config(tool.server), **config}
        secrets = server_secrets(tool.server)
    return ToolSpec(tool.name, tool.kind, tool.description, tool.parameters, tool.timeout_s,
                    tool.requires_approval, config, secrets)


def build(agent: Agent, *, routed: bool = True) -> Blueprint:
    """Read everything from the database (sync)."""
    blueprint = Blueprint(agent, _route(agent.backend, agent.model))
    blueprint.fallbacks = [_route(f.backend, f.model)
                           for f in agent.fallbacks.select_related("backend")]
    if agent.escalation_backend is not None:
        blueprint.escalation = _route(agent.escalation_backend, agent.escalation_model, True)
    if agent.kind == AgentKind.ROUTER and routed:
        blueprint.specialists = [
            SpecialistLink(link.specialist_id, link.specialist.name,
                           link.specialist.description, list(link.keywords),
                           build(link.specialist, routed=False))
            for link in agent.specialist_links.select_related("specialist__backend")
            if link.specialist.enabled]
    blueprint.tools = {t.name: tool_spec(t)
                       for t in agent.tools.filter(enabled=True).select_related("server")
                       if t.server is None or t.server.enabled}
    return blueprint


def settings_for(blueprint: Blueprint, *, routed: bool = True) -> TurnSettings:
    """A turn's settings: backends whose circuit breaker is open are left out (their
    fallbacks answer instead). No query unless a breaker is not closed."""
    refused: list[str] = []

    def usable(route: Route) -> bool:
        if not route.backend.enabled:
            return False
        if breaker.allows(route.backend):
            return True
        refused.append(breaker.why_not(route.backend))
        return False

    agent = blueprint.agent
    candidates = [r.candidate for r in [blueprint.primary, *blueprint.fallbacks] if usable(r)]
    escalation = (blueprint.escalation.candidate
                  if blueprint.escalation is not None and usable(blueprint.escalation)
                  else None)
    router = None
    if agent.kind == AgentKind.ROUTER and routed:
        specialists = [Specialist(s.agent_id, s.name, s.description, s.keywords,
                                  settings_for(s.blueprint, routed=False))
                       for s in blueprint.specialists]
        router = RouterSettings(candidates[0] if candidates else blueprint.primary.candidate,
                                agent.system_prompt, specialists,
                                agent.first_token_timeout_s, escalation)
    elif escalation is not None:
        candidates.append(escalation)
    return TurnSettings(candidates=candidates, system_prompt=agent.system_prompt,
                        temperature=agent.temperature, max_tokens=agent.max_tokens,
                        first_token_timeout_s=agent.first_token_timeout_s,
                        idle_timeout_s=agent.idle_timeout_s,
                        turn_timeout_s=agent.turn_timeout_s,
                        max_tool_iterations=agent.max_tool_iterations,
                        tools=dict(blueprint.tools), router=router,
                        unavailable="; ".join(refused))


# -- the per-process cache ------------------------------------------------------------

_lock = threading.Lock()
_cache: dict[int, tuple[object, Blueprint]] = {}


def blueprint(agent_id: int) -> Blueprint | None:
    """The agent's blueprint, rebuilt when the configuration generation moved; None for
    no such agent (sync)."""
    now = generation.current()
    with _lock:
        cached = _cache.get(agent_id)
    if cached is not None and cached[0] == now and now is not None:
        return cached[1]
    agent = Agent.objects.select_related("backend", "escalation_backend").filter(
        pk=agent_id).first()
    if agent is None:
        return None
    if now is None:  # nothing bumped yet: start the generation so it can be compared
        generation.bump_now()
        now = generation.current()
    built = build(agent)
    with _lock:
        _cache[agent_id] = (now, built)
    return built


def forget() -> None:
    """Drop every cached blueprint of this process (tests; a generation bump does it for
    every process)."""
    with _lock:
        _cache.clear()


def _changed(sender, **kwargs) -> None:
    generation.bump()


for _model in (Agent, AgentFallback, AgentSpecialist, Tool, McpServer, Backend):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"blueprints-save-{_model.__name__}")
    post_delete.connect(_changed, sender=_model,
                        dispatch_uid=f"blueprints-delete-{_model.__name__}")
m2m_changed.connect(_changed, sender=Agent.tools.through, dispatch_uid="blueprints-agent-tools")
