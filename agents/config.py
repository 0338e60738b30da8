"""Agents and tool settings as YAML: export, and import that checks everything first.

Backends and tools are referred to by name. No secrets are exported (agents
and built-in tools hold none). Import validates the whole file, reporting
every problem with its path (`agents[1].tools[0]: …`), and changes nothing
unless all of it is valid; it then applies through the same actions as the
pages, so versions and audit events are written as usual.
"""

from __future__ import annotations

from typing import Any

import yaml
from django.db import transaction

from agents import actions
from agents.forms import AgentForm, ToolSettingsForm
from agents.models import Agent, Tool
from console.actions import Invalid
from console.audit import Actor
from console.models import Backend

VERSION = 1
AGENT_FIELDS = ["description", "system_prompt", "temperature", "max_tokens",
                "first_token_timeout_s", "idle_timeout_s", "turn_timeout_s",
                "max_tool_iterations", "log_content", "enabled"]
TOOL_FIELDS = ["requires_approval", "timeout_s", "enabled"]
NEW_AGENT_DEFAULTS = {f: Agent._meta.get_field(f).get_default()  # type: ignore[union-attr]
                      for f in AGENT_FIELDS}


def export_data() -> dict[str, Any]:
    tools = [{"name": t.name, **{f: getattr(t, f) for f in TOOL_FIELDS}}
             for t in Tool.objects.order_by("name")]
    agents = []
    for a in Agent.objects.select_related("backend").prefetch_related(
            "tools", "fallbacks__backend").order_by("name"):
        agents.append({
            "name": a.name, "backend": a.backend.name, "model": a.model,
            **{f: getattr(a, f) for f in AGENT_FIELDS},
            "tools": sorted(t.name for t in a.tools.all()),
            "fallbacks": [{"backend": f.backend.name, "model": f.model}
                          for f in a.fallbacks.all()],
        })
    return {"version": VERSION, "tools": tools, "agents": agents}


def export_yaml() -> str:
    return yaml.safe_dump(export_data(), sort_keys=False, allow_unicode=True)


def _load(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise Invalid({"file": [f"not valid YAML{where}"]}) from None
    if not isinstance(data, dict):
        raise Invalid({"file": ["expected a mapping with `version`, `tools` and `agents`"]})
    if data.get("version") != VERSION:
        raise Invalid({"version": [f"expected version: {VERSION}"]})
    return data


def plan(text: str) -> tuple[list[dict[str, str]], list[tuple[str, Any, dict]]]:
    """Validate the whole file. Returns (the plan, the steps to apply) or raises Invalid."""
    data = _load(text)
    errors: dict[str, list[str]] = {}
    steps: list[tuple[str, Any, dict]] = []
    summary: list[dict[str, str]] = []
    tools = {t.name: t for t in Tool.objects.all()}
    backends = {b.name: b for b in Backend.objects.all()}
    agents = {a.name: a for a in Agent.objects.prefetch_related("tools", "fallbacks")}

    def problem(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    for i, item in enumerate(data.get("tools") or []):
        path = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("name") not in tools:
            problem(path, f"no tool named {item.get('name') if isinstance(item, dict) else item!r}")
            continue
        tool = tools[item["name"]]
        values = {f: item.get(f, getattr(tool, f)) for f in TOOL_FIELDS}
        tool_form = ToolSettingsForm(data=values, instance=Tool(pk=tool.pk, name=tool.name))
        if not tool_form.is_valid():
            for field, msgs in tool_form.errors.items():
                problem(f"{path}.{field}", " ".join(str(m) for m in msgs))
        elif any(values[f] != getattr(tool, f) for f in TOOL_FIELDS):
            steps.append(("tool", tool, values))
            summary.append({"action": "update", "kind": "tool", "name": tool.name})
    seen: set[str] = set()
    for i, item in enumerate(data.get("agents") or []):
        path = f"agents[{i}]"
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            problem(f"{path}.name", "every agent needs a name")
            continue
        name = str(item["name"]).strip()
        if name in seen:
            problem(f"{path}.name", f"{name!r} appears twice")
        seen.add(name)
        unknown = set(item) - {"name", "backend", "model", "tools", "fallbacks", *AGENT_FIELDS}
        for key in sorted(unknown):
            problem(f"{path}.{key}", "unknown field")
        backend = backends.get(str(item.get("backend")))
        if backend is None:
            problem(f"{path}.backend", f"no backend named {item.get('backend')!r}")
        tool_ids = []
        for j, tool_name in enumerate(item.get("tools") or []):
            if tool_name in tools:
                tool_ids.append(tools[tool_name].pk)
            else:
                problem(f"{path}.tools[{j}]", f"no tool named {tool_name!r}")
        fallbacks = []
        for j, fb in enumerate(item.get("fallbacks") or []):
            fb_backend = backends.get(str(fb.get("backend"))) if isinstance(fb, dict) else None
            if fb_backend is None:
                problem(f"{path}.fallbacks[{j}].backend", "no such backend")
            elif not str(fb.get("model") or "").strip():
                problem(f"{path}.fallbacks[{j}].model", "enter a model")
            else:
                fallbacks.append({"backend_id": fb_backend.pk, "model": str(fb["model"])})
        existing = agents.get(name)
        # an existing agent keeps what the file leaves out; a new one gets the defaults
        defaults = actions.snapshot(existing) if existing else NEW_AGENT_DEFAULTS
        values = {**{k: v for k, v in defaults.items() if k in AGENT_FIELDS},
                  **{f: item[f] for f in AGENT_FIELDS if f in item},
                  "name": name, "model": item.get("model", ""),
                  "backend": backend.pk if backend else None, "tools": tool_ids}
        # validate against a stand-in, so the loaded agent is not changed by the form
        stand_in = None
        if existing is not None:
            stand_in = Agent(pk=existing.pk)
            stand_in._state.adding = False  # the unique-name check must skip itself
        form = AgentForm(data=values, instance=stand_in)
        if not form.is_valid():
            for field, msgs in form.errors.items():
                problem(f"{path}.{field}", " ".join(str(m) for m in msgs))
            continue
        change = {**values, "backend_id": values.pop("backend"),
                  "tool_ids": values.pop("tools"), "fallbacks": fallbacks}
        if existing is None:
            steps.append(("create", None, change))
            summary.append({"action": "create", "kind": "agent", "name": name})
        else:
            current = actions.snapshot(existing)
            wanted = {**current, **{k: v for k, v in change.items() if k in current},
                      "tool_ids": sorted(change["tool_ids"])}
            if wanted != current:
                steps.append(("update", existing, change))
                summary.append({"action": "update", "kind": "agent", "name": name})
            else:
                summary.append({"action": "unchanged", "kind": "agent", "name": name})
    if errors:
        raise Invalid(errors)
    return summary, steps


def apply(actor: Actor, text: str, *, dry_run: bool = False) -> list[dict[str, str]]:
    summary, steps = plan(text)
    if dry_run:
        return summary
    with transaction.atomic():
        for kind, target, change in steps:
            if kind == "tool":
                actions.update_tool(actor, target, change)
            elif kind == "create":
                actions.create_agent(actor, change)
            else:
                actions.update_agent(actor, target, change)
    return summary
