"""Agent changes (versioned, audited) and chat turns (run, then persisted in one transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from agents import blueprints
from agents.choices import AgentKind, MessageRole, RunOutcome
from agents.forms import AgentForm
from agents.models import (
    Agent,
    AgentFallback,
    AgentSpecialist,
    AgentVersion,
    Conversation,
    Message,
    Run,
    ToolCall,
)
from agents.runtime import (
    TurnSettings,
    TurnState,
)
from console import audit, breaker, limits
from console.actions import Invalid, Refused, form_errors
from console.audit import Actor
from console.choices import AuditAction, Outcome
from console.models import Backend

MAX_MESSAGE_CHARS = 64 * 1024
HISTORY_MESSAGES = 40


def snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name, "description": agent.description, "kind": agent.kind,
        "system_prompt": agent.system_prompt, "backend_id": agent.backend_id,
        "model": agent.model, "temperature": agent.temperature, "max_tokens": agent.max_tokens,
        "first_token_timeout_s": agent.first_token_timeout_s,
        "idle_timeout_s": agent.idle_timeout_s, "turn_timeout_s": agent.turn_timeout_s,
        "max_tool_iterations": agent.max_tool_iterations,
        "tool_ids": sorted(agent.tools.values_list("pk", flat=True)),
        "fallbacks": [{"backend_id": f.backend_id, "model": f.model}
                      for f in agent.fallbacks.all()],
        "specialists": [{"specialist_id": s.specialist_id, "keywords": list(s.keywords)}
                        for s in agent.specialist_links.all()],
        "escalation": ({"backend_id": agent.escalation_backend_id,
                        "model": agent.escalation_model}
                       if agent.escalation_backend_id else None),
        "log_content": agent.log_content, "enabled": agent.enabled,
        # only while it is one: older versions (and every saved agent) have no such key
        **({"quick": True} if agent.quick else {}),
    }


def _form_data(data: dict[str, Any]) -> dict[str, Any]:
    form_data = dict(data)
    if "backend_id" in form_data:
        form_data["backend"] = form_data.pop("backend_id")
    if "tool_ids" in form_data:
        form_data["tools"] = form_data.pop("tool_ids")
    if "escalation" in form_data:
        escalation = form_data.pop("escalation") or {}
        if not isinstance(escalation, dict):
            escalation = {"backend_id": "not-an-object"}
        form_data["escalation_backend"] = escalation.get("backend_id")
        form_data["escalation_model"] = escalation.get("model") or ""
    return form_data


def _clean_specialists(agent: Agent | None, kind: str, items: Any) -> list[tuple[Agent, list]]:
    """[{specialist_id, keywords}] for a router; specialists must be enabled assistants."""
    if not isinstance(items, list):
        raise Invalid({"specialists": ["Give a list of {specialist_id, keywords}."]})
    if kind != AgentKind.ROUTER:
        if items:
            raise Invalid({"specialists": ["Only router agents have specialists."]})
        return []
    if not items:
        raise Invalid({"specialists": ["A router needs at least one specialist to route to."]})
    ids = [i.get("specialist_id") for i in items if isinstance(i, dict)]
    found = {a.pk: a for a in Agent.objects.filter(pk__in=[i for i in ids if isinstance(i, int)])}
    errors, cleaned, seen = [], [], set()
    for n, item in enumerate(items):
        if not isinstance(item, dict) or item.get("specialist_id") not in found:
            errors.append(f"specialists[{n}]: unknown specialist_id")
            continue
        specialist = found[item["specialist_id"]]
        keywords = item.get("keywords") or []
        if agent is not None and specialist.pk == agent.pk:
            errors.append(f"specialists[{n}]: a router cannot route to itself")
        elif specialist.kind == AgentKind.ROUTER:
            errors.append(f"specialists[{n}]: {specialist.name} is a router; routers route "
                          f"to assistants only")
        elif specialist.pk in seen:
            errors.append(f"specialists[{n}]: {specialist.name} is listed twice")
        elif not isinstance(keywords, list) or not all(
                isinstance(k, str) and 0 < len(k.strip()) <= 100 for k in keywords):
            errors.append(f"specialists[{n}].keywords: a list of words or phrases "
                          f"(1–100 characters each)")
        else:
            seen.add(specialist.pk)
            cleaned.append((specialist, [k.strip() for k in keywords][:50]))
    if errors:
        raise Invalid({"specialists": errors})
    return cleaned


def _specialists_input(data: dict[str, Any]) -> Any:
    """`specialists` as given, or built from `specialist_ids` (keywords kept where known)."""
    if data.get("specialists") is not None:
        return data["specialists"]
    if data.get("specialist_ids") is not None:
        ids = data["specialist_ids"]
        if not isinstance(ids, list):
            return ids
        return [{"specialist_id": i, "keywords": []} for i in ids]
    return None


def _clean_fallbacks(fallbacks: Any) -> list[tuple[Backend, str]]:
    errors, cleaned = [], []
    if not isinstance(fallbacks, list):
        raise Invalid({"fallbacks": ["Give a list of {backend_id, model}."]})
    backends = {b.pk: b for b in Backend.objects.filter(
        pk__in=[f.get("backend_id") for f in fallbacks if isinstance(f, dict)])}
    for i, item in enumerate(fallbacks):
        if not isinstance(item, dict) or item.get("backend_id") not in backends:
            errors.append(f"fallbacks[{i}]: unknown backend_id")
        elif not str(item.get("model") or "").strip():
            errors.append(f"fallbacks[{i}]: enter a model")
        else:
            cleaned.append((backends[item["backend_id"]], str(item["model"]).strip()))
    if errors:
        raise Invalid({"fallbacks": errors})
    return cleaned


def _save(actor: Actor, form: AgentForm, fallbacks: list | None, action: str,
          before: dict | None, specialists: Any = None, quick: bool | None = None) -> Agent:
    cleaned = _clean_fallbacks(fallbacks) if fallbacks is not None else None
    kind = form.cleaned_data.get("kind") or AgentKind.ASSISTANT
    instance = form.instance if form.instance.pk else None
    if specialists is None and before is not None:
        specialists = before.get("specialists", []) if kind == AgentKind.ROUTER else []
    if instance is not None and kind == AgentKind.ROUTER and instance.routers.exists():
        raise Invalid({"kind": [f"{instance.name} is a specialist of a router, so it cannot "
                                f"be a router itself."]})
    links = _clean_specialists(instance, kind, specialists if specialists is not None else [])
    with transaction.atomic():
        agent = form.save(commit=False)
        if quick is not None:
            agent.quick = quick
        if before is not None:
            agent.version += 1
        agent.save()
        form.save_m2m()
        if cleaned is not None:
            agent.fallbacks.all().delete()
            AgentFallback.objects.bulk_create(
                AgentFallback(agent=agent, position=i, backend=b, model=m)
                for i, (b, m) in enumerate(cleaned))
        agent.specialist_links.all().delete()
        AgentSpecialist.objects.bulk_create(
            AgentSpecialist(router=agent, specialist=sp, position=i, keywords=kw)
            for i, (sp, kw) in enumerate(links))
        after = snapshot(agent)
        unchanged = before is not None and after == before
        if unchanged:
            transaction.set_rollback(True)  # no new version for a save that changed nothing
        else:
            AgentVersion.objects.create(agent=agent, version=agent.version, snapshot=after,
                                        created_by=actor.username)
            audit.record(action, actor, target=agent, before=before, after=after)
    return Agent.objects.get(pk=agent.pk) if unchanged else agent


def create_agent(actor: Actor, data: dict[str, Any]) -> Agent:
    form = AgentForm(data=_form_data(data))
    if not form.is_valid():
        raise Invalid(_errors(form), form)
    return _save(actor, form, data.get("fallbacks", []), AuditAction.AGENT_CREATED, None,
                 _specialists_input(data) or [])


QUICK_NAME_CHARS = 100  # Agent.name


def quick_agent(actor: Actor, backend_id: Any, model: Any) -> tuple[Agent, bool]:
    """The agent behind Chat on a model: the quick agent already on that backend and
    model, or a new one with default settings (no prompt, no tools), audited like any
    agent. It is listed apart until someone saves it as an agent (update_agent with
    quick=False). Returns (agent, created)."""
    errors: dict[str, list[str]] = {}
    backend = None
    if not isinstance(backend_id, int) or isinstance(backend_id, bool):
        errors["backend_id"] = ["Give the id of a backend."]
    else:
        backend = Backend.objects.filter(pk=backend_id).first()
        if backend is None:
            errors["backend_id"] = ["No such backend."]
    name = model.strip() if isinstance(model, str) else ""
    if not name:
        errors["model"] = ["Enter the model name the backend serves."]
    elif len(name) > 200:
        errors["model"] = ["At most 200 characters."]
    if errors:
        raise Invalid(errors)
    assert backend is not None
    if not backend.enabled:
        raise Refused(f"the backend {backend.name} is disabled")
    existing = Agent.objects.filter(quick=True, backend=backend, model=name,
                                    kind=AgentKind.ASSISTANT).order_by("pk").first()
    if existing is not None:
        if not existing.enabled:
            raise Refused(f"the quick chat {existing.name} is disabled: enable it on its "
                          f"page, or save it as an agent")
        return existing, False
    label = f"{name} on {backend.name}"[:QUICK_NAME_CHARS].rstrip()
    taken = set(Agent.objects.filter(name__startswith=label[:QUICK_NAME_CHARS - 5])
                .values_list("name", flat=True))
    n = 2
    candidate = label
    while candidate in taken:
        suffix = f" ({n})"
        candidate = label[:QUICK_NAME_CHARS - len(suffix)].rstrip() + suffix
        n += 1
    # the settings a new agent's form starts with (AgentForm's and the model's defaults)
    defaults = {key: field.initial for key, field in AgentForm.base_fields.items()
                if field.initial is not None}
    form = AgentForm(data=_form_data({
        **defaults, "name": candidate,
        "description": f"Chat with {name} on {backend.name}, started from its model.",
        "kind": AgentKind.ASSISTANT, "backend_id": backend.pk, "model": name,
        "tool_ids": []}))
    if not form.is_valid():
        raise Invalid(_errors(form), form)
    try:
        return _save(actor, form, [], AuditAction.AGENT_CREATED, None, [], quick=True), True
    except IntegrityError:  # two clicks at once: the other one made it
        again = Agent.objects.filter(quick=True, backend=backend, model=name).first()
        if again is None:
            raise
        return again, False


def update_agent(actor: Actor, agent: Agent, changes: dict[str, Any]) -> Agent:
    """Change an agent (a new version). `quick: False` saves a quick agent as an agent."""
    before = snapshot(agent)
    quick = changes.get("quick")
    if quick is not None and not isinstance(quick, bool):
        raise Invalid({"quick": ["true or false."]})
    if quick and not agent.quick:
        raise Invalid({"quick": ["Only Chat on a model starts a quick agent; an agent "
                                 "cannot become one."]})
    given = {k: v for k, v in changes.items()
             if (v is not None or k == "escalation") and k != "quick"}
    data = {**before, **given}
    data.pop("quick", None)
    form = AgentForm(data=_form_data(data), instance=agent)
    if not form.is_valid():
        raise Invalid(_errors(form), form)
    with transaction.atomic():
        saved = _save(actor, form, changes.get("fallbacks"), AuditAction.AGENT_UPDATED,
                      before, _specialists_input(changes),
                      quick=False if quick is False else None)
        if before["enabled"] and not saved.enabled:
            _resolve_alerts(actor, saved, "is disabled")
    return saved


def _resolve_alerts(actor: Actor, agent: Agent, why: str) -> None:
    """Its alerts end with it: a deleted or disabled agent takes no more turns."""
    from monitoring.alerts import resolve_target  # monitoring builds on agents, not back

    resolve_target(actor, f"agent:{agent.pk}", f"agent {agent.name} {why}")


def diff(agent: Agent, version: AgentVersion) -> list[dict[str, Any]]:
    """Fields where a saved version differs from the agent now."""
    current = snapshot(agent)
    return [{"field": key, "version_value": version.snapshot.get(key),
             "current_value": current.get(key)}
            for key in current if version.snapshot.get(key) != current.get(key)]


def restore_version(actor: Actor, agent: Agent, version: AgentVersion) -> Agent:
    """Make a saved version current again (as a new version, so nothing is lost)."""
    if version.agent_id != agent.pk:
        raise Refused("that version belongs to another agent")
    if not diff(agent, version):
        raise Refused(f"version {version.version} is the same as the agent now")
    changes = {k: v for k, v in version.snapshot.items() if k not in ("kind", "quick")}
    with transaction.atomic():
        restored = update_agent(actor, agent, changes)
        audit.record(AuditAction.AGENT_RESTORED, actor, target=restored,
                     after={"restored_version": version.version,
                            "new_version": restored.version})
    return restored


def delete_agent(actor: Actor, agent: Agent) -> None:
    routers = list(agent.routers.values_list("name", flat=True))
    if routers:
        raise Refused(f"{agent.name} is a specialist of {', '.join(routers)}; remove it from "
                      f"there first")
    with transaction.atomic():
        before, pk = snapshot(agent), agent.pk
        _resolve_alerts(actor, agent, "was deleted")
        agent.delete()
        audit.record(AuditAction.AGENT_DELETED, actor, target_type="agents.agent",
                     target_id=pk, before=before)


def _errors(form) -> dict[str, list[str]]:
    return form_errors(form, {"backend": "backend_id", "tools": "tool_ids",
                              "escalation_backend": "escalation",
                              "escalation_model": "escalation"})


# -- conversations -------------------------------------------------------------------
TITLE_CHARS = 200  # Conversation.title


def may_change(user, conversation: Conversation) -> bool:
    """Only its owner (or an admin) may rename or delete a conversation."""
    return conversation.owner_id == user.pk or user.effective_role == "admin"


def _own(user, conversation: Conversation) -> None:
    if not may_change(user, conversation):
        raise Refused("only its owner (or an admin) may change this conversation")


def rename_conversation(actor: Actor, user, conversation: Conversation, title: Any
                        ) -> Conversation:
    """A new title (1–200 characters). The audit event never holds the title: it is
    often the first words of someone's message."""
    _own(user, conversation)
    if not isinstance(title, str) or not title.strip():
        raise Invalid({"title": ["Enter a title."]})
    if len(title.strip()) > TITLE_CHARS:
        raise Invalid({"title": [f"At most {TITLE_CHARS} characters."]})
    with transaction.atomic():
        conversation.title = title.strip()
        conversation.save(update_fields=["title", "updated_at"])
        audit.record(AuditAction.CONVERSATION_RENAMED, actor, target=conversation,
                     after={"title_chars": len(conversation.title)})
    return conversation


def continue_comparison(actor: Actor, user, conversation_id: Any) -> Conversation:
    """A comparison's column, chosen to go on with: its conversation (the messages it was
    given, the question and that target's answer) joins the playground's list, with that
    target's agent. The other columns stay out of the list."""
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise Invalid({"conversation_id": ["the id of a comparison's conversation"]})
    conversation = Conversation.objects.for_user(user).filter(pk=conversation_id).first()
    if conversation is None:
        raise Invalid({"conversation_id": ["no such conversation of yours"]})
    _own(user, conversation)
    if conversation.origin != Conversation.Origin.COMPARE:
        raise Refused("that conversation is not a comparison's (it is in the playground "
                      "already)")
    with transaction.atomic():
        conversation.origin = Conversation.Origin.CHAT
        conversation.save(update_fields=["origin", "updated_at"])
        audit.record(AuditAction.CONVERSATION_CONTINUED, actor, target=conversation,
                     after={"agent": conversation.agent.name if conversation.agent else None,
                            "from": "comparison"})
    return conversation


def prune_comparisons(now=None) -> int:
    """A comparison's columns no one chose to go on with, older than
    TANGLAW_COMPARE_RETENTION_H, are deleted with their messages (the monitor's prune);
    their runs stay, as for any deleted conversation, and so do their traces and audit
    events. Returns how many."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    cutoff = (now or timezone.now()) - timedelta(hours=settings.TANGLAW_COMPARE_RETENTION_H)
    old = Conversation.objects.filter(origin=Conversation.Origin.COMPARE,
                                      updated_at__lt=cutoff)
    return old.delete()[1].get("agents.Conversation", 0)


def delete_conversation(actor: Actor, user, conversation: Conversation) -> None:
    """Gone with its messages; its runs stay, without it, as traffic history (metrics,
    Prometheus counters, the report), and so do the turns' audit events."""
    _own(user, conversation)
    with transaction.atomic():
        pk, owner = conversation.pk, conversation.owner.username
        counts = {"messages": conversation.messages.count(), "runs": conversation.runs.count()}
        conversation.delete()
        audit.record(AuditAction.CONVERSATION_DELETED, actor,
                     target_type="agents.conversation", target_id=pk,
                     before={"owner": owner, **counts})


def search_conversations(queryset, query: str):
    """Conversations whose title or any message has `query` (case-insensitive)."""
    from django.db.models import Q

    words = query.strip()[:200]
    if not words:
        return queryset
    # SQLite's LIKE folds only ASCII letters: the usual spellings of other scripts' words
    # (ōsaka, Ōsaka, ŌSAKA) are searched for as they are
    title, content = Q(), Q()
    for spelling in {words, words.lower(), words.upper(), words.capitalize(), words.title()}:
        title |= Q(title__icontains=spelling)
        content |= Q(content__icontains=spelling)
    found = Message.objects.filter(content).values("conversation_id")
    return queryset.filter(title | Q(pk__in=found))


# -- chat ------------------------------------------------------------------------

def history(conversation: Conversation, before: int | None = None) -> list[dict[str, Any]]:
    """The conversation as OpenAI messages: the recent part, starting at a user message,
    without the answers a regenerate replaced. `before`: only what came before that
    message (a regenerate asks its question again after what preceded it)."""
    messages = conversation.messages.filter(superseded=False)
    if before is not None:
        messages = messages.filter(pk__lt=before)
    recent = list(messages.order_by("-id")[:HISTORY_MESSAGES])[::-1]
    while recent and recent[0].role != MessageRole.USER:
        recent.pop(0)
    out: list[dict[str, Any]] = []
    for m in recent:
        if m.role == MessageRole.TOOL:
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.tool_calls:
            out.append({"role": "assistant", "content": m.content or None,
                        "tool_calls": m.tool_calls})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _settings(agent: Agent) -> TurnSettings:
    """The agent's settings for one turn, from this process's blueprint of it."""
    found = blueprints.blueprint(agent.pk)
    if found is None:
        raise Invalid({"agent_id": ["No such agent."]})
    return blueprints.settings_for(found)


def start_turn(actor: Actor, user, agent: Agent, text: str,
               conversation_id: int | None) -> tuple[Conversation, TurnSettings, list]:
    """Check the request and load what the turn needs. Raises Invalid or Refused."""
    if not agent.enabled:
        raise Refused(f"the agent {agent.name} is disabled")
    if not text.strip():
        raise Invalid({"message": ["Type a message."]})
    if len(text) > MAX_MESSAGE_CHARS:
        raise Invalid({"message": [f"Messages are limited to {MAX_MESSAGE_CHARS} characters."]})
    if conversation_id is None:
        conversation = Conversation(owner=user, agent=agent, title=text.strip()[:60])
        past: list = []
    else:
        found = Conversation.objects.filter(pk=conversation_id, owner=user).first()
        if found is None:
            raise Invalid({"conversation_id": ["No such conversation of yours."]})
        conversation = found
        if conversation.agent_id != agent.pk:
            raise Invalid({"conversation_id": ["That conversation belongs to another agent."]})
        past = history(conversation)
    return conversation, _settings(agent), past


def _acquire(user, settings: TurnSettings) -> list[str]:
    primary = settings.candidates[0].backend_id if settings.candidates else None
    return limits.acquire(user.pk, primary)


@dataclass
class Regeneration:
    """A regenerate, checked and loaded: the last question of a conversation, asked again
    of its agent with the history before it."""

    agent: Agent
    conversation: Conversation
    question: Message
    settings: TurnSettings
    past: list[dict[str, Any]]
    replaced_runs: list[int] = field(default_factory=list)


def start_regenerate(actor: Actor, user, conversation_id: int) -> Regeneration:
    """Check a regenerate and load what it needs. Raises Invalid or Refused."""
    conversation = Conversation.objects.select_related("agent__backend").filter(
        pk=conversation_id, owner=user).first()
    if conversation is None:
        raise Invalid({"conversation_id": ["No such conversation of yours."]})
    agent = conversation.agent
    if agent is None:
        raise Refused("the agent of this conversation was deleted; start a new chat")
    if not agent.enabled:
        raise Refused(f"the agent {agent.name} is disabled")
    question = conversation.messages.filter(role=MessageRole.USER).order_by("-id").first()
    if question is None:
        raise Refused("nothing to regenerate: the conversation has no question yet")
    return Regeneration(agent, conversation, question, _settings(agent),
                        history(conversation, before=question.pk))


def replace_answer(regeneration: Regeneration) -> list[int]:
    """Mark the current answer to the question superseded, every message of it (tool calls
    too): it stays, as a previous version, but is never sent to the model again. Done as
    the regenerate starts, like a question is saved first: a crash mid-reply leaves the
    new partial answer as the current one. Returns the runs the old answer came from."""
    answer = Message.objects.filter(conversation=regeneration.conversation,
                                    pk__gt=regeneration.question.pk, superseded=False)
    with transaction.atomic():
        runs = sorted({pk for pk in answer.values_list("run_id", flat=True) if pk is not None})
        answer.update(superseded=True)
    regeneration.replaced_runs = runs
    return runs


def save_user_message(conversation: Conversation, text: str) -> Message:
    """Streamed turns save the question first, so a crash mid-reply never loses it."""
    with transaction.atomic():
        if conversation.pk is None:
            conversation.save()
        return Message.objects.create(conversation=conversation, role=MessageRole.USER,
                                      content=text)


def checkpoint(conversation: Conversation, draft_id: int | None, partial: str) -> int:
    """Keep the partial reply of a long turn in one draft row (one write per checkpoint)."""
    if draft_id is None:
        return Message.objects.create(conversation=conversation, role=MessageRole.ASSISTANT,
                                      content=partial, incomplete=True).pk
    Message.objects.filter(pk=draft_id).update(content=partial)
    return draft_id


def persist_turn(actor: Actor, agent: Agent, conversation: Conversation, text: str,
                 state: TurnState, started_at, *, cancelled: bool = False,
                 user_saved: bool = False, draft_id: int | None = None,
                 replaced_runs: list[int] | None = None) -> Run:
    """One short transaction: messages, the run with its timings, tool calls, audit events.

    `user_saved`: the question was saved at the start; `draft_id`: a checkpoint row,
    replaced by the final messages; `replaced_runs`: a regenerate, and the runs whose
    answer it replaced (recorded in the turn's audit event).
    """
    outcome = (RunOutcome.CANCELLED if cancelled else RunOutcome.ERROR if state.error and
               not state.text else RunOutcome.INCOMPLETE if state.incomplete
               else RunOutcome.SUCCESS)
    attempts = list(state.attempts)  # every backend tried, and whether it answered
    with transaction.atomic():
        if conversation.pk is None:
            conversation.save()
        if not user_saved:
            Message.objects.create(conversation=conversation, role=MessageRole.USER,
                                   content=text)
        if draft_id is not None:
            Message.objects.filter(pk=draft_id).delete()
        run = Run.objects.create(
            conversation=conversation, agent=agent, backend_id=state.backend_id,
            model=state.model or agent.model, started_at=started_at, ttft_ms=state.ttft_ms,
            total_ms=state.total_ms, tokens_in=state.tokens_in, tokens_out=state.tokens_out,
            tokens_per_s=state.tokens_per_s, usage_reported=state.usage_reported,
            finish_reason=state.finish_reason, outcome=outcome, error=state.error,
            route=state.route or None, trace_id=state.trace.trace_id if state.trace.enabled
            else "")
        messages = state.messages or [{"role": "assistant", "content": state.text}]
        if state.incomplete and messages[-1].get("role") != "assistant":
            messages = [*messages, {"role": "assistant", "content": state.text}]
        Message.objects.bulk_create([
            Message(conversation=conversation, run=run, role=m["role"],
                    content=m.get("content") or "", tool_calls=m.get("tool_calls"),
                    tool_call_id=m.get("tool_call_id", ""),
                    incomplete=state.incomplete and i == len(messages) - 1)
            for i, m in enumerate(messages)])
        ToolCall.objects.bulk_create([
            ToolCall(run=run, call_id=c.call_id, name=c.name, arguments=c.arguments, ok=c.ok,
                     result_summary=c.result_summary, ms=c.ms, approved_by=c.approved_by)
            for c in state.tool_calls])
        after = {"agent": agent.name, "backend_id": state.backend_id, "model": run.model,
                 "chars_in": len(text), "chars_out": len(state.text), **state.metrics(),
                 "outcome": outcome, "finish_reason": state.finish_reason,
                 "tool_calls": len(state.tool_calls)}
        if run.trace_id:
            after["trace_id"] = run.trace_id
        if replaced_runs is not None:
            after.update({"regenerated": True, "replaced_run_ids": replaced_runs})
        if agent.log_content:
            after.update({"message": text, "reply": state.text})
        # a reply the user stopped (or left) is theirs to stop, not a failure: the
        # outcome "cancelled" in `after` says what happened
        ok = outcome == RunOutcome.SUCCESS or (outcome == RunOutcome.CANCELLED
                                               and not state.error)
        audit.record(AuditAction.AGENT_TURN, actor, target=conversation, after=after,
                     outcome=Outcome.SUCCESS if ok else Outcome.FAILURE, detail=state.error)
        for decision in state.route:
            audit.record(AuditAction.AGENT_ROUTED, actor, target=conversation, after=decision)
        for backend_id, ok in attempts:
            if backend_id is not None:
                breaker.record(backend_id, ok)
        for c in state.tool_calls:
            audit.record(AuditAction.TOOL_CALLED, actor, target=conversation,
                         after={"name": c.name, "arguments": _arguments_for_audit(
                                    agent, c.arguments), "ok": c.ok,
                                "ms": round(c.ms, 1), "approved_by": c.approved_by},
                         outcome=Outcome.SUCCESS if c.ok else Outcome.FAILURE,
                         detail="" if c.ok else c.result_summary)
    return run


def _arguments_for_audit(agent: Agent, arguments: Any) -> Any:
    """Tool arguments are what the model took from the conversation: logged only where
    the agent logs content; otherwise which arguments there were, and their size."""
    if agent.log_content:
        return arguments
    if isinstance(arguments, dict):
        return {"names": sorted(str(k) for k in arguments),
                "chars": len(json.dumps(arguments, default=str))}
    return {"chars": len(str(arguments))}


# -- a turn's start, in one database hop (agents.turns.TurnSession) ------------------

@dataclass
class Prepared:
    """A turn checked and loaded, its generation slots taken (in `settings.slots`), its
    write (`store_start`) not yet made."""

    agent: Agent
    conversation: Conversation  # not saved yet when the turn starts a conversation
    text: str
    settings: TurnSettings
    past: list[dict[str, Any]]
    regeneration: Regeneration | None = None
    append_text: bool = True  # False: `past` already ends with what to answer (gateway)
    # a comparison's: the caller's earlier messages, kept in the conversation before the
    # question, so that it can be continued in the playground (continue_comparison)
    history: list[dict[str, Any]] | None = None


def prepare_message(actor: Actor, user, agent_id: int, text: str,
                    conversation_id: int | None) -> Prepared:
    """A question for an agent: the agent (404-style Invalid when unknown), the checks,
    settings, history and slots. Raises Invalid or Refused. The agent and its settings
    come from this process's blueprint (agents.blueprints): a new conversation needs no
    query at all."""
    active = user.is_authenticated and user.is_active
    found = blueprints.blueprint(agent_id) if active else None
    if found is None:
        raise Invalid({"agent_id": ["No such agent."]})
    agent = found.agent
    conversation, settings, past = start_turn(actor, user, agent, text, conversation_id)
    settings.slots = _acquire(user, settings)
    return Prepared(agent, conversation, text, settings, past)


def prepare_gateway(actor: Actor, user, agent_id: int, messages: list[dict[str, Any]],
                    text: str, *, client_tools: list[dict[str, Any]],
                    extra: dict[str, Any], first_extra: dict[str, Any],
                    temperature: float | None = None,
                    max_tokens: int | None = None, title: str = "",
                    origin: str = Conversation.Origin.GATEWAY,
                    keep_history: bool = False) -> Prepared:
    """A gateway call of an agent (gateway.agent_runs), and a comparison's or an
    experiment's (evals.running): the caller's messages are the history (its system
    message comes after the agent's prompt), `text` its last question, kept as a new
    conversation of the caller (`title`, `origin`). The caller's tools are returned to
    it when the model calls them; they may not share a name with the agent's own.
    `keep_history`: the earlier user and assistant messages are kept in the
    conversation too (a comparison's, which may be continued). Raises Invalid or
    Refused."""
    found = blueprints.blueprint(agent_id) if user.is_authenticated and user.is_active \
        else None
    if found is None:
        raise Invalid({"model": ["No such agent."]})
    agent = found.agent
    if not agent.enabled:
        raise Refused(f"the agent {agent.name} is disabled")
    settings = blueprints.settings_for(found)
    clash = sorted({t["function"]["name"] for t in client_tools} & set(settings.tools))
    if clash:
        raise Invalid({"tools": [f"{', '.join(clash)}: the agent has a tool of that name; "
                                 f"rename yours"]})
    settings.client_tools, settings.extra, settings.first_extra = (
        client_tools, extra, first_extra)
    if temperature is not None:
        settings.temperature = temperature
    if max_tokens is not None:
        settings.max_tokens = min(max_tokens, settings.max_tokens)
    conversation = Conversation(owner=user, agent=agent, origin=origin,
                                title=(title or "API: " + (text.strip() or agent.name))[:60])
    settings.slots = _acquire(user, settings)
    history = [m for m in messages[:-1] if m.get("role") in (MessageRole.USER,
               MessageRole.ASSISTANT) and isinstance(m.get("content"), str)
               and m["content"].strip()] if keep_history else None
    return Prepared(agent, conversation, text, settings, messages, append_text=False,
                    history=history)


def prepare_regenerate(actor: Actor, user, conversation_id: int) -> Prepared:
    """The last question of a conversation asked again; slots taken."""
    regeneration = start_regenerate(actor, user, conversation_id)
    regeneration.settings.slots = _acquire(user, regeneration.settings)
    return Prepared(regeneration.agent, regeneration.conversation,
                    regeneration.question.content, regeneration.settings, regeneration.past,
                    regeneration)


def store_start(prepared: Prepared) -> None:
    """The turn's first write: the question (and a new conversation), or, for a
    regenerate, the old answer marked superseded. Made while the upstream request
    starts; a crash mid-reply never loses the question."""
    if prepared.regeneration is not None:
        replace_answer(prepared.regeneration)
    elif prepared.history:
        with transaction.atomic():
            prepared.conversation.save()
            Message.objects.bulk_create(
                Message(conversation=prepared.conversation, role=m["role"],
                        content=m["content"]) for m in prepared.history)
            save_user_message(prepared.conversation, prepared.text)
    else:
        save_user_message(prepared.conversation, prepared.text)
