"""Tool and MCP server changes: validated, audited, secrets write-only.

HTTP tools are created here (built-ins come from the first migration, MCP
tools from their server's tool list). Secret header values are encrypted on
the row; only their names are ever shown or exported.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from agents.choices import McpTransport, ToolKind
from agents.models import McpServer, Tool
from agents.tools import ToolError
from agents.tools import http as http_tool
from agents.tools import mcp as mcp_tool
from console import audit
from console.actions import Invalid, Refused
from console.actions.secrets import SecretMove, secret_move
from console.audit import Actor
from console.choices import AuditAction
from console.permissions import has_perm
from console.safeinput import UnsafeInput, check_value
from console.urlsafety import UnsafeURL, check_backend_url

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
COMMON = ("description", "parameters", "requires_approval", "timeout_s", "enabled")


def tool_state(tool: Tool) -> dict[str, Any]:
    """What the audit log and the API show of a tool (secret names only)."""
    return {"name": tool.name, "kind": tool.kind, "description": tool.description,
            "parameters": tool.parameters, "requires_approval": tool.requires_approval,
            "timeout_s": tool.timeout_s, "enabled": tool.enabled, "config": tool.config,
            "secret_header_names": list(tool.secret_header_names or []),
            "server_id": tool.server_id}


def _check_schema(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return ["parameters: give a JSON Schema object"]
    try:  # a schema the validator would recurse through a thousand levels of (or NaN)
        check_value(schema, "parameters", max_depth=32)
    except UnsafeInput as exc:
        return [f"{exc.field}: {exc.message}"]
    if schema.get("type", "object") != "object":
        return ["parameters: the schema's type must be \"object\" (tool arguments are an "
                "object)"]
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return [f"parameters{'/' + where if where else ''}: {exc.message}"]
    return []


def _common(data: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "description" in data:
        text = str(data["description"] or "").strip()
        if not text:
            errors.append("description: describe what the tool does; the model reads it")
        out["description"] = text[:2000]
    if "parameters" in data:
        errors += _check_schema(data["parameters"])
        out["parameters"] = data["parameters"]
    if "timeout_s" in data:
        value = data["timeout_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0.1 <= value <= 600):
            errors.append("timeout_s: seconds from 0.1 to 600")
        else:
            out["timeout_s"] = float(value)
    for flag in ("requires_approval", "enabled"):
        if flag in data:
            if not isinstance(data[flag], bool):
                errors.append(f"{flag}: true or false")
            else:
                out[flag] = data[flag]
    return out


def _raise(errors: list[str]) -> None:
    if errors:
        grouped: dict[str, list[str]] = {}
        for error in errors:
            field, _, message = error.partition(": ")
            grouped.setdefault(field, []).append(message or field)
        raise Invalid(grouped)


def _http_fields(data: dict[str, Any], tool: Tool | None, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "config" in data or tool is None:
        config, config_errors = http_tool.clean_config(data.get("config"))
        errors += config_errors
        out["config"] = config
    if data.get("secret_headers") is not None:
        secrets, secret_errors = http_tool.clean_secret_headers(data["secret_headers"])
        errors += secret_errors
        out["secret_headers"] = json.dumps(secrets) if secrets else ""
        out["secret_header_names"] = sorted(secrets)
    url = (out.get("config") or (tool.config if tool else {})).get("url", "")
    schema = out.get("parameters", data.get("parameters", tool.parameters if tool else {}))
    props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
    for name in http_tool.placeholders(url):
        if name not in props:
            errors.append(f"config: the URL uses {{{name}}} but parameters has no property "
                          f"{name!r}")
    return out


def create_tool(actor: Actor, data: dict[str, Any]) -> Tool:
    """A new HTTP tool. Raises Invalid naming every bad field."""
    errors: list[str] = []
    kind = data.get("kind", ToolKind.HTTP)
    if kind != ToolKind.HTTP:
        errors.append("kind: only http tools are created here; built-in tools already exist "
                      "and MCP tools come from their server")
    name = str(data.get("name") or "").strip()
    if not TOOL_NAME.match(name):
        errors.append("name: 1–64 letters, digits, _ or - (the name the model calls)")
    elif Tool.objects.filter(name=name).exists():
        errors.append(f"name: a tool named {name} already exists")
    fields = _common({"parameters": {"type": "object", "properties": {}}, "timeout_s": 10.0,
                      "requires_approval": False, "enabled": True, **data}, errors)
    if "description" not in data:
        errors.append("description: describe what the tool does; the model reads it")
    fields.update(_http_fields({**data, "parameters": fields.get("parameters")}, None, errors))
    _raise(errors)
    with transaction.atomic():
        tool = Tool.objects.create(name=name, kind=ToolKind.HTTP, **fields)
        audit.record(AuditAction.TOOL_CREATED, actor, target=tool, after=tool_state(tool))
    return tool


def update_tool(actor: Actor, tool: Tool, changes: dict[str, Any]) -> Tool:
    """Change a tool. Built-in and MCP tools: approval, timeout and enabled only."""
    errors: list[str] = []
    changes = {k: v for k, v in changes.items() if v is not None}
    editable = set(COMMON) | {"config", "secret_headers", "clear_secret_headers",
                              "keep_secret_headers"} if (
        tool.kind == ToolKind.HTTP) else {"requires_approval", "timeout_s", "enabled"}
    for key in sorted(set(changes) - editable):
        errors.append(f"{key}: cannot be changed on a {tool.get_kind_display()} tool")
    fields = _common({k: v for k, v in changes.items() if k in COMMON}, errors)
    move = SecretMove()
    if tool.kind == ToolKind.HTTP:
        fields.update(_http_fields({**changes, **fields}, tool, errors))
        if changes.get("clear_secret_headers"):
            fields["secret_headers"], fields["secret_header_names"] = "", []
        if not errors:
            new_url = (fields.get("config") or tool.config).get("url", "")
            move = secret_move(actor, field="secret_headers",
                               old_url=_fixed(tool.config.get("url", "")),
                               new_url=_fixed(new_url), has_secret=bool(tool.secret_headers),
                               replaced="secret_headers" in fields,
                               keep=bool(changes.get("keep_secret_headers")))
            if move.clear:
                fields["secret_headers"], fields["secret_header_names"] = "", []
    _raise(errors)
    before = tool_state(tool)
    with transaction.atomic():
        for key, value in fields.items():
            setattr(tool, key, value)
        tool.save()
        after = tool_state(tool)
        if after != before or "secret_headers" in fields:
            audit.record(AuditAction.TOOL_UPDATED, actor, target=tool, before=before,
                         after={**after, "secrets_changed": "secret_headers" in fields},
                         detail=move.note)
    return tool


def _fixed(template: str) -> str:
    """A URL template with its placeholders filled: they never reach the host part."""
    return http_tool.PLACEHOLDER.sub("x", template)


def delete_tool(actor: Actor, tool: Tool) -> None:
    if tool.kind != ToolKind.HTTP:
        raise Refused("only HTTP tools can be deleted; disable a built-in tool, or remove its "
                      "MCP server")
    with transaction.atomic():
        before, pk = tool_state(tool), tool.pk
        tool.delete()
        audit.record(AuditAction.TOOL_DELETED, actor, target_type="agents.tool", target_id=pk,
                     before=before)


# -- MCP servers ---------------------------------------------------------------

def server_state(server: McpServer) -> dict[str, Any]:
    return {"name": server.name, "transport": server.transport, "url": server.url,
            "command": server.command, "args": list(server.args or []),
            "secret_header_names": list(server.secret_header_names or []),
            "enabled": server.enabled}


def server_fields(user, data: dict[str, Any], server: McpServer | None) -> dict[str, Any]:
    errors: list[str] = []
    out: dict[str, Any] = {}
    if server is None or "name" in data:
        name = str(data.get("name") or "").strip()
        if not SERVER_NAME.match(name):
            errors.append("name: 1–32 letters, digits, _ or - (prefixes its tools' names)")
        elif McpServer.objects.filter(name=name).exclude(
                pk=server.pk if server else -1).exists():
            errors.append(f"name: an MCP server named {name} already exists")
        out["name"] = name
    transport = data.get("transport", server.transport if server else McpTransport.HTTP)
    if transport not in McpTransport.values:
        errors.append("transport: http or stdio")
    out["transport"] = transport
    if transport == McpTransport.HTTP and (server is None or "url" in data or
                                           server.transport != transport):
        try:
            out["url"] = check_backend_url(str(data.get("url") or ""))
        except UnsafeURL as exc:
            errors.append(f"url: {exc}")
        out["command"], out["args"] = "", []
    if transport == McpTransport.STDIO:
        if not has_perm(user, "mcp.stdio"):
            errors.append("transport: only admins may register stdio MCP servers (they run a "
                          "command on this machine)")
        command = str(data.get("command", server.command if server else "") or "").strip()
        args = data.get("args", server.args if server else [])
        if not command:
            errors.append("command: enter the command to run")
        elif not mcp_tool.stdio_allowed(command):
            errors.append(f"command: {command!r} is not in TANGLAW_MCP_STDIO_COMMANDS; an "
                          f"administrator of this machine must allow it first")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            errors.append("args: a list of strings")
        out.update(command=command, args=args if isinstance(args, list) else [], url="")
    if data.get("secret_headers") is not None:
        secrets, secret_errors = http_tool.clean_secret_headers(data["secret_headers"])
        errors += secret_errors
        out["secret_headers"] = json.dumps(secrets) if secrets else ""
        out["secret_header_names"] = sorted(secrets)
    if "enabled" in data:
        out["enabled"] = bool(data["enabled"])
    _raise(errors)
    return out


def create_server(actor: Actor, user, data: dict[str, Any]) -> McpServer:
    fields = server_fields(user, data, None)
    with transaction.atomic():
        server = McpServer.objects.create(**fields)
        audit.record(AuditAction.MCP_SERVER_CREATED, actor, target=server,
                     after=server_state(server))
    return server


def update_server(actor: Actor, user, server: McpServer, changes: dict[str, Any]) -> McpServer:
    if server.transport == McpTransport.STDIO and not has_perm(user, "mcp.stdio"):
        raise Refused("only admins may change a stdio MCP server")
    fields = server_fields(user, {k: v for k, v in changes.items() if v is not None}, server)
    move = secret_move_for_server(actor, server, fields, changes)
    if move.clear:
        fields["secret_headers"], fields["secret_header_names"] = "", []
    before = server_state(server)
    with transaction.atomic():
        for key, value in fields.items():
            setattr(server, key, value)
        server.save()
        audit.record(AuditAction.MCP_SERVER_UPDATED, actor, target=server, before=before,
                     after={**server_state(server),
                            "secrets_changed": "secret_headers" in fields},
                     detail=move.note)
    return server


def secret_move_for_server(actor: Actor, server: McpServer, fields: dict[str, Any],
                           changes: dict[str, Any]) -> SecretMove:
    """What an edit (validated `fields`) does to the server's stored secret headers; the
    import's tool listing asks the same before it connects anywhere."""
    return secret_move(actor, field="secret_headers", old_url=server.url,
                       new_url=fields.get("url", server.url) or "",
                       has_secret=bool(server.secret_headers),
                       replaced="secret_headers" in fields,
                       keep=bool(changes.get("keep_secret_headers")))


def delete_server(actor: Actor, user, server: McpServer) -> None:
    if server.transport == McpTransport.STDIO and not has_perm(user, "mcp.stdio"):
        raise Refused("only admins may remove a stdio MCP server")
    with transaction.atomic():
        before, pk = server_state(server), server.pk
        before["tools"] = list(server.tools.values_list("name", flat=True))
        server.delete()
        audit.record(AuditAction.MCP_SERVER_DELETED, actor, target_type="agents.mcpserver",
                     target_id=pk, before=before)


def server_secrets(server_or_tool) -> dict[str, str]:
    raw = server_or_tool.secret_headers
    return json.loads(raw) if raw else {}


def refresh_server(actor: Actor, server: McpServer) -> dict[str, list[str]]:
    """List the server's tools into Tool rows. New ones start disabled; gone ones are disabled.

    Returns {"added": [...], "updated": [...], "missing": [...]} (tool names).
    """
    try:
        remote = fetch_tools(server, server_secrets(server))
    except ToolError as exc:
        McpServer.objects.filter(pk=server.pk).update(last_error=str(exc)[:1000])
        audit.record(AuditAction.MCP_SERVER_REFRESHED, actor, target=server,
                     outcome="failure", detail=str(exc))
        raise Refused(str(exc)) from None
    return store_tools(actor, server, remote)


def fetch_tools(server: McpServer, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """The server's tool list, over the network and outside any transaction (a round
    trip inside one would hold SQLite's write lock for every other writer)."""
    return async_to_sync(mcp_tool.list_tools)(mcp_tool.server_config(server), secrets)


def store_tools(actor: Actor, server: McpServer,
                remote: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Write a listing fetched by `fetch_tools` into Tool rows (no network here)."""
    report: dict[str, list[str]] = {"added": [], "updated": [], "missing": []}
    with transaction.atomic():
        existing = {t.config.get("remote_name"): t for t in server.tools.all()}
        taken = set(Tool.objects.exclude(server=server).values_list("name", flat=True))
        for item in remote:
            tool = existing.pop(item["name"], None)
            parameters = item["input_schema"] if not _check_schema(item["input_schema"]) else {
                "type": "object"}
            if tool is None:
                name = mcp_tool.safe_name(server.name, item["name"], taken)
                taken.add(name)
                Tool.objects.create(name=name, kind=ToolKind.MCP, server=server, enabled=False,
                                    description=item["description"][:2000],
                                    parameters=parameters,
                                    config={"remote_name": item["name"]})
                report["added"].append(name)
            else:
                tool.description, tool.parameters = item["description"][:2000], parameters
                tool.config = {"remote_name": item["name"]}
                tool.save(update_fields=["description", "parameters", "config"])
                report["updated"].append(tool.name)
        for tool in existing.values():
            if tool.enabled or not tool.config.get("missing"):
                tool.enabled = False
                tool.config = {**tool.config, "missing": True}
                tool.save(update_fields=["enabled", "config"])
            report["missing"].append(tool.name)
        server.last_listed_at, server.last_error = timezone.now(), ""
        server.save(update_fields=["last_listed_at", "last_error"])
        audit.record(AuditAction.MCP_SERVER_REFRESHED, actor, target=server, after=report)
    return report
