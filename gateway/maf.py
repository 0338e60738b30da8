"""Tanglaw agents as Microsoft Agent Framework (MAF) declarative agents, and back.

Export writes a `kind: Prompt` file that `AgentFactory().create_agent_from_yaml_path()`
(agent-framework-declarative 1.4) loads unchanged. Its model is the Tanglaw agent itself,
`agent/<slug>` on this gateway, so the agent's system prompt, tools, fallbacks, approvals
and audit stay in Tanglaw. The file therefore has no `instructions`: MAF sends them as a
system message (Chat Completions) or `instructions` (Responses), and the gateway already
puts the agent's own system prompt first, so the prompt would go twice. The prompt and tool
names ride in `metadata.tanglaw`, which MAF does not send, for people and for import.

No secret is written. The connection is `kind: remote` (endpoint only), so the OpenAI
client reads the key from `OPENAI_API_KEY`, its standard variable. A PowerFx
`apiKey: =Env.X` is not usable here: the default `AgentFactory()` runs in safe mode, where
`Env` is not defined, and PowerFx needs a .NET runtime; in both cases MAF keeps the text
`=Env.X` and sends it as the key.

Import reads such a file (any MAF `kind: Prompt` file): name, description, instructions
(else `metadata.tanglaw.instructions`), temperature and maxOutputTokens, tools matched to
Tanglaw tools by name. Everything else is listed as not imported, by path, never by value
(a connection may hold a key). The backend and model are the operator's choice, never the
file's. The agent is created through `agents.actions.create_agent`, versioned and audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from django.urls import reverse

from agents import actions
from agents.choices import AgentKind
from agents.forms import AgentForm
from agents.models import Agent, Tool
from console.actions import Invalid
from console.audit import Actor
from console.models import Backend
from console.safeinput import UnsafeInput, digits, load_yaml
from gateway.targets import AGENT_PREFIX, agent_slug

# ?api= → MAF's model.apiType: OpenAIChatCompletionClient / OpenAIChatClient (Responses)
API_TYPES = {"chat": "Chat", "responses": "Responses"}
KEY_ENV = "OPENAI_API_KEY"
MAX_BYTES = 512 * 1024

# the keys of a MAF model section; of its options Tanglaw agents have two
_MODEL_KEYS = {"id", "provider", "apiType", "connection", "options"}
_IMPORTED_OPTIONS = {"temperature": "temperature", "maxOutputTokens": "max_tokens"}
# create_agent's field errors → where the value was in the file
_FIELD_PATHS = {"name": "name", "description": "description", "system_prompt": "instructions",
                "temperature": "model.options.temperature",
                "max_tokens": "model.options.maxOutputTokens", "backend": "backend_id",
                "tools": "tools", "tool_ids": "tools"}
_DEFAULTS = ["first_token_timeout_s", "idle_timeout_s", "turn_timeout_s", "max_tool_iterations",
             "temperature", "max_tokens"]


def model_id(agent: Agent) -> str:
    """The gateway's name for an agent (gateway.targets)."""
    return f"{AGENT_PREFIX}{agent_slug(agent.name)}"


def gateway_base_url(request) -> str:
    """This site's /v1, as the client reached it (ALLOWED_HOSTS, the trusted proxy's scheme)."""
    return request.build_absolute_uri(reverse("gateway_models").removesuffix("/models"))


def filename(agent: Agent) -> str:
    return f"{agent_slug(agent.name)}.maf.yaml"


def _literal(text: str) -> str:
    """MAF evaluates a string starting with "=" as PowerFx (with the environment when safe
    mode is off): a leading space keeps it text. Import strips it again."""
    return f" {text}" if text.startswith("=") else text


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # prompts read as blocks; PyYAML falls back to quoting where a block cannot hold the text
    return dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                   style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def export_data(agent: Agent, base_url: str, api: str = "chat") -> dict[str, Any]:
    if api not in API_TYPES:
        raise ValueError(f"api: one of {', '.join(API_TYPES)}")
    data: dict[str, Any] = {"kind": "Prompt", "name": _literal(agent.name)}
    if agent.description:
        data["description"] = _literal(agent.description)
    data["model"] = {
        "id": model_id(agent), "provider": "OpenAI", "apiType": API_TYPES[api],
        "connection": {"kind": "remote", "endpoint": base_url,
                       "usageDescription": f"Tanglaw gateway; the key is a Tanglaw API token "
                                           f"(tgl_...) read from {KEY_ENV}"},
        "options": {"temperature": agent.temperature, "maxOutputTokens": agent.max_tokens}}
    data["metadata"] = {"tanglaw": {
        "note": "Tanglaw runs these instructions and tools server-side for this model; "
                "MAF does not send them.",
        "instructions": agent.system_prompt,
        "tools": sorted(t.name for t in agent.tools.all())}}
    return data


def export_yaml(agent: Agent, base_url: str, api: str = "chat") -> str:
    slug_name = filename(agent)  # only the slug goes into comments: a name may hold newlines
    header = (f"# A Microsoft Agent Framework declarative agent exported from Tanglaw.\n"
              f"#   export {KEY_ENV}=tgl_...   # a Tanglaw API token; this file holds none\n"
              f"#   from agent_framework_declarative import AgentFactory\n"
              f'#   agent = AgentFactory().create_agent_from_yaml_path("{slug_name}")\n')
    return header + yaml.dump(export_data(agent, base_url, api), Dumper=_Dumper,
                              sort_keys=False, allow_unicode=True, width=100)


@dataclass
class Plan:
    """What an import would create: the agent's fields, the tools matched, what is left."""

    data: dict[str, Any]
    tools: list[Tool] = field(default_factory=list)
    not_imported: list[dict[str, str]] = field(default_factory=list)


def _skip(not_imported: list[dict[str, str]], path: str, reason: str) -> None:
    not_imported.append({"path": path, "reason": reason})


def _text(value: Any, path: str, errors: dict[str, list[str]]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.setdefault(path, []).append("expected text")
        return None
    return value.strip()


def _number(value: Any, path: str, errors: dict[str, list[str]], *, integer: bool) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        errors.setdefault(path, []).append("expected a whole number" if integer
                                           else "expected a number")
        return None
    return value


def _mapping(value: Any, path: str, errors: dict[str, list[str]]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.setdefault(path, []).append("expected a mapping")
        return {}
    return value


def parse_import(text: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A MAF `kind: Prompt` file → (Tanglaw agent fields, not imported). The fields are
    name, description, system_prompt, temperature, max_tokens where given, and
    `tool_names` ({path: name}). Raises Invalid naming each bad field by its path."""
    if not text or not text.strip():
        raise Invalid({"yaml": ["Paste or upload a MAF declarative agent (kind: Prompt)."]})
    try:
        doc = load_yaml(text, "yaml", max_bytes=MAX_BYTES)
    except UnsafeInput as exc:
        raise Invalid(exc.errors) from None
    if not isinstance(doc, dict):
        raise Invalid({"yaml": ["expected a mapping: a MAF declarative agent (kind: Prompt)"]})
    errors: dict[str, list[str]] = {}
    skipped: list[dict[str, str]] = []
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind.lower() not in ("prompt", "agent"):
        errors["kind"] = ["expected kind: Prompt (a MAF prompt agent)"]
    data: dict[str, Any] = {}
    name = _text(doc.get("name"), "name", errors)
    if not name and "name" not in errors:
        errors["name"] = ["the agent needs a name"]
    data["name"] = name or ""
    if (description := _text(doc.get("description"), "description", errors)) is not None:
        data["description"] = description

    meta = _mapping(doc.get("metadata"), "metadata", errors)
    tanglaw = _mapping(meta.get("tanglaw"), "metadata.tanglaw", errors)
    instructions = _text(doc.get("instructions"), "instructions", errors)
    from_meta = _text(tanglaw.get("instructions"), "metadata.tanglaw.instructions", errors)
    if instructions is not None:
        data["system_prompt"] = instructions
        if from_meta is not None:
            _skip(skipped, "metadata.tanglaw.instructions", "the file's instructions are used")
    elif from_meta is not None:
        data["system_prompt"] = from_meta

    model = _mapping(doc.get("model"), "model", errors)
    if "id" in model:
        _skip(skipped, "model.id", "the new agent runs on the backend and model chosen for "
                                   "the import")
    for key in ("provider", "apiType"):
        if key in model:
            _skip(skipped, f"model.{key}", "Tanglaw talks to its own backends")
    if "connection" in model:
        _skip(skipped, "model.connection", "Tanglaw talks to its own backends; the "
                                           "connection (endpoint, key) was not read")
    for key in sorted(set(model) - _MODEL_KEYS, key=str):
        _skip(skipped, f"model.{key}", "not part of a MAF model")
    options = _mapping(model.get("options"), "model.options", errors)
    for key, value in options.items():
        path = f"model.options.{key}"
        if key in _IMPORTED_OPTIONS:
            number = _number(value, path, errors, integer=key == "maxOutputTokens")
            if number is not None:
                data[_IMPORTED_OPTIONS[key]] = number
        else:
            _skip(skipped, path, "Tanglaw agents have no such setting")

    tool_names: dict[str, str] = {}
    tools = doc.get("tools")
    if tools is not None and not isinstance(tools, list):
        errors["tools"] = ["expected a list of tools"]
        tools = []
    for i, tool in enumerate(tools or []):
        path = f"tools[{i}]"
        tool_kind = tool.get("kind", "function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            _skip(skipped, path, "a tool without a name")
        elif tool_kind != "function":
            _skip(skipped, path, f"a MAF {tool_kind} tool; only function tools are matched "
                                 f"to Tanglaw tools by name")
        else:
            tool_names[path] = tool["name"].strip()
    listed = tanglaw.get("tools")
    if listed is not None and not (isinstance(listed, list)
                                   and all(isinstance(n, str) for n in listed)):
        errors["metadata.tanglaw.tools"] = ["expected a list of tool names"]
        listed = []
    for i, tool_name in enumerate(listed or []):
        if tool_name.strip() not in tool_names.values():
            tool_names[f"metadata.tanglaw.tools[{i}]"] = tool_name.strip()
    data["tool_names"] = tool_names

    for key in sorted(set(tanglaw) - {"instructions", "tools", "note"}, key=str):
        _skip(skipped, f"metadata.tanglaw.{key}", "not an agent setting Tanglaw imports")
    for key in sorted(set(meta) - {"tanglaw"}, key=str):
        _skip(skipped, f"metadata.{key}", "Tanglaw agents keep no metadata")
    for key in sorted(set(doc) - {"kind", "name", "description", "instructions", "model",
                                  "tools", "metadata"}, key=str):
        _skip(skipped, str(key), "Tanglaw agents have no such setting")
    if errors:
        raise Invalid(errors)
    return data, skipped


def plan_import(text: str, backend_id: Any, model: Any) -> Plan:
    """Parse the file, match its tools, check the backend and model the operator chose, and
    check the agent as create_agent will. Raises Invalid listing every problem."""
    errors: dict[str, list[str]] = {}
    data: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    try:
        data, skipped = parse_import(text)
    except Invalid as exc:
        errors.update(exc.errors)
    backend = None
    if backend_id in (None, ""):
        errors["backend_id"] = ["Choose the backend the new agent runs on (the file's "
                                "connection is not used)."]
    elif not digits(str(backend_id)) or len(str(backend_id)) > 18 or not (
            backend := Backend.objects.filter(pk=int(backend_id)).first()):
        errors["backend_id"] = ["No such backend."]
    if not isinstance(model, str) or not model.strip():
        errors["model"] = ["Enter the model the new agent uses on that backend."]
    if errors:
        raise Invalid(errors)
    assert backend is not None
    names = data.pop("tool_names")
    found = {t.name: t for t in Tool.objects.filter(name__in=set(names.values()))}
    for path, tool_name in names.items():
        if tool_name not in found:
            _skip(skipped, path, f"no Tanglaw tool is named {tool_name[:64]!r}")
    tools = sorted(found.values(), key=lambda t: t.name)
    fields = {f: Agent._meta.get_field(f).get_default() for f in _DEFAULTS}  # type: ignore[union-attr]
    fields.update({"kind": AgentKind.ASSISTANT, "enabled": True, "log_content": False,
                   "description": "", "system_prompt": "", **data, "backend_id": backend.pk,
                   "model": model.strip(), "tool_ids": [t.pk for t in tools]})
    form = AgentForm(data={**fields, "backend": backend.pk, "tools": fields["tool_ids"]})
    if not form.is_valid():
        raise Invalid(_at_paths(form.errors.get_json_data()))
    return Plan(fields, tools, skipped)


def _at_paths(errors: dict[str, Any]) -> dict[str, list[str]]:
    return {_FIELD_PATHS.get(key, key): [m["message"] if isinstance(m, dict) else str(m)
                                         for m in messages]
            for key, messages in errors.items()}


@dataclass
class Imported:
    agent: Agent
    not_imported: list[dict[str, str]]


def import_agent(actor: Actor, text: str, *, backend_id: Any, model: Any) -> Imported:
    """Create the agent the file describes through agents.actions.create_agent (versioned
    and audited like any other). Raises Invalid naming each problem by its path."""
    plan = plan_import(text, backend_id, model)
    try:
        agent = actions.create_agent(actor, plan.data)
    except Invalid as exc:  # e.g. the name was taken since the check
        raise Invalid(_at_paths(exc.errors)) from None
    return Imported(agent, plan.not_imported)
