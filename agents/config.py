"""Agents, tools and MCP servers as YAML: export, and import that checks everything first.

Backends, tools, servers and specialists are referred to by name. No secret
is exported: HTTP tools and MCP servers list only the names of their secret
headers, and the importer asks for a value wherever the database does not
already hold one (`secrets`, keyed ``tools.<name>.<header>`` or
``mcp_servers.<name>.<header>``). Import validates the whole file, reporting
every problem with its path (`agents[1].tools[0]: …`), and changes nothing
unless all of it is valid; it then applies through the same actions as the
pages (versions and audit events as usual) inside one transaction, listing new
MCP servers' tools before the agents that use them.
"""

from __future__ import annotations

from typing import Any

import yaml
from django.db import transaction

from agents import actions, tool_actions
from agents.choices import AgentKind, McpTransport, ToolKind
from agents.forms import AgentForm
from agents.models import Agent, McpServer, Tool
from agents.tools import ToolError
from agents.tools import http as http_tool
from console.actions import Invalid, Refused
from console.audit import Actor
from console.models import Backend
from console.siteconfig import list_of, load_mapping

VERSION = 1
AGENT_FIELDS = ["description", "system_prompt", "temperature", "max_tokens",
                "first_token_timeout_s", "idle_timeout_s", "turn_timeout_s",
                "max_tool_iterations", "log_content", "enabled"]
TOOL_FIELDS = ["requires_approval", "timeout_s", "enabled"]
HTTP_FIELDS = ["description", "parameters", "config"]
NEW_AGENT_DEFAULTS = {f: Agent._meta.get_field(f).get_default()  # type: ignore[union-attr]
                      for f in AGENT_FIELDS}


def export_data() -> dict[str, Any]:
    servers = [{"name": s.name, "transport": s.transport,
                **({"url": s.url} if s.transport == McpTransport.HTTP else
                   {"command": s.command, "args": list(s.args)}),
                "secret_headers": list(s.secret_header_names), "enabled": s.enabled}
               for s in McpServer.objects.order_by("name")]
    tools = []
    for t in Tool.objects.select_related("server").order_by("name"):
        item: dict[str, Any] = {"name": t.name, "kind": t.kind}
        if t.kind == ToolKind.HTTP:
            item.update({f: getattr(t, f) for f in HTTP_FIELDS},
                        secret_headers=list(t.secret_header_names))
        elif t.kind == ToolKind.MCP and t.server is not None:
            item["server"] = t.server.name
        item.update({f: getattr(t, f) for f in TOOL_FIELDS})
        tools.append(item)
    agents = []
    for a in Agent.objects.select_related("backend", "escalation_backend").prefetch_related(
            "tools", "fallbacks__backend", "specialist_links__specialist").order_by("name"):
        item = {"name": a.name, "kind": a.kind, "backend": a.backend.name, "model": a.model,
                **{f: getattr(a, f) for f in AGENT_FIELDS},
                "tools": sorted(t.name for t in a.tools.all()),
                "fallbacks": [{"backend": f.backend.name, "model": f.model}
                              for f in a.fallbacks.all()]}
        if a.kind == AgentKind.ROUTER:
            item["specialists"] = [{"agent": s.specialist.name, "keywords": list(s.keywords)}
                                   for s in a.specialist_links.all()]
        if a.escalation_backend is not None:
            item["escalation"] = {"backend": a.escalation_backend.name,
                                  "model": a.escalation_model}
        agents.append(item)
    data: dict[str, Any] = {"version": VERSION}
    if servers:
        data["mcp_servers"] = servers
    data.update(tools=tools, agents=agents)
    return data


def export_yaml() -> str:
    return yaml.safe_dump(export_data(), sort_keys=False, allow_unicode=True)


class Plan:
    """The validated file: a summary for people and the steps `apply` runs, in order."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.summary: list[dict[str, str]] = []
        self.servers: list[tuple[McpServer | None, dict]] = []
        self.http_tools: list[tuple[Tool | None, dict]] = []
        self.tool_settings: list[tuple[str, dict, str]] = []  # name, settings, server
        self.agents: list[tuple[Agent | None, dict]] = []
        self.needed_secrets: list[str] = []  # keys the importer must ask values for

    def problem(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def note(self, action: str, kind: str, name: str) -> None:
        self.summary.append({"action": action, "kind": kind, "name": name})


def _secret_values(plan: Plan, path: str, key: str, names: Any, held: list[str],
                   secrets: dict[str, str]) -> dict[str, str] | None:
    """Values for the named secret headers: given now, or already held (None: keep them)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        plan.problem(f"{path}.secret_headers", "a list of header names (values are never "
                                               "exported)")
        return None
    given = {n: secrets[f"{key}.{n}"] for n in names if secrets.get(f"{key}.{n}")}
    missing = [n for n in names if n not in given and n not in held]
    for name in missing:
        plan.needed_secrets.append(f"{key}.{name}")
        plan.problem(f"{path}.secret_headers.{name}", f"enter the value of {name}: secrets "
                                                      f"are not exported")
    if not given and sorted(names) == sorted(held):
        return None
    return given if not missing else None


def plan(text: str, secrets: dict[str, str] | None = None) -> Plan:
    """Validate the whole file. Returns the plan, or raises Invalid listing every problem."""
    return plan_data(load_mapping(text, "`version`, `tools` and `agents`", VERSION), secrets)


def plan_data(data: dict[str, Any], secrets: dict[str, str] | None = None) -> Plan:
    listed = {key: list_of(data.get(key), key) for key in ("mcp_servers", "tools", "agents")}
    secrets, p = secrets or {}, Plan()
    tools = {t.name: t for t in Tool.objects.all()}
    backends = {b.name: b for b in Backend.objects.all()}
    agents = {a.name: a for a in Agent.objects.prefetch_related("tools", "fallbacks")}
    servers = {s.name: s for s in McpServer.objects.all()}
    file_servers: set[str] = set()

    for i, item in enumerate(listed["mcp_servers"]):
        path = f"mcp_servers[{i}]"
        if not isinstance(item, dict) or not item.get("name"):
            p.problem(f"{path}.name", "every MCP server needs a name")
            continue
        name = str(item["name"])
        file_servers.add(name)
        existing = servers.get(name)
        values = {k: item[k] for k in ("name", "transport", "url", "command", "args", "enabled")
                  if k in item}
        secret = _secret_values(p, path, f"mcp_servers.{name}", item.get("secret_headers", []),
                                existing.secret_header_names if existing else [], secrets)
        if secret is not None:
            values["secret_headers"] = secret
        if existing is not None and all(
                tool_actions.server_state(existing).get(k) == v for k, v in values.items()):
            p.note("unchanged", "mcp_server", name)
            continue
        p.servers.append((existing, values))
        p.note("update" if existing else "create", "mcp_server", name)

    declared: set[str] = set()
    for i, item in enumerate(listed["tools"]):
        path = f"tools[{i}]"
        name = str(item.get("name") or "") if isinstance(item, dict) else ""
        if not name:
            p.problem(path, f"no tool named {item!r}")
            continue
        declared.add(name)
        kind, tool = item.get("kind"), tools.get(name)
        settings = {f: item[f] for f in TOOL_FIELDS if f in item}
        if kind == ToolKind.HTTP:
            secret = _secret_values(p, path, f"tools.{name}", item.get("secret_headers", []),
                                    tool.secret_header_names if tool else [], secrets)
            values = {**{f: item.get(f) for f in HTTP_FIELDS if f in item}, **settings}
            if secret is not None:
                values["secret_headers"] = secret
            if tool is not None and tool.kind != ToolKind.HTTP:
                p.problem(f"{path}.kind", f"{name} exists as a {tool.get_kind_display()} tool")
                continue
            _check_http(p, path, tool, {"name": name, **values})
            if tool is None:
                p.http_tools.append((None, {"name": name, "kind": "http", **values}))
                p.note("create", "tool", name)
            elif any(tool_actions.tool_state(tool).get(k) != v for k, v in values.items()
                     if k != "secret_headers") or "secret_headers" in values:
                p.http_tools.append((tool, values))
                p.note("update", "tool", name)
            continue
        if tool is None:
            if kind == ToolKind.MCP and item.get("server") in file_servers:
                # listed from its server on import (skipped while the server is disabled)
                p.tool_settings.append((name, settings, str(item["server"])))
                p.note("update", "tool", name)
            else:
                p.problem(path, f"no tool named {name!r}")
            continue
        errors: list[str] = []
        tool_actions._common(settings, errors)
        for error in errors:
            field, _, message = error.partition(": ")
            p.problem(f"{path}.{field}", message)
        if not errors and any(settings[f] != getattr(tool, f) for f in settings):
            p.tool_settings.append((name, settings, ""))
            p.note("update", "tool", name)

    known_tools = set(tools) | declared
    file_agents: dict[str, str] = {}
    for i, item in enumerate(listed["agents"]):
        path = f"agents[{i}]"
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            p.problem(f"{path}.name", "every agent needs a name")
            continue
        name = str(item["name"]).strip()
        if name in file_agents:
            p.problem(f"{path}.name", f"{name!r} appears twice")
        file_agents[name] = str(item.get("kind") or AgentKind.ASSISTANT)
        _plan_agent(p, path, name, item, agents.get(name), backends, tools, known_tools)

    for i, item in enumerate(listed["agents"]):
        for j, link in enumerate((item.get("specialists") or []) if isinstance(item, dict)
                                 else []):
            target = link.get("agent") if isinstance(link, dict) else None
            if target not in file_agents and target not in agents:
                p.problem(f"agents[{i}].specialists[{j}].agent", f"no agent named {target!r}")
            elif file_agents.get(target, getattr(agents.get(target), "kind", "")) == \
                    AgentKind.ROUTER:
                p.problem(f"agents[{i}].specialists[{j}].agent",
                          f"{target} is a router; routers route to assistants only")
    if p.errors:
        failure = Invalid(p.errors)
        failure.needed_secrets = p.needed_secrets  # type: ignore[attr-defined]
        raise failure
    return p


def _check_http(p: Plan, path: str, tool: Tool | None, values: dict) -> None:
    errors: list[str] = []
    data = dict(values)
    data.pop("name", None)
    if tool is None:
        tool_actions._common({"parameters": {"type": "object"}, **data}, errors)
        if "description" not in data:
            errors.append("description: describe what the tool does; the model reads it")
    else:
        tool_actions._common({k: v for k, v in data.items() if k in tool_actions.COMMON}, errors)
    if tool is None or "config" in data:
        _, config_errors = http_tool.clean_config(data.get("config"))
        errors += config_errors
    for error in errors:
        field, _, message = error.partition(": ")
        p.problem(f"{path}.{field}", message)


def _plan_agent(p: Plan, path: str, name: str, item: dict, existing: Agent | None,
                backends: dict, tools: dict, known_tools: set[str]) -> None:
    allowed = {"name", "kind", "backend", "model", "tools", "fallbacks", "specialists",
               "escalation", *AGENT_FIELDS}
    for key in sorted(set(item) - allowed):
        p.problem(f"{path}.{key}", "unknown field")
    backend = backends.get(str(item.get("backend")))
    if backend is None:
        p.problem(f"{path}.backend", f"no backend named {item.get('backend')!r}")
    tool_names = []
    for j, tool_name in enumerate(item.get("tools") or []):
        if tool_name in known_tools:
            tool_names.append(tool_name)
        else:
            p.problem(f"{path}.tools[{j}]", f"no tool named {tool_name!r}")
    fallbacks = []
    for j, fb in enumerate(item.get("fallbacks") or []):
        fb_backend = backends.get(str(fb.get("backend"))) if isinstance(fb, dict) else None
        if fb_backend is None:
            p.problem(f"{path}.fallbacks[{j}].backend", "no such backend")
        elif not str(fb.get("model") or "").strip():
            p.problem(f"{path}.fallbacks[{j}].model", "enter a model")
        else:
            fallbacks.append({"backend_id": fb_backend.pk, "model": str(fb["model"])})
    escalation = None
    if item.get("escalation"):
        esc = item["escalation"]
        esc_backend = backends.get(str(esc.get("backend"))) if isinstance(esc, dict) else None
        if esc_backend is None:
            p.problem(f"{path}.escalation.backend", "no such backend")
        else:
            escalation = {"backend_id": esc_backend.pk, "model": str(esc.get("model") or "")}
    kind = str(item.get("kind") or AgentKind.ASSISTANT)
    # an existing agent keeps what the file leaves out; a new one gets the defaults
    defaults = actions.snapshot(existing) if existing else NEW_AGENT_DEFAULTS
    values = {**{k: v for k, v in defaults.items() if k in AGENT_FIELDS},
              **{f: item[f] for f in AGENT_FIELDS if f in item},
              "name": name, "kind": kind, "model": item.get("model", ""),
              "backend": backend.pk if backend else None,
              "tools": [tools[t].pk for t in tool_names if t in tools],
              "escalation_backend": escalation["backend_id"] if escalation else None,
              "escalation_model": escalation["model"] if escalation else ""}
    # validate against a stand-in, so the loaded agent is not changed by the form
    stand_in = None
    if existing is not None:
        stand_in = Agent(pk=existing.pk)
        stand_in._state.adding = False  # the unique-name check must skip itself
    form = AgentForm(data=values, instance=stand_in)
    if not form.is_valid():
        for field, msgs in form.errors.items():
            p.problem(f"{path}.{field}", " ".join(str(m) for m in msgs))
        return
    specialists = [{"agent": s.get("agent"), "keywords": s.get("keywords") or []}
                   for s in item.get("specialists") or [] if isinstance(s, dict)]
    if kind == AgentKind.ROUTER and not specialists:
        p.problem(f"{path}.specialists", "a router needs at least one specialist")
    change = {k: v for k, v in values.items()
              if k not in ("backend", "tools", "escalation_backend", "escalation_model")}
    change.update(backend_id=values["backend"], tool_names=tool_names, fallbacks=fallbacks,
                  escalation=escalation, specialist_names=specialists)
    if existing is None:
        p.agents.append((None, change))
        p.note("create", "agent", name)
        return
    current = actions.snapshot(existing)
    wanted = {**current, **{k: v for k, v in change.items() if k in current},
              "tool_ids": sorted(tools[t].pk for t in tool_names if t in tools)}
    same_tools = len(wanted["tool_ids"]) == len(tool_names)
    same_links = [(s["agent"], s["keywords"]) for s in specialists] == [
        (link.specialist.name, link.keywords) for link in existing.specialist_links.all()]
    if wanted != current or not (same_tools and same_links):
        p.agents.append((existing, change))
        p.note("update", "agent", name)
    else:
        p.note("unchanged", "agent", name)


def apply(actor: Actor, text: str, *, dry_run: bool = False, user=None,
          secrets: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Apply the file, or (dry run) validate it through the very same actions in a
    transaction that is rolled back: what a dry run accepts, the import accepts."""
    p = plan(text, secrets)
    fetched = {} if dry_run else fetch_server_tools(actor, p, user)
    with transaction.atomic():
        _apply(actor, p, user=user, fetched=fetched)
        if dry_run:
            transaction.set_rollback(True)
    return p.summary


def fetch_server_tools(actor: Actor, p: Plan, user) -> dict[str, list[dict[str, Any]]]:
    """Before any transaction: validate each MCP server the plan creates or changes and
    list its tools over the network (no round trip while the database is locked)."""
    fetched: dict[str, list[dict[str, Any]]] = {}
    for existing, values in p.servers:
        fields = tool_actions.server_fields(  # Invalid, as the import itself would say
            user, {k: v for k, v in values.items() if v is not None}, existing)
        server = McpServer(**{k: getattr(existing, k) for k in
                              ("name", "transport", "url", "command", "args", "enabled")}
                           ) if existing else McpServer()
        for key, value in fields.items():
            setattr(server, key, value)
        if not server.enabled:
            continue
        secrets = (tool_actions.server_secrets(server) if "secret_headers" in fields
                   else tool_actions.server_secrets(existing) if existing else {})
        if existing is not None and tool_actions.secret_move_for_server(
                actor, existing, fields, values).clear:
            secrets = {}  # the stored secrets were given for the old address: never sent on
        try:
            fetched[server.name] = tool_actions.fetch_tools(server, secrets)
        except ToolError as exc:
            raise Refused(f"MCP server {server.name}: {exc}") from None
    return fetched


def _apply(actor: Actor, p: Plan, *, user, fetched: dict[str, list[dict[str, Any]]]
           ) -> list[dict[str, str]]:
    with transaction.atomic():
        listed: set[str] = set()
        for server, values in p.servers:
            if server is None:
                server = tool_actions.create_server(actor, user, values)
            else:
                server = tool_actions.update_server(actor, user, server, values)
            if server.enabled and server.name in fetched:
                tool_actions.store_tools(actor, server, fetched[server.name])
                listed.add(server.name)
        for tool, values in p.http_tools:
            if tool is None:
                tool_actions.create_tool(actor, values)
            else:
                tool_actions.update_tool(actor, tool, values)
        for name, settings, from_server in p.tool_settings:
            found = Tool.objects.filter(name=name).first()
            if found is None and from_server and from_server not in listed:
                continue  # a disabled server's tools are listed when it is enabled
            if found is None:
                raise Invalid({f"tools.{name}": ["its MCP server did not list this tool"]})
            tool_actions.update_tool(actor, found, settings)
        # assistants first, so routers find their specialists
        ordered = sorted(p.agents, key=lambda step: step[1]["kind"] == AgentKind.ROUTER)
        for agent, change in ordered:
            change = dict(change)
            names = change.pop("tool_names")
            change["tool_ids"] = list(Tool.objects.filter(name__in=names)
                                      .values_list("pk", flat=True))
            links = change.pop("specialist_names")
            ids = dict(Agent.objects.filter(name__in=[s["agent"] for s in links])
                       .values_list("name", "pk"))
            change["specialists"] = [{"specialist_id": ids.get(s["agent"]),
                                      "keywords": s["keywords"]} for s in links]
            if agent is None:
                actions.create_agent(actor, change)
            else:
                actions.update_agent(actor, agent, change)
    return p.summary


class AgentsSection:
    """The agents' part of the whole-site configuration (console.siteconfig)."""

    keys = ("mcp_servers", "tools", "agents")

    def export(self) -> dict[str, Any]:
        data = export_data()
        data.pop("version")
        data.setdefault("mcp_servers", [])
        return data

    def prepare(self, actor: Actor, data: dict[str, Any], *, user: Any,
                secrets: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        """Network work before the site's transaction: the MCP servers' tool lists."""
        return fetch_server_tools(actor, plan_data(data, secrets), user)

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str],
              prepared: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, str]]:
        p = plan_data(data, secrets)
        # a dry run lists no MCP server's tools (no network); the caller rolls back
        changes = [*p.summary]
        _apply(actor, p, user=user, fetched={} if dry_run else (prepared or {}))
        if prune:
            named = {str(a.get("name")) for a in data.get("agents") or [] if isinstance(a, dict)}
            doomed = list(Agent.objects.exclude(name__in=named))
            for agent in sorted(doomed, key=lambda a: a.kind != AgentKind.ROUTER):
                actions.delete_agent(actor, agent)
                changes.append({"action": "delete", "kind": "agent", "name": agent.name})
        return changes
