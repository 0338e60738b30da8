"""Check an MCP server the way the console talks to it: connect, list its tools with their
schemas, and call them (agents.tools.mcp, the code agents' tool calls go through).

    manage.py mcp_client http://127.0.0.1:3001/mcp                    # list
    manage.py mcp_client http://127.0.0.1:3001/mcp --call get-sum --arguments '{"a": 1, "b": 2}'
    manage.py mcp_client http://127.0.0.1:3001/mcp --call-all         # each with example args
    manage.py mcp_client --stdio uvx mcp-server-time --call-all

It is also the client the MCP conformance suite runs (`conformance client --command
"manage.py mcp_client --call-all"`), which appends the server's URL. Exit status 1 when
the server cannot be reached or a call fails.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents.tools import ToolError, mcp
from console.safeinput import loads_json


def example(schema: Any) -> Any:
    """A value its JSON Schema accepts: its default, first example or enum value, else a
    plain one of its type (objects get their required properties)."""
    if not isinstance(schema, dict):
        return None
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return max(1, int(float(low or 0)) + (1 if "exclusiveMinimum" in schema else 0))
    if kind == "string":
        return "2026-01-01T00:00:00Z" if schema.get("format") == "date-time" else "example"
    if kind == "boolean":
        return False
    if kind == "array":
        return [] if not schema.get("minItems") else [example(schema.get("items"))]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example(props.get(name, {})) for name in schema.get("required") or []}
    return None


class Command(BaseCommand):
    help = "Connect to an MCP server as the console does: list its tools and call them."

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="*",
                            help="the server's streamable HTTP URL, or with --stdio the "
                                 "command and its arguments")
        parser.add_argument("--stdio", action="store_true",
                            help="run the target as a stdio server (TANGLAW_MCP_STDIO_COMMANDS)")
        parser.add_argument("--call", help="the tool to call, by the server's own name")
        parser.add_argument("--arguments", default="{}", help="its arguments, a JSON object")
        parser.add_argument("--call-all", action="store_true",
                            help="call every tool with example arguments from its schema")
        parser.add_argument("--timeout", type=float, default=15.0)
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print one JSON document")

    def handle(self, *args, target, stdio, call, arguments, call_all, timeout, as_json,
               **options):
        if not target:
            raise CommandError("give the server's URL (or --stdio and a command)")
        # the conformance suite appends the URL after our own arguments
        if stdio:
            conf = {"name": "cli", "transport": "stdio", "url": "", "command": target[0],
                    "args": target[1:]}
        else:
            conf = {"name": "cli", "transport": "http", "url": target[-1], "command": "",
                    "args": []}
        try:
            given = _loads(arguments) if call else {}
        except ValueError as exc:
            raise CommandError(f"--arguments: {getattr(exc, 'message', exc)}") from None
        report = asyncio.run(self._run(conf, call, given, call_all, timeout))
        self._print(report, as_json)
        if report.get("error") or any(not c["ok"] for c in report.get("calls", [])):
            raise SystemExit(1)

    async def _run(self, conf, call, given, call_all, timeout) -> dict[str, Any]:
        try:
            tools = await mcp.list_tools(conf, {}, timeout)
        except ToolError as exc:
            return {"error": str(exc), "tools": [], "calls": []}
        planned = [(call, given)] if call else [
            (t["name"], example(t["input_schema"]) or {}) for t in tools] if call_all else []
        calls = []
        for name, arguments in planned:
            try:
                result = await mcp.call(conf, {}, name, arguments, timeout)
                calls.append({"tool": name, "arguments": arguments, "ok": True,
                              "result": result})
            except ToolError as exc:
                calls.append({"tool": name, "arguments": arguments, "ok": False,
                              "error": str(exc)})
        return {"tools": tools, "calls": calls}

    def _print(self, report: dict[str, Any], as_json: bool) -> None:
        if as_json:
            self.stdout.write(json_dumps(report))
            return
        if report.get("error"):
            self.stderr.write(report["error"])
            return
        self.stdout.write(f"{len(report['tools'])} tools")
        for tool in report["tools"]:
            required = tool["input_schema"].get("required") or []
            self.stdout.write(f"  {tool['name']}({', '.join(required)}): "
                              f"{tool['description'][:80]}")
        for c in report["calls"]:
            outcome = json_dumps(c["result"])[:200] if c["ok"] else f"FAILED {c['error']}"
            self.stdout.write(f"{c['tool']}({json_dumps(c['arguments'])}) → {outcome}")


def _loads(text: str) -> dict[str, Any]:
    value = loads_json(text, "arguments")  # strict JSON, as the tool runtime reads it
    if not isinstance(value, dict):
        raise ValueError("a JSON object")
    return value


def json_dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
