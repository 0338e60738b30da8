"""MCP tools: list a Model Context Protocol server's tools and call them (the `mcp` SDK).

Streamable HTTP servers connect through console.egress (the server's own host
is the allow-list; link-local and metadata addresses stay refused). stdio
servers run only commands in TANGLAW_MCP_STDIO_COMMANDS, with a minimal
environment. Remote tool names are mapped to the OpenAI-safe
``[A-Za-z0-9_-]{1,64}`` form ``<server>_<tool>`` and back through the Tool row's
config (``remote_name``), so any name the server uses works.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from agents.tools import ToolError
from console.egress import Policy, async_transport
from console.urlsafety import UnsafeURL

SAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64
MAX_TOOLS = 200
MAX_RESULT_CHARS = 64 * 1024


def safe_name(server: str, remote: str, taken: set[str] | frozenset = frozenset()) -> str:
    """`<server>_<remote>` in the OpenAI-safe alphabet, unique, at most 64 characters."""
    base = SAFE.sub("_", f"{server}_{remote}")
    if base not in taken and len(base) <= MAX_NAME and base == f"{server}_{remote}":
        return base
    digest = hashlib.sha256(remote.encode()).hexdigest()[:8]
    return f"{base[:MAX_NAME - 9]}_{digest}"


def stdio_allowed(command: str) -> bool:
    allowed = settings.TANGLAW_MCP_STDIO_COMMANDS
    return command in allowed or (shutil.which(command) or "") in allowed


def server_config(server: Any) -> dict[str, Any]:
    """What a call needs to reach the server (no secrets: those travel in ToolSpec.secrets)."""
    return {"name": server.name, "transport": server.transport, "url": server.url,
            "command": server.command, "args": list(server.args or [])}


@asynccontextmanager
async def connect(conf: dict[str, Any], secrets: dict[str, str], timeout_s: float):
    """An initialised mcp.Client for the server."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    if conf["transport"] == "stdio":
        if not stdio_allowed(conf["command"]):
            raise ToolError(f"{conf['command']!r} is not in TANGLAW_MCP_STDIO_COMMANDS")
        params = StdioServerParameters(command=conf["command"], args=conf["args"])
        async with Client(params, read_timeout_seconds=timeout_s) as client:
            yield client
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    host = urlsplit(conf["url"]).hostname or ""
    http = httpx2.AsyncClient(transport=async_transport(Policy((host.lower(),)), httpx2=True),
                              headers=secrets or None, trust_env=False,
                              timeout=httpx2.Timeout(timeout_s, read=max(timeout_s, 30.0)))
    async with http, Client(streamable_http_client(conf["url"], http_client=http),
                            read_timeout_seconds=timeout_s) as client:
        yield client


def _explain(exc: BaseException, conf: dict[str, Any]) -> str:
    where = conf["url"] or conf["command"]
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, UnsafeURL | ToolError):
        return f"{where}: {exc}"
    text = str(exc) or type(exc).__name__
    if "ConnectError" in type(exc).__name__ or "connect" in text.lower():
        return f"cannot reach the MCP server at {where}: {text[:200]}"
    return f"the MCP server at {where} failed: {type(exc).__name__}: {text[:200]}"


async def list_tools(conf: dict[str, Any], secrets: dict[str, str],
                     timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Every tool the server offers: name, description and input schema."""
    try:
        async with connect(conf, secrets, timeout_s) as client:
            tools: list[dict[str, Any]] = []
            cursor = None
            while len(tools) < MAX_TOOLS:
                page = await client.list_tools(cursor=cursor)
                tools += [{"name": t.name, "description": t.description or t.title or t.name,
                           "input_schema": t.input_schema or {"type": "object"}}
                          for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools[:MAX_TOOLS]
    except Exception as exc:  # noqa: BLE001 - every failure becomes an operator-readable message
        raise ToolError(_explain(exc, conf)) from None


def _content(result: Any) -> Any:
    if result.structured_content is not None:
        return result.structured_content
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        else:
            parts.append(f"[{kind} content omitted]")
    text = "\n".join(parts)
    try:
        return json.loads(text)
    except ValueError:
        return text[:MAX_RESULT_CHARS]


async def call(conf: dict[str, Any], secrets: dict[str, str], name: str, arguments: dict,
               timeout_s: float) -> Any:
    """Call one of the server's tools by its own name; its result, or ToolError."""
    try:
        async with connect(conf, secrets, timeout_s) as client:
            result = await client.call_tool(name, arguments)
    except ToolError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model gets a readable tool error
        raise ToolError(_explain(exc, conf)) from None
    output = _content(result)
    if result.is_error:
        raise ToolError(str(output)[:500])
    return output


async def execute(spec: Any, arguments: dict) -> Any:
    return await call(spec.config["server"], spec.secrets, spec.config["remote_name"],
                      arguments, spec.timeout_s)
