"""The Engines pages: the list, a form (blank or from a saved vLLM plan), and an engine's
page with its state, actions, events and log. Every change goes through engines.actions."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.actions import Invalid, Refused
from console.audit import Actor
from console.models import DeploymentPlan
from console.permissions import has_perm, require
from console.safeinput import digits
from engines import actions, commands, logs
from engines.choices import STATE_COLOURS, EngineKind
from engines.forms import EngineForm
from engines.models import ManagedEngine

LOG_LINES = 200


def _rows(engines) -> list[dict]:
    return [{"engine": e, "colour": STATE_COLOURS.get(e.state, "grey"),
             "base_url": commands.base_url(e)} for e in engines]


@require("engines.view")
@require_GET
def engine_list(request):
    rows = _rows(ManagedEngine.objects.select_related("backend"))
    if request.htmx:
        return render(request, "engines/partials/engine_rows.html", {"rows": rows})
    return render(request, "engines/engine_list.html", {
        "rows": rows, "allowed": commands.allowed(),
        "plans": DeploymentPlan.objects.order_by("name")})


def _initial(request) -> dict:
    plan_id = request.GET.get("plan")
    if plan_id and digits(plan_id):
        plan = DeploymentPlan.objects.filter(pk=int(plan_id)).first()
        if plan is not None:
            try:
                return {**actions.from_plan(plan), "name": plan.name}
            except Invalid as exc:
                messages.error(request, exc.messages)
    kind = request.GET.get("kind", EngineKind.LLAMACPP)
    return {"kind": kind if kind in EngineKind.values else EngineKind.LLAMACPP,
            "port": 8080 if kind != EngineKind.VLLM else 8000, "host": "127.0.0.1"}


def _posted(request) -> dict:
    data = {k: request.POST.get(k, "") for k in actions.FIELDS}
    data["auto_restart"] = request.POST.get("auto_restart") == "on"
    return data


def _form_page(request, form, engine=None):
    return render(request, "engines/engine_form.html", {
        "form": form, "engine": engine, "allowed": commands.allowed(),
        "flags": {kind.label: sorted(f for f in commands.FLAGS[kind] if f.startswith("--"))
                  for kind in EngineKind}})


@require("engines.manage")
@require_http_methods(["GET", "POST"])
def engine_create(request):
    if request.method == "GET":
        return _form_page(request, EngineForm(initial=_initial(request)))
    data = _posted(request)
    try:
        engine = actions.create_engine(Actor.from_request(request), data,
                                       start=request.POST.get("then") == "start")
    except Invalid as exc:
        return _form_page(request, exc.form or EngineForm(data=data))
    messages.success(request, f"Saved {engine.name}." + (
        " A monitor starts it now." if engine.desired == "running" else ""))
    return redirect("engine_detail", engine.pk)


@require("engines.manage")
@require_http_methods(["GET", "POST"])
def engine_edit(request, pk: int):
    engine = get_object_or_404(ManagedEngine, pk=pk)
    if request.method == "GET":
        return _form_page(request, EngineForm(instance=engine), engine)
    data = _posted(request)
    try:
        engine = actions.update_engine(Actor.from_request(request), engine, data)
    except Invalid as exc:
        return _form_page(request, exc.form or EngineForm(data=data, instance=engine), engine)
    messages.success(request, f"Saved {engine.name}." + (
        " Restart it to apply the changes." if engine.changes_pending else ""))
    return redirect("engine_detail", engine.pk)


@require("engines.view")
@require_GET
def engine_detail(request, pk: int):
    engine = get_object_or_404(ManagedEngine.objects.select_related("backend", "plan"), pk=pk)
    show_log = has_perm(request.user, "engines.log")
    context = {"engine": engine, "colour": STATE_COLOURS.get(engine.state, "grey"),
               "base_url": commands.base_url(engine),
               "argv": commands.argv(engine, command) if (
                   command := commands.command_for(engine.command)) else None,
               "events": engine.events.all()[:20], "show_log": show_log,
               "log_lines": logs.tail(engine.pk, LOG_LINES) if show_log else []}
    part = request.GET.get("part")
    if request.htmx and part == "state":
        return render(request, "engines/partials/engine_state.html", context)
    if request.htmx and part == "log" and show_log:
        return render(request, "engines/partials/engine_log.html", context)
    return render(request, "engines/engine_detail.html", context)


@require("engines.manage")
@require_POST
def engine_action(request, pk: int, action: str):
    engine = get_object_or_404(ManagedEngine, pk=pk)
    do = {"start": actions.start_engine, "stop": actions.stop_engine,
          "restart": actions.restart_engine}.get(action)
    if do is None:
        raise Http404("no such action")
    try:
        do(Actor.from_request(request), engine)
    except Invalid as exc:
        messages.error(request, exc.messages)
    else:
        messages.success(request, {"start": f"Starting {engine.name}…",
                                   "stop": f"Stopping {engine.name}…",
                                   "restart": f"Restarting {engine.name}…"}[action])
    return redirect("engine_detail", engine.pk)


@require("engines.manage")
@require_POST
def engine_delete(request, pk: int):
    engine = get_object_or_404(ManagedEngine, pk=pk)
    try:
        actions.delete_engine(Actor.from_request(request), engine)
    except Refused as exc:
        messages.error(request, str(exc))
        return redirect("engine_detail", engine.pk)
    messages.success(request, f"Deleted {engine.name}; its backend stays on the Backends "
                              f"page.")
    return redirect("engine_list")


@require("engines.log")
@require_GET
def engine_log(request, pk: int):
    response = logs.download(get_object_or_404(ManagedEngine, pk=pk))
    if response is None:
        raise Http404("this engine has not written a log yet")
    return response
