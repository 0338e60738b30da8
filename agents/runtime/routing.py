"""A router agent's decision: the router model picks a specialist with a forced tool
call (or strict JSON), keyword rules pick one when its answer is invalid, and a request
labelled complex is escalated to the router's escalation target."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, TypedDict

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessage

from agents.runtime.errors import TurnFailed, explain
from agents.runtime.types import Emit, RouterSettings, Specialist, TurnSettings, TurnState
from console.safeinput import loads_json
from traces.choices import SpanKind

ROUTE_TOOL = "choose_specialist"


class RouteChoice(TypedDict):
    specialist: str  # one of the specialists' names, as the router spells them
    complex: bool
    reason: str


def _route_tool(names: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": ROUTE_TOOL,
        "description": "Pick the specialist that should answer the user's message.",
        "parameters": {"type": "object", "properties": {
            "specialist": {"type": "string", "enum": names},
            "complexity": {"type": "string", "enum": ["simple", "complex"]},
            "reason": {"type": "string", "maxLength": 300}},
            "required": ["specialist", "complexity"], "additionalProperties": False}}}


def parse_choice(message: ChatCompletionMessage | None,
                 names: list[str]) -> tuple[RouteChoice | None, str]:
    """The router model's answer, from a forced tool call or strict JSON in the text.

    Returns (choice, "") or (None, why it is invalid)."""
    raw: str | None = None
    for call in getattr(message, "tool_calls", None) or []:
        if call.function and call.function.name == ROUTE_TOOL:
            raw = call.function.arguments
            break
    if raw is None:
        raw = (getattr(message, "content", None) or "").strip()
        if raw.startswith("```"):
            raw = raw.strip("`").removeprefix("json").strip()
    if not raw:
        return None, "the router model gave no answer"
    try:
        choice = loads_json(raw, "answer")
    except ValueError:
        return None, f"the router model's answer is not JSON: {raw[:80]!r}"
    if not isinstance(choice, dict):
        return None, "the router model's answer is not a JSON object"
    by_lower = {n.lower(): n for n in names}
    picked = by_lower.get(str(choice.get("specialist", "")).strip().lower())
    if picked is None:
        return None, (f"the router model chose {choice.get('specialist')!r}, which is not one "
                      f"of {', '.join(names)}")
    return {"specialist": picked, "complex": choice.get("complexity") == "complex",
            "reason": str(choice.get("reason") or "")[:300]}, ""


def keyword_choice(specialists: list[Specialist], text: str) -> tuple[Specialist, str]:
    lowered = text.lower()
    for specialist in specialists:
        for keyword in specialist.keywords:
            if keyword and keyword.lower() in lowered:
                return specialist, f"keyword {keyword!r} matched"
    return specialists[0], "no keyword matched, so the first specialist answers"


async def route(router: RouterSettings, history: list[dict[str, Any]], user_text: str,
                state: TurnState, emit: Emit) -> TurnSettings:
    """Pick a specialist (model first, keyword rules when its answer is invalid), maybe
    escalate, emit and record the decision; return the settings the turn runs with."""
    if not router.specialists:
        raise TurnFailed("no_specialist", "this router has no specialists to route to")
    started = time.perf_counter()
    names = [s.name for s in router.specialists]
    listing = "\n".join(f"- {s.name}: {s.description or 'no description'}"
                         for s in router.specialists)
    prompt = (f"{router.system_prompt}\n\n" if router.system_prompt else "") + (
        f"Route the user's message to one of these specialists:\n{listing}\n"
        f"Call {ROUTE_TOOL}, or answer with only JSON: "
        '{"specialist": "<name>", "complexity": "simple" | "complex", "reason": "<short>"}')
    messages = [{"role": "system", "content": prompt}, *history[-6:],
                {"role": "user", "content": user_text}]
    client = router.candidate.adapter.chat_client()
    choice: RouteChoice | None = None
    invalid = ""
    try:
        async with asyncio.timeout(router.timeout_s):
            request: dict[str, Any] = {
                "model": router.candidate.model, "messages": messages, "temperature": 0,
                "max_tokens": 200, "tools": [_route_tool(names)],
                "tool_choice": {"type": "function", "function": {"name": ROUTE_TOOL}}}
            with state.trace.span(f"chat {router.candidate.model}", SpanKind.CLIENT,
                                  gen_ai__operation__name="chat",
                                  gen_ai__request__model=router.candidate.model,
                                  tanglaw__backend__id=router.candidate.backend_id,
                                  tanglaw__router=True) as span:
                if state.trace.enabled:
                    request["extra_headers"] = {"traceparent": state.trace.traceparent(span)}
                # not streamed, so the SDK's overloads (lost to **request) give a
                # ChatCompletion
                response: ChatCompletion = await client.chat.completions.create(**request)
                if response.usage is not None:
                    span.set(gen_ai__usage__input_tokens=response.usage.prompt_tokens,
                             gen_ai__usage__output_tokens=response.usage.completion_tokens)
        choice, invalid = parse_choice(response.choices[0].message if response.choices
                                       else None, names)
    except TimeoutError:
        invalid = f"the router model did not answer within {router.timeout_s:g}s"
    except (openai.OpenAIError, ValueError) as exc:
        invalid = f"the router model failed: {explain(exc, router.candidate, router.timeout_s)}"
    if choice is not None:
        specialist = next(s for s in router.specialists if s.name == choice["specialist"])
        method = "model"
        reason = f"the router chose {specialist.name}" + (
            f": {choice['reason']}" if choice["reason"] else "")
    else:
        specialist, why = keyword_choice(router.specialists, user_text)
        method = "keywords"
        reason = f"{invalid}; {why}"
    decision = {"type": "route", "method": method, "agent_id": specialist.agent_id,
                "agent": specialist.name, "reason": reason,
                "complex": bool(choice and choice["complex"]),
                "ms": round((time.perf_counter() - started) * 1000, 1)}
    state.route.append(decision)
    await emit({"type": "route", "agent_id": specialist.agent_id, "agent": specialist.name,
                "reason": reason, "method": method, "escalation": False})
    chosen = specialist.settings
    if decision["complex"] and router.escalation is not None:
        target = router.escalation
        chosen = replace(chosen, candidates=[replace(target, escalation=False),
                                             *chosen.candidates])
        escalation = {"type": "escalation", "agent_id": specialist.agent_id,
                      "agent": specialist.name, "to": target.label,
                      "reason": f"escalated to {target.label}: the router labelled the "
                                f"request complex"}
        state.route.append(escalation)
        await emit({"type": "route", "agent_id": specialist.agent_id, "agent": target.label,
                    "reason": escalation["reason"], "escalation": True})
    return chosen
