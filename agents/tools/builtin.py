"""Built-in tools: current_time and calculator (a safe arithmetic parser, no eval)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.tools import ToolError

SPECS: dict[str, dict[str, Any]] = {
    "current_time": {
        "description": "The current date and time in a time zone (IANA name, default UTC).",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "e.g. Asia/Manila",
                                        "maxLength": 64}},
            "additionalProperties": False,
        },
    },
    "search_knowledge": {
        "description": "Search the documents operators uploaded to the local knowledge base; "
                       "returns the best matching excerpts with their titles.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 500},
                           "limit": {"type": "integer", "minimum": 1, "maximum": 10}},
            "required": ["query"],
            "additionalProperties": False,
        },
    },
    "calculator": {
        "description": "Evaluate an arithmetic expression: + - * / // % **, parentheses, "
                       "sqrt, abs, round, min, max, log, sin, cos, tan, pi, e.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 200}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
    "log": math.log, "sin": math.sin, "cos": math.cos, "tan": math.tan,
}
_CONSTS = {"pi": math.pi, "e": math.e}
MAX_MAGNITUDE = 1e100


def calculate(expression: str) -> float | int:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(
            node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e10):
            raise ToolError("exponent too large")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
            raise ToolError("result out of range")
        return result
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS and not node.keywords and len(node.args) <= 4):
        try:
            return _FUNCS[node.func.id](*(_eval(a) for a in node.args))
        except (ValueError, TypeError) as exc:
            raise ToolError(f"{node.func.id}: {exc}") from None
    raise ToolError("only numbers, + - * / // % **, parentheses and "
                    f"{', '.join(sorted(_FUNCS))} are allowed")


async def execute(spec: Any, arguments: dict) -> Any:
    name = spec.name
    if name == "current_time":
        zone_name = arguments.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown time zone {zone_name!r}; use an IANA name like "
                            f"Asia/Manila") from None
        now = datetime.now(zone)
        return {"timezone": zone_name, "iso": now.isoformat(timespec="seconds"),
                "weekday": now.strftime("%A")}
    if name == "calculator":
        return {"expression": arguments["expression"],
                "result": calculate(arguments["expression"])}
    if name == "search_knowledge":
        from asgiref.sync import sync_to_async

        from agents.knowledge import search

        hits = await sync_to_async(search)(arguments["query"], arguments.get("limit", 5))
        return {"query": arguments["query"], "results": [
            {"document_id": h.id, "title": h.title, "excerpt": h.excerpt} for h in hits]}
    raise ToolError(f"no built-in tool named {name!r}")
