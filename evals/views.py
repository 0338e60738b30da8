"""Dataset pages: the list, a new dataset (from a file or pasted JSON Lines), one
dataset at any of its versions, a new version from a file. Experiment pages: start one,
watch its progress, read its results (targets compared, cases side by side, failures
first, what regressed since an earlier run), export them."""

from __future__ import annotations

import json
import re

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid, Refused
from console.audit import Actor
from console.permissions import has_perm, require
from console.safeinput import small_int
from evals import actions, experiments, export, gates, replay, stats
from evals.checks import describe
from evals.models import Dataset, Experiment

# the editor's text is a form field, which Django bounds (DATA_UPLOAD_MAX_MEMORY_SIZE)
EDIT_LIMIT = 2_000_000


def cases_of(version) -> str:
    count = len(version.cases)
    return f"{count} case" if count == 1 else f"{count} cases"


def _upload(request) -> list | None:
    """Cases from the uploaded file, or from the pasted JSON Lines; None: neither."""
    upload = request.FILES.get("file")
    if upload is not None:
        raw = upload.read(actions.MAX_UPLOAD + 1)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid({"file": ["UTF-8 text (.jsonl or .csv)"]}) from None
        return actions.cases_from_file(upload.name, text)
    pasted = request.POST.get("jsonl", "")
    if pasted.strip():
        return actions.cases_from_file("pasted.jsonl", pasted)
    return None


@require("datasets.view")
@require_http_methods(["GET", "POST"])
def dataset_list(request):
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "datasets.change"):
            raise PermissionDenied("Your role may not change datasets.")
        try:
            cases = _upload(request)
            dataset = actions.create_dataset(Actor.from_request(request), request.user, {
                "name": request.POST.get("name", ""),
                "description": request.POST.get("description", ""),
                "cases": cases if cases is not None else [],
                "note": "created on the page"})
        except Invalid as exc:
            errors = exc.errors
        else:
            messages.success(request, f"Created {dataset.name} with "
                                      f"{cases_of(dataset.versions.get())}.")
            return redirect("dataset_detail", pk=dataset.pk)
    return render(request, "evals/dataset_list.html", {
        "datasets": Dataset.objects.all(), "errors": errors, "posted": request.POST})


@require("datasets.view")
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    number = small_int(request.GET.get("version"), max_digits=9)
    version = get_object_or_404(dataset.versions,
                                number=dataset.version if number is None else number)
    jsonl = "\n".join(json.dumps(case, ensure_ascii=False) for case in version.cases)
    cases = [{**case, "question": next((m["content"] for m in reversed(case["messages"])
                                        if m["role"] == "user"), ""),
              "check_words": [describe(c) for c in case.get("checks", [])]}
             for case in version.cases]
    return render(request, "evals/dataset_detail.html", {
        "dataset": dataset, "version": version, "cases": cases,
        # the new-version form starts from this version's cases: edit them, save
        "jsonl": jsonl if len(jsonl) <= EDIT_LIMIT else "",
        "jsonl_too_big": len(jsonl.encode()) if len(jsonl) > EDIT_LIMIT else 0,
        "editable": version.number == dataset.version
        and has_perm(request.user, "datasets.change"),
        "checks": [describe(c) for c in version.checks],
        "versions": dataset.versions.all()})


@require("datasets.change")
@require_POST
def dataset_version(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    try:
        cases = _upload(request)
        if cases is None:
            raise Invalid({"file": ["choose a .jsonl or .csv file, or paste JSON Lines"]})
        version = actions.new_version(Actor.from_request(request), dataset, {
            "cases": cases, "note": request.POST.get("note", "")[:200]})
    except Invalid as exc:
        messages.error(request, f"No new version: {exc}")
        return redirect("dataset_detail", pk=dataset.pk)
    messages.success(request, f"Version {version.number}: {cases_of(version)}.")
    return redirect("dataset_detail", pk=dataset.pk)


@require("datasets.change")
@require_POST
def dataset_remove_case(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    case_id = request.POST.get("case", "")[:64]
    try:
        version = actions.remove_case(Actor.from_request(request), dataset, case_id)
    except Invalid as exc:
        messages.error(request, f"Nothing removed: {exc}")
    else:
        messages.success(request, f"Removed {case_id}: version {version.number} has "
                                  f"{cases_of(version)}.")
    return redirect("dataset_detail", pk=dataset.pk)


@require("datasets.change")
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    actions.delete_dataset(Actor.from_request(request), dataset)
    messages.success(request, f"Deleted {dataset.name} and its versions.")
    return redirect("dataset_list")


# -- experiments ---------------------------------------------------------------------

MAX_FORM_TARGETS = 4


def _targets_from_post(post) -> list[dict]:
    """The form's target rows: `target` is agent:ID or backend:ID (then `model`), with an
    optional temperature and max_tokens each."""
    targets = []
    for i in range(MAX_FORM_TARGETS):
        choice = post.get(f"target-{i}", "")
        kind, _, pk = choice.partition(":")
        number = small_int(pk)
        if not choice:
            continue
        spec: dict = {"agent_id": number} if kind == "agent" else {
            "backend_id": number, "model": post.get(f"model-{i}", "").strip()}
        params: dict = {}
        temperature = post.get(f"temperature-{i}", "").strip()
        if temperature:
            try:
                params["temperature"] = float(temperature)
            except ValueError:
                params["temperature"] = temperature  # named in the error
        most = post.get(f"max_tokens-{i}", "").strip()
        if most:
            params["max_tokens"] = small_int(most) if small_int(most) is not None else most
        if params:
            spec["params"] = params
        targets.append(spec)
    return targets


def _target_choices(request) -> dict:
    """What a target row offers: the user's enabled agents, and the enabled backends."""
    from agents.models import Agent
    from console.models import Backend

    return {"agents": Agent.objects.for_user(request.user).filter(enabled=True)
            .select_related("backend").order_by("quick", "name"),
            "backends": Backend.objects.filter(enabled=True).order_by("name"),
            "rows": range(MAX_FORM_TARGETS)}


def _form_context(request, errors: dict, posted) -> dict:
    return {**_target_choices(request), "datasets": Dataset.objects.all(), "errors": errors,
            "posted": posted, "experiments": Experiment.objects.select_related("dataset")[:50]}


@require("experiments.view")
@require_http_methods(["GET", "POST"])
def experiment_list(request):
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "experiments.run"):
            raise PermissionDenied("Your role may not run experiments.")
        data: dict = {"dataset_id": small_int(request.POST.get("dataset")),
                      "targets": _targets_from_post(request.POST)}
        for key in ("concurrency", "seed", "version"):
            value = request.POST.get(key, "").strip()
            if value:
                data[key] = small_int(value) if small_int(value) is not None else value
        if request.POST.get("name", "").strip():
            data["name"] = request.POST["name"].strip()
        try:
            experiment = experiments.create_experiment(Actor.from_request(request),
                                                       request.user, data)
        except Invalid as exc:
            errors = exc.errors
        else:
            messages.success(request, f"Started {experiment}: {experiment.total} runs. "
                                      f"It goes on if you leave this page.")
            return redirect("experiment_detail", pk=experiment.pk)
    context = _form_context(request, errors, request.POST)
    context["chosen_dataset"] = small_int(request.POST.get("dataset") or
                                          request.GET.get("dataset"))
    return render(request, "evals/experiment_list.html", context)


def _results(targets: list, results: list) -> list[dict]:
    """Each case's results side by side, the cases some target failed first."""
    by_case: dict[str, dict] = {}
    for r in results:
        row = by_case.setdefault(r.case_id, {"case_id": r.case_id, "position": r.position,
                                             "cells": {}})
        row["cells"][r.target_id] = r
    rows = []
    for row in by_case.values():
        row["cells"] = [row["cells"].get(t.pk) for t in targets]
        row["failed"] = any(c is not None and not c.passed for c in row["cells"])
        rows.append(row)
    rows.sort(key=lambda r: (not r["failed"], r["position"]))
    return rows


@require("experiments.view")
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.select_related(
        "dataset", "version", "created_by"), pk=pk)
    if request.GET.get("part") == "progress":
        return render(request, "evals/partials/experiment_progress.html",
                      {"experiment": experiment})
    targets, results = list(experiment.targets.all()), list(experiment.results.all())
    summary = stats.experiment_stats(targets, results)
    verdicts = [stats.verdict(summary[0], other) for other in summary[1:]] if summary else []
    others = Experiment.objects.filter(dataset=experiment.dataset).exclude(pk=pk)[:20]
    against = small_int(request.GET.get("against"))
    diffs = None
    if against is not None:
        earlier = get_object_or_404(Experiment, pk=against)
        diffs = export.regressions(earlier, experiment)
    return render(request, "evals/experiment_detail.html", {
        "experiment": experiment, "summary": summary, "verdicts": [v for v in verdicts if v],
        "targets": targets, "rows": _results(targets, results),
        "others": others, "against": against, "diffs": diffs,
        "may_change": experiments.may_change(request.user, experiment)
        and has_perm(request.user, "experiments.run")})


@require("experiments.view")
def experiment_export(request, pk: int, fmt: str):
    if fmt not in ("csv", "json"):
        raise Http404("export as .csv or .json")
    experiment = get_object_or_404(Experiment.objects.select_related(
        "dataset", "version", "created_by"), pk=pk)
    if fmt == "csv":
        response = HttpResponse(export.csv_text(experiment), content_type="text/csv")
    else:
        response = HttpResponse(json.dumps(export.experiment_dict(experiment), default=str,
                                           ensure_ascii=False, indent=1),
                                content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="experiment-{pk}.{fmt}"'
    return response


@require("experiments.run")
@require_POST
def experiment_action(request, pk: int, action: str):
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    act = {"cancel": experiments.cancel, "resume": experiments.resume}.get(action)
    try:
        if action == "delete":
            experiments.delete(Actor.from_request(request), request.user, experiment)
            messages.success(request, f"Deleted {experiment} and its results.")
            return redirect("experiment_list")
        if act is None:
            raise Refused(f"unknown action {action}")
        act(Actor.from_request(request), request.user, experiment)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, {"cancel": "Cancelling: what was recorded stays.",
                                   "resume": "Queued again: the cases without a result "
                                             "will run."}[action])
    return redirect("experiment_detail", pk=pk)


@require("datasets.change")
@require_http_methods(["GET", "POST"])
def dataset_add_turn(request):
    """*Add to dataset* beside a conversation or a trace: GET is the form (the playground
    and the trace page load it when opened), POST adds the conversation's last turn, or
    the trace's turn (a span's input and output), to the chosen dataset."""
    source = request.POST if request.method == "POST" else request.GET
    conversation = small_int(source.get("conversation") or source.get("c"))
    trace = source.get("trace", "").strip().lower()[:32]
    span = source.get("span", "").strip().lower()[:16]
    if not re.fullmatch(r"[0-9a-f]*", trace) or not re.fullmatch(r"[0-9a-f]*", span):
        trace = span = ""  # not ids: the form says there is nothing to add
    if request.method == "GET":
        return render(request, "evals/partials/add_turn.html", {
            "datasets": Dataset.objects.all(), "conversation": conversation,
            "trace": trace, "span": span})
    back = reverse("trace_detail", args=[trace]) if trace and not conversation else \
        f"{reverse('playground')}?c={conversation or ''}"
    dataset = Dataset.objects.filter(pk=small_int(request.POST.get("dataset")) or 0).first()
    expected = bool(request.POST.get("expected"))
    try:
        if dataset is None:
            raise Invalid({"dataset": ["choose a dataset"]})
        if trace and not conversation:
            case = replay.case_from_trace(request.user, trace, span or None, expected=expected)
        else:
            case = actions.case_from_conversation(request.user, conversation,
                                                  expected=expected)
        version = actions.add_case(Actor.from_request(request), dataset, case)
    except Invalid as exc:
        messages.error(request, f"Not added: {exc}")
        return redirect(back)
    messages.success(request, f"Added the {'turn' if trace else 'last turn'} to "
                              f"{dataset.name} (version {version.number}, "
                              f"{cases_of(version)}).")
    return redirect(back)


# -- compare -----------------------------------------------------------------------------

@require("chat")
def compare_page(request):
    """One message to up to four targets, side by side (the streaming is compare.js on
    POST /api/compare). `?conversation=&message=` or `?trace=&span=`: a *Replay*, its
    earlier messages shown and sent along."""
    history: list = []
    question, error = "", ""
    get = request.GET
    conversation = get.get("conversation")
    try:
        if conversation or get.get("trace"):
            found = replay.replay_messages(
                # a conversation that is not a number is one that does not exist
                request.user, conversation_id=(small_int(conversation) or 0)
                if conversation else None, message_id=small_int(get.get("message")),
                trace_id=get.get("trace", "")[:32] or None, span_id=get.get("span", "")[:16])
            history, question = found[:-1], found[-1]["content"]
    except Invalid as exc:
        error = f"Nothing to replay: {exc}"
    return render(request, "evals/compare.html", {
        **_target_choices(request), "history": history, "question": question,
        "replay_error": error, "chosen": small_int(get.get("agent")),
        "has_system": any(m["role"] == "system" for m in history),
        "history_json": json.dumps(history, ensure_ascii=False),
        "can_save": has_perm(request.user, "agents.change")})


# -- regression sets --------------------------------------------------------------------

@require("agents.view")
@require_http_methods(["GET", "POST"])
def agent_gate(request, pk: int):
    """The agent page's regression-set panel (loaded by the agent's pages, which know
    evals only by this URL's name): GET the panel (`?version=`: a version's page), POST
    `action=choose` (a dataset, or none) or `action=run` (the set on the agent now)."""
    try:
        agent = gates.agent_of(request.user, pk)
    except Invalid:
        raise Http404("no such agent") from None
    version = small_int(request.GET.get("version") or request.POST.get("version"))
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "choose":
                if not has_perm(request.user, "agents.change"):
                    raise PermissionDenied("Your role may not change agents.")
                given = request.POST.get("dataset", "").strip()
                if given and small_int(given) is None:
                    raise Invalid({"dataset": ["choose a dataset, or (none)"]})
                chosen = gates.choose(Actor.from_request(request), agent,
                                      small_int(given) if given else None)
                messages.success(request, f"{agent.name} is checked on {chosen.dataset.name}."
                                 if chosen else f"{agent.name} has no regression set now.")
            elif action == "run":
                if not has_perm(request.user, "experiments.run"):
                    raise PermissionDenied("Your role may not run experiments.")
                experiment = gates.run(Actor.from_request(request), request.user, agent)
                messages.success(request, f"Started {experiment}: it goes on if you leave "
                                          f"this page; {agent.name}'s page shows it beside "
                                          f"the version before.")
                return redirect("experiment_detail", pk=experiment.pk)
            else:
                raise Refused(f"unknown action {action!r}")
        except (Invalid, Refused) as exc:
            messages.error(request, f"Not done: {exc}")
        if version and version != agent.version:
            return redirect("agent_version", pk=agent.pk, number=version)
        return redirect("agent_detail", pk=agent.pk)
    found = gates.summary(agent, version)
    return render(request, "evals/partials/agent_gate.html", {
        **found, "agent": agent, "current": (version or agent.version) == agent.version,
        "datasets": Dataset.objects.all() if has_perm(request.user, "agents.change") else [],
        "may_run": has_perm(request.user, "experiments.run")})
