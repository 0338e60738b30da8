"""Tool kinds: one module each. `execute(spec, arguments)` runs a validated call.

`spec` is the runtime's ToolSpec: name, kind, config, timeout and (for HTTP and
MCP tools) the decrypted secrets, which never leave the call.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

REGISTRY = {
    "builtin": "agents.tools.builtin.execute",
    "http": "agents.tools.http.execute",
    "mcp": "agents.tools.mcp.execute",
}


class ToolError(Exception):
    """A tool failed; the message goes back to the model as the tool's output."""


async def execute(spec: Any, arguments: dict) -> Any:
    try:
        runner = import_string(REGISTRY[spec.kind])
    except KeyError:
        raise ToolError(f"unknown tool kind {spec.kind!r}") from None
    return await runner(spec, arguments)
