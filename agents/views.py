"""Agent pages and the chat playground."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from agents import actions, approvals, config, tool_actions
from agents import knowledge as knowledge_base
from agents.choices import AgentKind, MessageRole
from agents.forms import AgentForm
from agents.models import Agent, Approval, Conversation, KnowledgeDocument, Message, Tool
from console.actions import Invalid, Refused
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.models import Backend
from console.permissions import check, get_object_for_user, has_perm, require
from console.safeinput import digits, small_int
from console.templatetags.tanglaw import human_bytes
from traces.models import ExternalAgent


@require("agents.view")
def agent_list(request):
    everything = list(Agent.objects.for_user(request.user).select_related("backend")
                      .prefetch_related("tools"))
    return render(request, "agents/agent_list.html", {
        "agents": [a for a in everything if not a.quick],
        "quick_agents": [a for a in everything if a.quick],
        "has_backends": Backend.objects.exists(),
        # agents Tanglaw does not run that report spans over OTLP
        "external_agents": ExternalAgent.objects.order_by("-last_seen"),
        "otlp_endpoint": request.build_absolute_uri("/v1/traces")})


FALLBACK_ROWS = 3
SPECIALIST_ROWS = 5


def _form_context(form, agent, fallbacks=None, specialists=None):
    selected = {str(v) for v in (form["tools"].value() or [])}
    if fallbacks is None:
        fallbacks = ([{"backend_id": f.backend_id, "model": f.model}
                      for f in agent.fallbacks.all()] if agent else [])
    rows = (fallbacks + [{"backend_id": None, "model": ""}] * FALLBACK_ROWS)[:FALLBACK_ROWS]
    if specialists is None:
        specialists = ([{"specialist_id": s.specialist_id, "keywords": s.keywords}
                        for s in agent.specialist_links.all()] if agent else [])
    specialist_rows = [{"specialist_id": s["specialist_id"],
                        "keywords": ", ".join(s["keywords"])} for s in specialists]
    specialist_rows = (specialist_rows + [{"specialist_id": None, "keywords": ""}]
                       * SPECIALIST_ROWS)[:max(SPECIALIST_ROWS, len(specialist_rows))]
    return {"form": form, "agent": agent, "tools": Tool.objects.filter(enabled=True),
            "selected_tools": selected, "fallback_rows": rows,
            "backends": Backend.objects.all(), "specialist_rows": specialist_rows,
            "assistants": Agent.objects.filter(kind=AgentKind.ASSISTANT).exclude(
                pk=getattr(agent, "pk", None) or -1)}


def _specialists_from_post(request) -> list[dict]:
    rows = []
    for i in range(SPECIALIST_ROWS):
        picked = request.POST.get(f"specialist_{i}", "")
        words = request.POST.get(f"specialist_keywords_{i}", "")
        if picked:
            rows.append({"specialist_id": int(picked) if digits(picked) else None,
                         "keywords": [w.strip() for w in words.split(",") if w.strip()]})
    return rows


def _fallbacks_from_post(request) -> list[dict]:
    rows = []
    for i in range(FALLBACK_ROWS):
        backend = request.POST.get(f"fallback_backend_{i}", "")
        model = request.POST.get(f"fallback_model_{i}", "").strip()
        if backend or model:
            rows.append({"backend_id": int(backend) if digits(backend) else None,
                         "model": model})
    return rows


def _invalid_form(exc: Invalid, request, instance=None) -> AgentForm:
    """The bound form to show again, carrying errors found outside it (fallbacks)."""
    if exc.form is not None:
        return exc.form
    form = AgentForm(data=request.POST, instance=instance)
    form.is_valid()
    for field, msgs in exc.errors.items():
        form.add_error(None, f"{field}: {' '.join(msgs)}")
    return form


@require("agents.change")
async def model_options(request):
    """<option>s for the model field: what the chosen backend serves right now, each
    labelled with its size, quantization, context and whether it is loaded."""
    backend = await Backend.objects.filter(pk=_int(request.GET.get("backend"))).afirst()
    models: list[Any] = []
    error = ""
    if backend is not None:
        try:
            models = await _list_models(backend)
        except BackendError as exc:
            error = exc.message
    # no request context: no context processor reads the session on the loop
    return HttpResponse(render_to_string("agents/partials/model_options.html", {
        "options": [(m.id, _facts_line(m)) for m in models], "error": error}))


def _int(value: Any) -> int:
    return small_int(value) or 0


def _facts_line(model: Any) -> str:
    """'397.0 MB · Q4_K_M · 32,768 context · loaded': what the engine said of a model."""
    parts = []
    if model.size_bytes:
        parts.append(human_bytes(model.size_bytes))
    if model.parameter_size:
        parts.append(model.parameter_size)
    if model.quantization:
        parts.append(model.quantization)
    if model.context_length:
        parts.append(f"{model.context_length:,} context")
    if model.loaded is not None:
        parts.append("loaded" if model.loaded else "not loaded")
    return " · ".join(parts)


@require("agents.change")
async def model_facts(request):
    """Beside the model field: what the backend says of the chosen model (size,
    quantization, context, loaded, tool calling) and a warning when the agent's tools
    go to a model that cannot call them."""
    backend = await Backend.objects.filter(pk=_int(request.GET.get("backend"))).afirst()
    name = (request.GET.get("model") or "").strip()
    tools = [t for t in request.GET.getlist("tools") if digits(t)]
    context: dict[str, Any] = {"name": name, "tools": len(tools), "backend": backend}
    if backend is not None and name:
        adapter = adapter_for(backend)
        try:
            async with adapter.session():
                listed = await adapter.list_models()
                found = next((m for m in listed if m.id == name), None)
                support = await adapter.tool_support([name]) if found else {}
        except BackendError as exc:
            context["error"] = exc.message
        else:
            context.update(found=found, line=_facts_line(found) if found else "",
                           calls_tools=support.get(name), listed=len(listed))
    return HttpResponse(render_to_string("agents/partials/model_facts.html", context))


async def _list_models(backend):
    adapter = adapter_for(backend)
    async with adapter.session():
        return await adapter.list_models()


@require("agents.change")
@require_http_methods(["GET", "POST"])
def agent_create(request):
    form = AgentForm(initial={"backend": request.GET.get("backend")})
    if request.method == "POST":
        try:
            agent = actions.create_agent(Actor.from_request(request), _post_data(request))
        except Invalid as exc:
            form = _invalid_form(exc, request)
            return render(request, "agents/agent_form.html",
                          _form_context(form, None, _fallbacks_from_post(request),
                                        _specialists_from_post(request)))
        messages.success(request, f"Created {agent.name}. Try it in the playground.")
        return redirect("agent_detail", pk=agent.pk)
    return render(request, "agents/agent_form.html", _form_context(form, None))


@require("agents.change")
@require_http_methods(["GET", "POST"])
def agent_edit(request, pk):
    agent = get_object_for_user(request, Agent, pk, write=True)
    form = AgentForm(instance=agent)
    if request.method == "POST":
        data = _post_data(request)
        if agent.quick:
            data["quick"] = False  # the form is how a quick chat is saved as an agent
        try:
            actions.update_agent(Actor.from_request(request), agent, data)
        except Invalid as exc:
            form = _invalid_form(exc, request, agent)
            return render(request, "agents/agent_form.html",
                          _form_context(form, agent, _fallbacks_from_post(request),
                                        _specialists_from_post(request)))
        messages.success(request, f"Saved {agent.name}.")
        return redirect("agent_detail", pk=agent.pk)
    return render(request, "agents/agent_form.html", _form_context(form, agent))


def _post_data(request) -> dict:
    data = request.POST.dict()
    data["tool_ids"] = request.POST.getlist("tools")
    data.pop("tools", None)
    data["backend_id"] = data.pop("backend", None)
    for box in ("enabled", "log_content"):
        data[box] = box in request.POST
    data["fallbacks"] = _fallbacks_from_post(request)
    data["specialists"] = _specialists_from_post(request)
    for key in [k for k in data if k.startswith(("fallback_", "specialist_"))]:
        data.pop(key)
    return data


@require("agents.view")
def agent_detail(request, pk):
    agent = get_object_for_user(request, Agent, pk)
    return render(request, "agents/agent_detail.html", {
        "agent": agent, "versions": agent.versions.all()[:20],
        "tools": agent.tools.all(), "fallbacks": agent.fallbacks.select_related("backend"),
        "specialists": agent.specialist_links.select_related("specialist")})


@require("agents.view")
def agents_export(request):
    response = HttpResponse(config.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="tanglaw-agents.yaml"'
    return response


@require("agents.change")
@require_http_methods(["GET", "POST"])
def agents_import(request):
    """Paste or upload YAML; Check shows the plan, Apply carries it out."""
    needed: list[str] = []  # secrets the import must be given before it can apply
    text, changes, errors, applied = "", None, {}, False
    if request.method == "POST":
        upload = request.FILES.get("file")
        text = upload.read(1024 * 1024).decode("utf-8", "replace") if upload else \
            request.POST.get("yaml", "")
        apply_now = request.POST.get("action") == "apply"
        secrets = {k.removeprefix("secret:"): v for k, v in request.POST.items()
                   if k.startswith("secret:") and v}
        try:
            changes = config.apply(Actor.from_request(request), text, dry_run=not apply_now,
                                   user=request.user, secrets=secrets)
            applied = apply_now
        except Invalid as exc:
            errors = exc.errors
            needed = getattr(exc, "needed_secrets", [])
        except Refused as exc:
            errors = {"import": [str(exc)]}
        if applied:
            messages.success(request, f"Imported: {len(changes or [])} agents and tools "
                                      f"checked, changes applied.")
            return redirect("agent_list")
    return render(request, "agents/agents_import.html",
                  {"text": text, "changes": changes, "errors": errors,
                   "needed_secrets": needed})


@require("agents.view")
@require_http_methods(["GET", "POST"])
def agent_version(request, pk, number):
    """A saved version beside the agent now, and (for operators) restore it."""
    agent = get_object_for_user(request, Agent, pk)
    version = get_object_or_404(agent.versions, version=number)
    if request.method == "POST":
        get_object_for_user(request, Agent, pk, write=True)
        try:
            actions.restore_version(Actor.from_request(request), agent, version)
            messages.success(request, f"Restored version {number} as version {agent.version}.")
        except Refused as exc:
            messages.error(request, str(exc))
        return redirect("agent_detail", pk=agent.pk)
    return render(request, "agents/agent_version.html", {
        "agent": agent, "version": version,
        "changes": readable_diff(actions.diff(agent, version))})


# the version page's words for each field of an agent's snapshot (actions.snapshot)
FIELD_LABELS = {
    "name": "Name", "description": "Description", "kind": "Kind",
    "system_prompt": "System prompt", "backend_id": "Backend", "model": "Model",
    "temperature": "Temperature", "max_tokens": "Max tokens",
    "first_token_timeout_s": "First-token deadline (s)",
    "idle_timeout_s": "Idle gap deadline (s)", "turn_timeout_s": "Whole-turn deadline (s)",
    "max_tool_iterations": "Max tool iterations", "tool_ids": "Tools",
    "fallbacks": "Fallbacks", "specialists": "Specialists", "escalation": "Escalation",
    "log_content": "Record message text in the audit log", "enabled": "Enabled",
    "quick": "Quick chat",
}


def readable_diff(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each changed field with its label and both values as a person reads them: tools,
    backends and specialists by name (a deleted one as "#id (deleted)")."""
    tool_ids: set[Any] = set()
    backend_ids: set[Any] = set()
    agent_ids: set[Any] = set()
    for c in changes:
        for value in (c["version_value"], c["current_value"]):
            if c["field"] == "tool_ids":
                tool_ids.update(value or [])
            elif c["field"] == "backend_id" and value:
                backend_ids.add(value)
            elif c["field"] in ("fallbacks", "escalation"):
                for item in (value if isinstance(value, list) else [value] if value else []):
                    backend_ids.add(item.get("backend_id"))
            elif c["field"] == "specialists":
                agent_ids.update(i.get("specialist_id") for i in value or [])
    tools = dict(Tool.objects.filter(pk__in=tool_ids).values_list("pk", "name"))
    backends = dict(Backend.objects.filter(pk__in=backend_ids).values_list("pk", "name"))
    agents = dict(Agent.objects.filter(pk__in=agent_ids).values_list("pk", "name"))

    def named(names: dict, pk: Any) -> str:
        return names.get(pk) or f"#{pk} (deleted)"

    def show(field: str, value: Any) -> str:
        if value is None or value == "" or value == []:
            return "—"
        if field == "tool_ids":
            return ", ".join(sorted(named(tools, pk) for pk in value))
        if field == "backend_id":
            return named(backends, value)
        if field == "fallbacks":
            return "\n".join(f"{n}. {named(backends, f.get('backend_id'))} / {f.get('model')}"
                             for n, f in enumerate(value, 1))
        if field == "escalation":
            return f"{named(backends, value.get('backend_id'))} / {value.get('model')}"
        if field == "specialists":
            return "\n".join(
                named(agents, s.get("specialist_id"))
                + (f" (keywords: {', '.join(s.get('keywords') or [])})"
                   if s.get("keywords") else "") for s in value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    return [{"field": c["field"], "label": FIELD_LABELS.get(c["field"], c["field"]),
             "before": show(c["field"], c["version_value"]),
             "after": show(c["field"], c["current_value"])} for c in changes]


@require("agents.change")
@require_http_methods(["GET", "POST"])
def agent_delete(request, pk):
    agent = get_object_for_user(request, Agent, pk, write=True)
    if request.method == "POST":
        try:
            actions.delete_agent(Actor.from_request(request), agent)
        except Refused as exc:
            messages.error(request, str(exc))
            return redirect("agent_detail", pk=agent.pk)
        messages.success(request, f"Deleted {agent.name}.")
        return redirect("agent_list")
    return render(request, "agents/agent_delete.html", {"agent": agent})


@require("conversations.view")
def playground(request):
    agents = list(Agent.objects.for_user(request.user).filter(enabled=True).select_related(
        "backend").order_by("quick", "name"))
    query = request.GET.get("q", "").strip()[:200]
    conversations = actions.search_conversations(
        Conversation.objects.for_user(request.user).listed().select_related("agent", "owner"),
        query)[:50]
    current = None
    wanted, agent_id = small_int(request.GET.get("c")), small_int(request.GET.get("agent"))
    if wanted is not None:
        current = get_object_or_404(Conversation.objects.for_user(request.user), pk=wanted)
    selected = current.agent if current else None
    if selected is None and agent_id is not None:
        selected = next((a for a in agents if a.pk == agent_id), None)
    selected = selected or (agents[0] if agents else None)
    transcript = _transcript(current) if current else []
    can_chat = has_perm(request.user, "chat") and (current is None
                                                   or current.owner_id == request.user.pk)
    return render(request, "agents/playground.html", {
        "agents": [a for a in agents if not a.quick],
        "quick_agents": [a for a in agents if a.quick],
        "backends": Backend.objects.filter(enabled=True).order_by("name") if can_chat else [],
        "conversations": conversations, "current": current, "query": query,
        "selected": selected, "transcript": transcript, "can_chat": can_chat,
        "can_change": current is not None and actions.may_change(request.user, current)})


@require("conversations.view")
@require_POST
def conversation_rename(request, pk: int):
    conversation = get_object_or_404(Conversation.objects.for_user(request.user), pk=pk)
    try:
        actions.rename_conversation(Actor.from_request(request), request.user, conversation,
                                    request.POST.get("title", ""))
    except (Invalid, Refused) as exc:
        messages.error(request, "Not renamed: " + (exc.messages if isinstance(exc, Invalid)
                                                   else str(exc)))
    return redirect(f"{reverse('playground')}?c={conversation.pk}")


@require("conversations.view")
@require_POST
def conversation_delete(request, pk: int):
    conversation = get_object_or_404(Conversation.objects.for_user(request.user), pk=pk)
    try:
        actions.delete_conversation(Actor.from_request(request), request.user, conversation)
    except Refused as exc:
        messages.error(request, str(exc))
        return redirect(f"{reverse('playground')}?c={conversation.pk}")
    messages.success(request, "Deleted the conversation.")
    return redirect("playground")


@require("conversations.view")
def conversation_list(request):
    """The playground's conversation list alone (it refreshes itself: a conversation
    started elsewhere, renamed in another tab or by the API shows up)."""
    query = request.GET.get("q", "").strip()[:200]
    current = request.GET.get("c", "")
    conversations = actions.search_conversations(
        Conversation.objects.for_user(request.user).listed().select_related("agent", "owner"),
        query)[:50]
    return render(request, "agents/partials/conversation_list.html", {
        "conversations": conversations, "query": query,
        "current_id": small_int(current)})


@require("chat")
@require_POST
def quick_chat(request):
    """Chat on a model row (and the playground's model picker): the quick agent for that
    backend and model, then the playground on it."""
    check(request.user, "agents.change")
    backend = request.POST.get("backend", "")
    try:
        agent, created = actions.quick_agent(
            Actor.from_request(request), int(backend) if digits(backend) else backend,
            request.POST.get("model", ""))
    except (Invalid, Refused) as exc:
        reason = exc.messages if isinstance(exc, Invalid) else str(exc)
        messages.error(request, f"Could not start the chat: {reason}")
        back = request.POST.get("next", "")
        return redirect(back if back in QUICK_BACK else "playground")
    return redirect(f"{reverse('playground')}?agent={agent.pk}")


# where a refused quick chat sends you back to (never an arbitrary URL)
QUICK_BACK = ("playground", "fleet_models")


def _transcript(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation as the playground shows it: each message with its run's timings
    and routing; the answers a regenerate replaced fold into one item ("previous
    versions") before the current answer to their question, labelled "n of n"."""
    runs = {r.pk: r for r in conversation.runs.all()}
    questions: list[list[Message]] = [[]]
    for m in conversation.messages.all():
        if m.role == MessageRole.USER:
            questions.append([])
        questions[-1].append(m)
    items: list[dict[str, Any]] = []
    routed: set[int] = set()
    for group in questions:
        versions: dict[int | None, list[Message]] = {}
        current: list[dict[str, Any]] = []
        for m in group:
            run = runs.get(m.run_id) if m.run_id else None
            if m.superseded:
                versions.setdefault(m.run_id, []).append(m)
                continue
            first_of_run = run is not None and run.pk not in routed
            if run is not None:
                routed.add(run.pk)
            current.append({"m": m, "run": run if _is_reply(m) else None,
                            "routes": (run.route or []) if first_of_run and run else []})
        if versions:
            total = len(versions) + 1
            current.insert(next(i for i, m in enumerate(group) if m.superseded), {
                "total": total, "versions": [
                    {"text": "\n\n".join(m.content for m in answer if _is_reply(m)),
                     "incomplete": any(m.incomplete for m in answer),
                     "run": runs.get(run_id) if run_id else None}
                    for run_id, answer in versions.items()]})
            replies = [item for item in current if "m" in item and _is_reply(item["m"])]
            if replies:
                replies[-1]["version"] = f"{total} of {total}"
        items.extend(current)
    return items


def _is_reply(m: Message) -> bool:
    return m.role == MessageRole.ASSISTANT and not m.tool_calls


@require("agents.view")
@require_http_methods(["GET", "POST"])
def knowledge(request):
    """The knowledge base: upload (file or pasted text), try a search, delete."""
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "agents.change"):
            raise PermissionDenied("Your role may not change the knowledge base.")
        upload = request.FILES.get("file")
        title, content = request.POST.get("title", ""), request.POST.get("content", "")
        if upload is not None:
            title = title or upload.name
            raw = upload.read(knowledge_base.MAX_BYTES + 1)
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors = {"file": ["Upload UTF-8 text (.txt, .md, .csv…); this file is not."]}
        if not errors:
            try:
                doc = knowledge_base.add_document(Actor.from_request(request), title, content)
            except Invalid as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Added {doc.title}.")
                return redirect("knowledge")
    query = request.GET.get("q", "").strip()
    return render(request, "agents/knowledge.html", {
        "documents": KnowledgeDocument.objects.only("pk", "title", "uploaded_by",
                                                    "created_at"),
        "errors": errors, "query": query, "posted": request.POST,
        "hits": knowledge_base.search(query) if query else None})


def _number(text: str | None) -> float | str | None:
    """A form's number as a float, or the text itself so validation names it."""
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return text


@require("agents.view")
@require_http_methods(["GET", "POST"])
def tool_list(request):
    """Every tool with its schema; operators change approval, timeout and enabled."""
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "agents.change"):
            raise PermissionDenied("Your role may not change tools.")
        tool = get_object_or_404(Tool, pk=request.POST.get("tool"))
        try:
            tool_actions.update_tool(Actor.from_request(request), tool, {
                "requires_approval": "requires_approval" in request.POST,
                "enabled": "enabled" in request.POST,
                "timeout_s": _number(request.POST.get("timeout_s"))})
        except Invalid as exc:
            errors = {tool.pk: exc.errors}
        else:
            messages.success(request, f"Saved {tool.name}.")
            return redirect("tool_list")
    return render(request, "agents/tool_list.html", {
        "tools": Tool.objects.select_related("server").prefetch_related("agents"),
        "errors": errors})


@require("agents.change")
@require_http_methods(["POST"])
def knowledge_delete(request, pk):
    doc = get_object_or_404(KnowledgeDocument, pk=pk)
    knowledge_base.delete_document(Actor.from_request(request), doc)
    messages.success(request, f"Deleted {doc.title}.")
    return redirect("knowledge")


@require("chat")
def approvals_page(request):
    """Tool calls of the user's own turns waiting for a decision, whatever started them
    (the playground, the chat API or its stream), and the latest decisions."""
    pending = list(approvals.pending_for(request.user).select_related("conversation"))
    recent = list(Approval.objects.filter(owner=request.user).exclude(
        pk__in=[a.pk for a in pending]).select_related("conversation")[:20])
    template = ("agents/partials/approvals_list.html" if request.htmx
                else "agents/approvals.html")
    return render(request, template, {"pending": pending, "recent": recent})


@require("chat")
@require_http_methods(["POST"])
def approval_decide(request, pk):
    decision = request.POST.get("decision")
    if decision not in ("approve", "deny"):
        messages.error(request, "decision: choose approve or deny.")
        return redirect("approvals")
    try:
        approval = approvals.decide(Actor.from_request(request), request.user, pk,
                                    decision == "approve")
    except Invalid:
        raise Http404("no such approval of yours") from None
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{approval.tool_name}: "
                                  f"{approval.get_status_display().lower()}.")
    return redirect("approvals")
