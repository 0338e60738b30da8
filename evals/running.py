"""Asking targets: a case's messages through the turn service (agents.turns.TurnSession,
as the gateway's agent calls are), for experiments and comparisons alike.

A target is an agent, or a backend and a model; a model target runs as that model's
quick agent (agents.actions.quick_agent), so every turn has the agent's metrics,
trace, audit event and conversation, and "save as agent" works from any result. A
target's parameters (temperature, max_tokens, top_p, seed, tool_choice) apply to its
turns only. The turns are unattended: a tool that needs approval is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agents.turns import TurnSession
from console.actions import Invalid, Refused
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.limits import Busy
from evals.checks import Reply, json_of

log = logging.getLogger("tanglaw.evals")
Emit = Callable[[dict[str, Any]], Awaitable[None]]

TOOL_CHOICES = ("auto", "required", "none")
# name: (low, high) for numbers; a tuple of strings for a choice
PARAMS: dict[str, Any] = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
                          "max_tokens": (1, 32768), "seed": (0, 2**53),
                          "tool_choice": TOOL_CHOICES}
BUSY_WAIT_S = 120.0  # a turn waits this long for a generation slot before it fails


def clean_params(value: Any, path: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors[path] = [f"an object with any of {', '.join(PARAMS)}"]
        return {}
    out: dict[str, Any] = {}
    for key, given in value.items():
        rule = PARAMS.get(key)
        where = f"{path}.{key}"
        if rule is None:
            errors[where] = [f"unknown parameter (one of {', '.join(PARAMS)})"]
        elif isinstance(rule[0], str):
            if given not in rule:
                errors[where] = [f"one of {', '.join(rule)}"]
            else:
                out[key] = given
        else:
            whole = isinstance(rule[0], int)
            if isinstance(given, bool) or not isinstance(given, int if whole else int | float) \
                    or not rule[0] <= given <= rule[1]:
                errors[where] = [f"{'a whole number' if whole else 'a number'} from "
                                 f"{rule[0]:g} to {rule[1]:g}"]
            else:
                out[key] = given
    return out


@dataclass
class Target:
    """A target as given, checked: the agent its turns run on and its parameters."""

    kind: str  # "agent" | "model"
    label: str
    agent: Any  # agents.models.Agent
    params: dict[str, Any]
    backend: Any = None  # console.models.Backend, for a model target
    model: str = ""


def clean_targets(actor: Actor, user: Any, value: Any, *, path: str = "targets",
                  most: int = 8) -> list[Target]:
    """Targets from `[{agent_id} | {backend_id, model}, with params?, label?]`. A model
    target gets its quick agent (made when there is none: audited). Raises Invalid,
    every error by path (`targets[1].model`)."""
    from agents.actions import quick_agent
    from agents.models import Agent

    if not isinstance(value, list) or not value:
        raise Invalid({path: [f"1–{most} targets: {{agent_id}} or {{backend_id, model}}"]})
    if len(value) > most:
        raise Invalid({path: [f"at most {most} targets"]})
    errors: dict[str, list[str]] = {}
    out: list[Target] = []
    for i, spec in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(spec, dict):
            errors[where] = ["{agent_id} or {backend_id, model}, with params"]
            continue
        for key in sorted(set(spec) - {"agent_id", "backend_id", "model", "params", "label"}):
            errors[f"{where}.{key}"] = ["unknown field"]
        params = clean_params(spec.get("params"), f"{where}.params", errors)
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or not label.strip()
                                  or len(label) > 200):
            errors[f"{where}.label"] = ["a short name (at most 200 characters)"]
            label = None
        if "agent_id" in spec:
            if "backend_id" in spec or "model" in spec:
                errors[where] = ["either agent_id, or backend_id and model"]
                continue
            pk = spec["agent_id"]
            agent = Agent.objects.for_user(user).select_related("backend").filter(
                pk=pk).first() if isinstance(pk, int) and not isinstance(pk, bool) else None
            if agent is None:
                errors[f"{where}.agent_id"] = ["no such agent of yours"]
            elif not agent.enabled:
                errors[f"{where}.agent_id"] = [f"the agent {agent.name} is disabled"]
            else:
                out.append(Target("agent", label or agent.name, agent, params))
            continue
        try:
            agent, _ = quick_agent(actor, spec.get("backend_id"), spec.get("model"))
        except Invalid as exc:
            for key, messages in exc.errors.items():
                errors[f"{where}.{key}"] = messages
            continue
        except Refused as exc:
            errors[f"{where}.backend_id"] = [str(exc)]
            continue
        out.append(Target("model", label or f"{agent.model} on {agent.backend.name}", agent,
                          params, agent.backend, agent.model))
    if errors:
        raise Invalid(errors)
    # labels tell the columns apart: the same agent twice is labelled with its parameters
    counts = Counter(t.label for t in out)
    for target in out:
        if counts[target.label] > 1 and target.params:
            target.label += " (" + ", ".join(f"{k} {v}" for k, v in target.params.items()) + ")"
    seen: Counter = Counter()
    for target in out:
        seen[target.label] += 1
        if seen[target.label] > 1:
            target.label = f"{target.label} #{seen[target.label]}"
    return out


def reply_of(session: TurnSession) -> Reply:
    state = session.state
    calls = [{"name": c.name, "arguments": c.arguments} for c in state.tool_calls]
    calls += [{"name": c["name"], "arguments": c["arguments"]} for c in state.client_calls]
    return Reply(text=state.text, tool_calls=calls, total_ms=state.total_ms,
                 ttft_ms=state.ttft_ms,
                 tokens_out=state.tokens_out if state.tokens_out or state.text else None,
                 error=state.error if not state.text and not calls else "")


async def _discard(frame: dict[str, Any]) -> None:
    """An experiment's frames: the reply is read from the turn's state at its end."""


async def ask(actor: Actor, user: Any, agent_id: int, messages: list[dict[str, Any]], *,
              params: dict[str, Any], transport: str, title: str,
              tools: list[dict[str, Any]] | None = None, seed: int | None = None,
              emit: Emit | None = None, origin: str = "experiment",
              keep_history: bool = False,
              started: Callable[[TurnSession], Any] | None = None,
              ) -> tuple[Reply, TurnSession | None]:
    """One turn of the agent on these messages (the last one the user's). A generation
    slot that is busy is waited for (up to BUSY_WAIT_S); a refusal is the reply's error,
    never an exception: one failing target never stops the others. `started` gets the
    turn as soon as it has one."""
    extra = {k: params[k] for k in ("top_p", "seed") if k in params}
    if seed is not None:
        extra.setdefault("seed", seed)
    first_extra = {}
    if params.get("tool_choice", "auto") != "auto":
        first_extra["tool_choice"] = params["tool_choice"]
        if params["tool_choice"] == "required":
            first_extra["parallel_tool_calls"] = False
    text = messages[-1]["content"] if messages else ""
    waited = 0.0
    while True:
        try:
            session = await TurnSession.gateway(
                actor, user, agent_id, messages, text, client_tools=list(tools or []),
                extra=extra, first_extra=first_extra,
                temperature=params.get("temperature"), max_tokens=params.get("max_tokens"),
                transport=transport, title=title, origin=origin, keep_history=keep_history)
            break
        except Busy as exc:
            if waited >= BUSY_WAIT_S:
                return Reply(error=str(exc)), None
            await asyncio.sleep(0.5)
            waited += 0.5
        except (Invalid, Refused) as exc:
            return Reply(error=str(exc)), None
    if started is not None:
        started(session)  # the caller knows the turn even if it is cancelled while it runs
    await session.run(emit or _discard)
    return reply_of(session), session


# -- what a target ran on ----------------------------------------------------------------

async def environment(agent: Any) -> dict[str, Any]:
    """The primary backend's engine, version and host, and what it says of the model
    (file or digest, quantization, parameters, size, context): a result is reproducible
    only with these. An engine that does not answer leaves `model_error`."""
    backend = agent.backend
    found: dict[str, Any] = {
        "backend": backend.name, "backend_id": backend.pk, "engine": backend.kind,
        "engine_version": backend.version, "host": urlsplit(backend.base_url).hostname or "",
        "model": agent.model, "agent_version": agent.version}
    adapter = adapter_for(backend)
    try:
        async with asyncio.timeout(10):
            async with adapter.session():
                listed = await adapter.list_models()
    except (BackendError, TimeoutError) as exc:
        found["model_error"] = getattr(exc, "message", "") or "the engine did not answer in 10 s"
        return found
    model = next((m for m in listed if m.id == agent.model), None)
    if model is None:
        found["model_error"] = f"{backend.name} does not list {agent.model}"
        return found
    details = model.details or {}
    found.update({k: v for k, v in {
        "quantization": model.quantization, "parameters": model.parameter_size,
        "size_bytes": model.size_bytes, "context_length": model.context_length,
        "family": model.family, "digest": details.get("digest") or "",
        "file": details.get("path") or details.get("file") or ""}.items() if v})
    return found


# -- the judge ---------------------------------------------------------------------------

JUDGE_PROMPT = """You grade one answer to a question against a rubric.
Rubric: {rubric}
Scale: a whole number from {low} (worst) to {high} (best).
Answer with one JSON object and nothing else: {{"score": <number>, "reason": "<one sentence>"}}"""
JUDGE_INPUT = """Question:
{question}

Expected answer (may be empty):
{expected}

Answer to grade:
{answer}"""


def parse_score(text: str, low: int, high: int) -> tuple[float, str]:
    """(score, reason) from a judge's reply; ValueError saying why there is none."""
    ok, value, _ = json_of(text)
    if not ok or not isinstance(value, dict):
        found = re.search(r"\{.*\}", text, flags=re.S)
        ok, value, _ = json_of(found.group(0)) if found else (False, None, "")
    if not ok or not isinstance(value, dict):
        raise ValueError("the judge did not answer with a JSON object")
    score = value.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError("the judge's answer has no numeric score")
    if not low <= score <= high:
        raise ValueError(f"the judge's score {score:g} is outside {low}–{high}")
    reason = value.get("reason")
    return float(score), reason[:500] if isinstance(reason, str) else ""


async def judge(actor: Actor, user: Any, spec: dict[str, Any], case: dict[str, Any],
                reply: Reply, *, title: str, seed: int | None = None) -> dict[str, Any]:
    """The judge check: the judging agent's prompt, its reply and the score, stored
    together. A reply without a valid score is a judge error (the check fails)."""
    low, high = spec.get("min", 1), spec.get("max", 5)
    pass_at = spec.get("pass_at", high)
    question = next((m["content"] for m in reversed(case["messages"])
                     if m["role"] == "user"), "")
    prompt = [{"role": "system", "content": JUDGE_PROMPT.format(
                  rubric=spec["rubric"], low=low, high=high)},
              {"role": "user", "content": JUDGE_INPUT.format(
                  question=question, expected=case.get("expected", ""),
                  answer=reply.text or "(no answer)")}]
    record: dict[str, Any] = {"agent": spec["agent"], "min": low, "max": high,
                              "pass_at": pass_at, "prompt": prompt, "score": None,
                              "reason": "", "reply": "", "error": "", "passed": False}
    if reply.error:
        record["error"] = "nothing to judge: the target did not answer"
        return record
    answer, _ = await ask(actor, user, spec["agent"], prompt, params={"temperature": 0},
                          transport="experiment", title=title, seed=seed)
    record["reply"] = answer.text
    if answer.error:
        record["error"] = f"the judge did not answer: {answer.error}"[:500]
        return record
    try:
        record["score"], record["reason"] = parse_score(answer.text, low, high)
    except ValueError as exc:
        record["error"] = str(exc)
        return record
    record["passed"] = record["score"] >= pass_at
    return record
