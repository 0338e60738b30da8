"""Models per backend and across the fleet: pull with live progress, load, unload, delete."""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from console import rightsizing, sizing
from console.actions import Invalid, Refused
from console.actions import models as lifecycle
from console.audit import Actor
from console.backends import adapter_for, probe, probe_many
from console.backends.base import BackendError
from console.catalog import CURATED
from console.models import Backend, Job, ModelRole
from console.permissions import get_object_for_user, require


def _pull_warnings(model: str, backend_id: int | None = None) -> list[str]:
    """Right-sizing before a pull: the curated size (the only one known before the manifest
    arrives) against free memory."""
    entry = next((c for c in CURATED if c["name"] == model), None)
    if entry is None:
        return []
    return rightsizing.warnings(model, float(entry["size_gb"]) * 1e9 * sizing.OVERHEAD,
                                entry["params"], backend_id)


def _load_warnings(backend: Backend, model: str) -> list[str]:
    """Right-sizing before a load: the size the engine reports for the model."""
    report = async_to_sync(probe)(adapter_for(backend))
    info = next((m for m in report.models if m["id"] == model), None)
    if not info or not info.get("size_bytes"):
        return []
    return rightsizing.warnings(model, info["size_bytes"] * sizing.OVERHEAD,
                                info.get("parameter_size", ""), backend.pk)


@require("backends.view")
def backend_models(request, pk: int):
    backend = get_object_for_user(request, Backend, pk)
    adapter = adapter_for(backend)

    async def read():
        report = await probe(adapter)
        async with adapter.session():
            actions = await adapter.model_actions()
            if report.status == "unhealthy":
                return report, actions, {}, []
            tools = await adapter.tool_support([m["id"] for m in report.models])
            try:
                catalog = await adapter.catalog()
            except BackendError:
                catalog = []
        return report, actions, tools, catalog

    report, actions, tools, catalog = async_to_sync(read)()
    roles = {r.model: r for r in backend.model_roles.all()}
    for model in report.models:
        model["tools"] = tools.get(model["id"])
        model["role"] = roles.get(model["id"])
    recent = timezone.now() - timedelta(hours=1)
    jobs = backend.jobs.filter(Q(state__in=Job.ACTIVE) | Q(created_at__gte=recent))[:10]
    return render(request, "console/backend_models.html", {
        "backend": backend, "report": report, "actions": actions, "jobs": jobs,
        "curated": CURATED, "keep_alive": lifecycle.KEEP_ALIVE, "catalog": catalog,
        "foundry_cli": backend.kind == "foundry_local"})


@require("backends.view")
def fleet_models(request):
    backends = list(Backend.objects.filter(enabled=True))
    reports = async_to_sync(probe_many)([adapter_for(b) for b in backends])
    roles = {(r.backend_id, r.model): r for r in ModelRole.objects.all()}
    rows = [{"backend": b, "model": m, "role": roles.get((b.pk, m["id"]))}
            for b, r in zip(backends, reports, strict=True) for m in r.models]
    errors = [(b, r.error) for b, r in zip(backends, reports, strict=True)
              if r.status == "unhealthy"]
    return render(request, "console/fleet_models.html", {"rows": rows, "errors": errors,
                                                         "backends": backends})


def _back(backend: Backend):
    return redirect("backend_models", pk=backend.pk)


@require("backends.change")
@require_POST
def model_pull(request, pk: int):
    backend = get_object_for_user(request, Backend, pk, write=True)
    model = request.POST.get("model", "")
    try:
        job = lifecycle.start_pull(Actor.from_request(request), backend, model)
    except Invalid as exc:
        messages.error(request, " ".join(exc.errors["model"]))
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        for warning in _pull_warnings(job.model, backend.pk):
            messages.warning(request, warning)
        messages.success(request, f"Pulling {job.model}. You can leave this page: progress "
                                  f"shows at the top of every page.")
    return _back(backend)


@require("backends.change")
@require_POST
def model_action(request, pk: int, action: str):
    if action not in ("load", "unload", "delete"):
        raise Http404("no such model action")
    backend = get_object_for_user(request, Backend, pk, write=True)
    model = request.POST.get("model", "")
    actor = Actor.from_request(request)
    try:
        if action == "load":
            for warning in _load_warnings(backend, model):
                messages.warning(request, warning)
            lifecycle.load(actor, backend, model, request.POST.get("keep_alive") or None)
        elif action == "unload":
            lifecycle.unload(actor, backend, model)
        else:
            lifecycle.delete(actor, backend, model)
    except (Invalid, Refused) as exc:
        messages.error(request, str(exc))
    else:
        done = {"load": "Loaded", "unload": "Unloaded", "delete": "Deleted"}[action]
        messages.success(request, f"{done} {model} on {backend.name}.")
    return _back(backend)


@require("backends.change")
@require_POST
def job_cancel(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    try:
        lifecycle.cancel(Actor.from_request(request), job)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancelling the pull of {job.model}…")
    return _back(job.backend)


@require("backends.change")
@require_POST
def job_retry(request, job_id: int):
    job = get_object_or_404(Job.objects.select_related("backend"), pk=job_id)
    try:
        again = lifecycle.retry(Actor.from_request(request), job)
    except (Invalid, Refused) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Pulling {again.model} again.")
    return _back(job.backend)
