"""Running the model's tool calls: validated against the tool's JSON Schema, asked
about when the tool needs approval, executed with its timeout, recorded; a repeated
call or a tool that stays invalid ends the turn."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jsonschema

from agents.runtime import tracing
from agents.runtime.errors import TurnFailed
from agents.runtime.types import Approve, Emit, ToolCall, ToolCallRecord, TurnSettings, TurnState
from agents.tools import ToolError
from agents.tools import execute as execute_tool
from console.safeinput import loads_json

MAX_RETRIES_PER_CALL = 2
APPROVAL_TIMEOUT_S = 120.0


async def run_call(call: ToolCall, settings: TurnSettings, state: TurnState, emit: Emit,
                   approve: Approve | None, seen_calls: set[str],
                   errors_by_name: dict[str, int]) -> tuple[bool, Any]:
    """Validate, approve and execute one call. Returns (ok, output or error message);
    the output is whatever the tool returned. Traced as `execute_tool <name>`."""
    trace = state.trace
    with trace.span(f"execute_tool {call['name']}") as span:
        spec = settings.tools.get(call["name"])
        if trace.enabled:
            tracing.tool_start(span, dict(call), spec.kind if spec else None, trace.content)
        ok, output = await _run_call(call, settings, state, emit, approve, seen_calls,
                                     errors_by_name)
        if trace.enabled:
            tracing.tool_end(span, ok, output, trace.content)
        return ok, output


async def _run_call(call: ToolCall, settings: TurnSettings, state: TurnState, emit: Emit,
                    approve: Approve | None, seen_calls: set[str],
                    errors_by_name: dict[str, int]) -> tuple[bool, Any]:
    started = time.perf_counter()
    name, raw = call["name"], call["arguments"] or "{}"
    await emit({"type": "tool_call", "id": call["id"], "name": name, "arguments": raw})
    spec = settings.tools.get(name)
    arguments: Any = None
    approved_by = ""
    denied = False

    def done(ok: bool, output: Any) -> tuple[bool, Any]:
        shown = json.dumps(output, default=str, ensure_ascii=False) if ok else str(output)
        summary = shown[:500]
        ms = (time.perf_counter() - started) * 1000
        state.tool_calls.append(ToolCallRecord(call["id"], name, arguments, ok, summary, ms,
                                               approved_by))
        return ok, output

    def invalid(message: str) -> tuple[bool, Any]:
        errors_by_name[name] = errors_by_name.get(name, 0) + 1
        if errors_by_name[name] > MAX_RETRIES_PER_CALL:
            done(False, message)
            raise TurnFailed("tool_errors", f"{name}: still invalid after "
                                            f"{MAX_RETRIES_PER_CALL} retries: {message}")
        return done(False, message)

    if spec is None:
        valid = ", ".join(sorted(settings.tools)) or "none"
        ok, output = invalid(f"unknown tool {name!r}; the tools you may call are: {valid}")
    else:
        try:
            # strict JSON: a model's `Infinity` or `NaN` is not an argument a tool can use
            arguments = loads_json(raw, "arguments")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
            jsonschema.validate(arguments, spec.parameters or {"type": "object"})
        except (ValueError, jsonschema.ValidationError) as exc:
            reason = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
            ok, output = invalid(f"invalid arguments for {name}: {reason}. The arguments must "
                                 f"match this JSON Schema: {json.dumps(spec.parameters)}")
        else:
            signature = name + json.dumps(arguments, sort_keys=True)
            if signature in seen_calls:
                done(False, "the same call was already made in this turn")
                raise TurnFailed("repeated_tool_call", f"the model repeated the call {name}"
                                                       f"({raw}); stopping the turn")
            seen_calls.add(signature)
            allowed = True
            if spec.requires_approval:
                with state.trace.span(f"await_approval {name}") as waiting:
                    allowed, approved_by = await _ask(call, arguments, emit, approve)
                    waiting.set(tanglaw__approval__approved=allowed,
                                tanglaw__approval__by=approved_by if allowed else None,
                                tanglaw__approval__reason=None if allowed else approved_by)
            if not allowed:
                reason, approved_by = approved_by, ""
                denied = True
                ok, output = done(False, reason or "the operator did not approve this call")
            else:
                try:
                    async with asyncio.timeout(spec.timeout_s):
                        result = await execute_tool(spec, arguments)
                    ok, output = done(True, result)
                except TimeoutError:
                    ok, output = done(False, f"{name} timed out after {spec.timeout_s:g}s")
                except ToolError as exc:
                    ok, output = done(False, f"{name} failed: {exc}")
    record = state.tool_calls[-1]
    # denied: the operator said no (or no one answered in time): not the tool failing
    await emit({"type": "tool_result", "id": call["id"], "ok": ok, "denied": denied,
                "summary": record.result_summary, "ms": round(record.ms, 1)})
    return ok, output


async def _ask(call: ToolCall, arguments: dict[str, Any], emit: Emit,
               approve: Approve | None) -> tuple[bool, str]:
    await emit({"type": "approval_required", "id": call["id"], "name": call["name"],
                "arguments": arguments})
    if approve is None:
        return False, "this tool needs an operator's approval, and none can be asked here"
    try:
        async with asyncio.timeout(APPROVAL_TIMEOUT_S):
            return await approve({"id": call["id"], "name": call["name"],
                                  "arguments": arguments})
    except TimeoutError:
        return False, f"no approval within {APPROVAL_TIMEOUT_S:g}s"
