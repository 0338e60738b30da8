"""Pages for HTTP tools and MCP servers (the tool list itself is in agents.views)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from agents import tool_actions
from agents.choices import McpTransport, ToolKind
from agents.models import McpServer, Tool
from agents.tools.http import DEFAULT_MAX_BYTES, METHODS
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import Role
from console.permissions import has_perm, require
from console.safeinput import UnsafeInput, check_value, loads_json

EXAMPLE_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}


def _header_lines(text: str, field: str, errors: dict) -> dict[str, str]:
    """`Name: value` per line."""
    headers = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            errors.setdefault(field, []).append(f"line {n}: write it as Name: value")
            continue
        headers[name.strip()] = value.strip()
    return headers


def _number(text: str, field: str, errors: dict, kind=float) -> Any:
    try:
        value = kind(text)
        check_value(value, field)
        return value
    except (TypeError, ValueError):  # UnsafeInput too: NaN, inf, 4,000 digits
        errors.setdefault(field, []).append("enter a number")
        return None


def _http_tool_data(post, editing: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    try:
        parameters = loads_json(post.get("parameters") or "{}", "parameters")
    except UnsafeInput as exc:
        errors["parameters"] = [exc.message]
        parameters = None
    data: dict[str, Any] = {
        "description": post.get("description", ""),
        "requires_approval": "requires_approval" in post, "enabled": "enabled" in post,
        "timeout_s": _number(post.get("timeout_s"), "timeout_s", errors),
        "config": {"method": post.get("method", "GET"), "url": post.get("url", "").strip(),
                   "headers": _header_lines(post.get("headers", ""), "headers", errors),
                   "allow_hosts": post.get("allow_hosts", "").replace(",", " ").split(),
                   "max_response_bytes": _number(post.get("max_response_bytes"),
                                                 "max_response_bytes", errors, int)}}
    if parameters is not None:
        data["parameters"] = parameters
    secrets = _header_lines(post.get("secret_headers", ""), "secret_headers", errors)
    if secrets or not editing:
        data["secret_headers"] = secrets
    if editing and "clear_secret_headers" in post:
        data["clear_secret_headers"] = True
    if editing and "keep_secret_headers" in post:
        data["keep_secret_headers"] = True
    if not editing:
        data["name"] = post.get("name", "").strip()
    return data, errors


def _form_values(tool: Tool | None, post=None) -> dict[str, Any]:
    if post is not None:
        return {k: post.get(k, "") for k in ("name", "description", "method", "url", "headers",
                                             "allow_hosts", "max_response_bytes", "timeout_s",
                                             "parameters")} | {
            "requires_approval": "requires_approval" in post, "enabled": "enabled" in post}
    if tool is None:
        return {"method": "GET", "max_response_bytes": DEFAULT_MAX_BYTES, "timeout_s": 10,
                "parameters": json.dumps(EXAMPLE_SCHEMA, indent=2), "enabled": True}
    config = tool.config
    return {"name": tool.name, "description": tool.description,
            "method": config.get("method", "GET"), "url": config.get("url", ""),
            "headers": "\n".join(f"{k}: {v}" for k, v in config.get("headers", {}).items()),
            "allow_hosts": "\n".join(config.get("allow_hosts", [])),
            "max_response_bytes": config.get("max_response_bytes", DEFAULT_MAX_BYTES),
            "timeout_s": tool.timeout_s, "parameters": json.dumps(tool.parameters, indent=2),
            "requires_approval": tool.requires_approval, "enabled": tool.enabled}


@require("agents.change")
@require_http_methods(["GET", "POST"])
def http_tool_form(request, pk: int | None = None):
    """Create or edit an HTTP tool. Secret header values are write-only."""
    tool = get_object_or_404(Tool, pk=pk, kind=ToolKind.HTTP) if pk else None
    values = _form_values(tool)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        data, errors = _http_tool_data(request.POST, editing=tool is not None)
        values = _form_values(tool, request.POST)
        if not errors:
            actor = Actor.from_request(request)
            try:
                if tool is None:
                    tool = tool_actions.create_tool(actor, data)
                else:
                    tool_actions.update_tool(actor, tool, data)
            except Invalid as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Saved {tool.name}. Give it to an agent on the "
                                          f"agent's page.")
                return redirect(f"/tools/#tool-{tool.pk}")
    return render(request, "agents/http_tool_form.html", {
        "tool": tool, "values": values, "errors": errors, "methods": METHODS,
        "can_keep_secrets": request.user.effective_role == Role.ADMIN})


@require("agents.change")
@require_http_methods(["POST"])
def tool_delete(request, pk: int):
    tool = get_object_or_404(Tool, pk=pk)
    try:
        tool_actions.delete_tool(Actor.from_request(request), tool)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Deleted {tool.name}.")
    return redirect("tool_list")


@require("agents.view")
@require_http_methods(["GET", "POST"])
def mcp_servers(request):
    """Registered MCP servers with their tools; operators register, list and remove them."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {"transport": McpTransport.HTTP}
    if request.method == "POST":
        if not has_perm(request.user, "agents.change"):
            raise PermissionDenied("Your role may not register MCP servers.")
        post = request.POST
        values = {k: post.get(k, "") for k in ("name", "transport", "url", "command", "args")}
        data: dict[str, Any] = {"name": values["name"].strip(),
                                "transport": values["transport"] or McpTransport.HTTP,
                                "url": values["url"].strip(),
                                "command": values["command"].strip(),
                                "args": values["args"].split()}
        secrets = _header_lines(post.get("secret_headers", ""), "secret_headers", errors)
        data["secret_headers"] = secrets
        if not errors:
            actor = Actor.from_request(request)
            try:
                server = tool_actions.create_server(actor, request.user, data)
            except Invalid as exc:
                errors = exc.errors
            else:
                try:
                    report = tool_actions.refresh_server(actor, server)
                except Refused as exc:
                    messages.warning(request, f"Registered {server.name}, but its tools could "
                                              f"not be listed: {exc}")
                else:
                    messages.success(request, f"Registered {server.name}: "
                                              f"{len(report['added'])} tools listed. Enable the "
                                              f"ones agents may call.")
                return redirect("mcp_servers")
    return render(request, "agents/mcp_servers.html", {
        "servers": McpServer.objects.prefetch_related("tools"), "errors": errors,
        "values": values, "may_stdio": has_perm(request.user, "mcp.stdio")})


@require("agents.change")
@require_http_methods(["POST"])
def mcp_server_refresh(request, pk: int):
    server = get_object_or_404(McpServer, pk=pk)
    try:
        report = tool_actions.refresh_server(Actor.from_request(request), server)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{server.name}: {len(report['added'])} new, "
                                  f"{len(report['updated'])} updated, "
                                  f"{len(report['missing'])} no longer offered.")
    return redirect("mcp_servers")


@require("agents.change")
@require_http_methods(["POST"])
def mcp_server_delete(request, pk: int):
    server = get_object_or_404(McpServer, pk=pk)
    try:
        tool_actions.delete_server(Actor.from_request(request), request.user, server)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Removed {server.name} and its tools.")
    return redirect("mcp_servers")
