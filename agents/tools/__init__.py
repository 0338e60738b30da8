"""Tool kinds: one module each. `execute(spec, arguments)` runs a validated call."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

REGISTRY = {
    "builtin": "agents.tools.builtin.execute",
}


class ToolError(Exception):
    """A tool failed; the message goes back to the model as the tool's output."""


async def execute(kind: str, name: str, config: dict, arguments: dict) -> Any:
    try:
        runner = import_string(REGISTRY[kind])
    except KeyError:
        raise ToolError(f"tools of kind {kind!r} cannot run yet") from None
    return await runner(name, config, arguments)
