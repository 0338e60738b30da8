"""Compare: one message to 1–4 targets at once, their replies streamed side by side.

Each column is a turn of the turn service (evals.running.ask, transport "compare"), so it
has the agent's metrics, trace, audit event and a conversation of its own (origin
"compare": out of the playground's list until someone chooses it to go on with,
agents.actions.continue_comparison). `stream` yields the columns' frames as the turns
emit them, each with its `column`, then a `column_done` per column with its timings and
a `compare_done`. A client that goes away stops every column.

*Replay* starts from what was said before (evals.replay).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction
from evals import actions
from evals.running import Target, ask, clean_params, clean_targets

log = logging.getLogger("tanglaw.evals")

MOST = 4
FIELDS = {"messages", "text", "targets", "title"}
# what an agent keeps of a column's parameters (the rest apply to one turn only)
SAVED_PARAMS = ("temperature", "max_tokens")


@dataclass
class Comparison:
    messages: list[dict[str, Any]]
    targets: list[Target]
    title: str


def clean(actor: Actor, user: Any, body: Any) -> Comparison:
    """`{messages?, text?, targets, title?}`: the messages (the last one the user's; `text`,
    when given, is appended as the user's question) and 1–4 targets as experiments take
    them. Raises Invalid, every error by path."""
    if not isinstance(body, dict):
        raise Invalid({"body": ["a JSON object: {messages or text, targets}"]})
    errors: dict[str, list[str]] = {k: ["unknown field"] for k in sorted(set(body) - FIELDS)}
    messages = body.get("messages", [])
    if not isinstance(messages, list):
        errors["messages"] = ["a list of {role, content}"]
        messages = []
    text = body.get("text")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            errors["text"] = ["the question, as text"]
        else:
            messages = [*messages, {"role": "user", "content": text}]
    if not messages and "messages" not in errors and "text" not in errors:
        errors["text"] = ["the question to ask every target"]
    elif "messages" not in errors:
        cleaned, found = actions.clean_cases([{"messages": messages}])
        for path, words in found.items():
            where = path.removeprefix("cases[0].")
            # a question appended from `text` is named by that field
            if text is not None and where.startswith(f"messages[{len(messages) - 1}]"):
                where = "text"
            errors[where] = words
        if not found:
            messages = cleaned[0]["messages"]
    title = body.get("title", "")
    if not isinstance(title, str) or len(title) > 200:
        errors["title"] = ["text of at most 200 characters"]
        title = ""
    if errors:
        raise Invalid(errors)
    targets = clean_targets(actor, user, body.get("targets"), most=MOST)
    question = messages[-1]["content"].strip().replace("\n", " ")
    return Comparison(messages, targets, (title.strip() or f"Compare: {question}")[:60])


def column_of(i: int, target: Target) -> dict[str, Any]:
    agent = target.agent
    return {"column": i, "label": target.label, "agent_id": agent.pk, "agent": agent.name,
            "quick": agent.quick, "backend": agent.backend.name, "model": agent.model,
            "params": target.params}


async def stream(actor: Actor, user: Any, comparison: Comparison
                 ) -> AsyncGenerator[dict[str, Any], None]:
    """The columns' frames as they come; every column ends with `column_done`."""
    compare_id = uuid.uuid4().hex[:16]
    columns = [column_of(i, t) for i, t in enumerate(comparison.targets)]
    yield {"type": "compare_started", "compare_id": compare_id, "columns": columns,
           "messages": len(comparison.messages)}
    frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    ended: list[dict[str, Any]] = []

    async def column(i: int, target: Target) -> None:
        async def emit(frame: dict[str, Any]) -> None:
            await frames.put({**frame, "column": i})

        done: dict[str, Any] = {"type": "column_done", "column": i, "conversation_id": None,
                                "trace_id": None, "error": "", "incomplete": False,
                                "metrics": {}}
        seen: list[Any] = []
        try:
            reply, _ = await ask(
                actor, user, target.agent.pk, comparison.messages, params=target.params,
                transport="compare", origin="compare", title=comparison.title, emit=emit,
                keep_history=True, started=seen.append)
            done["error"] = reply.error
        except asyncio.CancelledError:
            done["stopped"] = True  # the client went away: the partial reply is kept
            raise
        except Exception:  # noqa: BLE001 - one column failing never stops the others
            log.exception("a comparison's column failed")
            done["error"] = "this column failed (see the console's log)"
        finally:
            if seen:
                state = seen[0].state
                done.update(conversation_id=seen[0].conversation.pk if seen[0].stored
                            else None, incomplete=state.incomplete,
                            finish_reason=state.finish_reason, metrics=state.metrics(),
                            trace_id=seen[0].trace.trace_id if seen[0].trace.enabled
                            else None, text_chars=len(state.text))
            ended.append(done)
        await frames.put(done)

    tasks = [asyncio.create_task(column(i, t)) for i, t in enumerate(comparison.targets)]
    remaining = len(tasks)
    try:
        while remaining:
            frame = await frames.get()
            if frame["type"] == "column_done":
                remaining -= 1
            yield frame
    finally:
        for task in tasks:
            task.cancel()  # the client went away: each turn stops, its partial reply kept
        await asyncio.gather(*tasks, return_exceptions=True)
        await sync_to_async(_record)(actor, comparison, columns, ended, compare_id)
    yield {"type": "compare_done", "compare_id": compare_id,
           "columns": sorted(ended, key=lambda c: c["column"])}


def _record(actor: Actor, comparison: Comparison, columns: list[dict[str, Any]],
            ended: list[dict[str, Any]], compare_id: str) -> None:
    """One audit event for the comparison (each column's turn has its own too); never
    the messages' text."""
    by_column = {c["column"]: c for c in ended}
    audit.record(AuditAction.AGENT_COMPARED, actor, target_type="evals.comparison",
                 target_id=compare_id, after={
                     "messages": len(comparison.messages),
                     "targets": [{"label": c["label"], "agent_id": c["agent_id"],
                                  "model": c["model"], "params": c["params"],
                                  "conversation_id": by_column.get(c["column"], {}).get(
                                      "conversation_id"),
                                  "error": bool(by_column.get(c["column"], {}).get("error")),
                                  "stopped": by_column.get(c["column"], {}).get(
                                      "stopped", c["column"] not in by_column)}
                                 for c in columns]})


# -- going on from a column ------------------------------------------------------------

def save_settings(actor: Actor, user: Any, body: Any) -> Any:
    """`{agent_id, params, name?}`: a column's temperature and max_tokens saved as the
    agent's next version (agents.actions.update_agent, audited there). A quick agent
    becomes an ordinary agent, named `name` (or as it is). top_p, seed and tool_choice
    are a turn's, not an agent's: they are named in the error when given alone."""
    from agents.actions import update_agent
    from agents.models import Agent

    if not isinstance(body, dict):
        raise Invalid({"body": ["a JSON object: {agent_id, params}"]})
    errors: dict[str, list[str]] = {k: ["unknown field"]
                                    for k in sorted(set(body) - {"agent_id", "params", "name"})}
    pk = body.get("agent_id")
    agent = Agent.objects.for_user(user).filter(pk=pk).first() \
        if isinstance(pk, int) and not isinstance(pk, bool) else None
    if agent is None:
        errors["agent_id"] = ["no such agent of yours"]
    params = clean_params(body.get("params"), "params", errors)
    kept = {k: v for k, v in params.items() if k in SAVED_PARAMS}
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        errors["name"] = ["a name for the agent"]
    if not errors and agent is not None and not agent.quick and not kept:
        others = sorted(set(params) - set(SAVED_PARAMS))
        errors["params"] = [f"{', '.join(others)} apply to one turn, not to an agent: give "
                            f"temperature or max_tokens" if others
                            else "give temperature or max_tokens"]
    if errors:
        raise Invalid(errors)
    assert agent is not None
    changes: dict[str, Any] = dict(kept)
    was_quick, before = agent.quick, agent.version
    if was_quick:
        changes["quick"] = False
    if name is not None:
        changes["name"] = name.strip()
    saved = update_agent(actor, agent, changes)
    if saved.version == before and not was_quick:
        raise Refused(f"{saved.name} already has these settings (version {saved.version})")
    return saved
