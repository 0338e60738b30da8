"""Backend pages: list with live badges, add, edit, delete, detail, test, discover."""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid
from console.actions import backends as actions
from console.audit import Actor
from console.backends import adapter_for, probe_many
from console.choices import BackendKind, Role
from console.forms import BackendForm
from console.models import Backend
from console.permissions import get_object_for_user, require


def _refresh_stale(backends: list[Backend]) -> None:
    """Re-probe backends whose status is older than TANGLAW_STATUS_MAX_AGE_S."""
    cutoff = timezone.now() - timedelta(seconds=settings.TANGLAW_STATUS_MAX_AGE_S)
    stale = [b for b in backends if b.enabled and (not b.last_checked_at
                                                  or b.last_checked_at < cutoff)]
    if not stale:
        return
    reports = async_to_sync(probe_many)([adapter_for(b) for b in stale], with_models=False)
    for backend, report in zip(stale, reports, strict=True):
        actions.record_probe(backend, report)


@require("backends.view")
def backend_list(request):
    backends = list(Backend.objects.for_user(request.user))
    if request.htmx:
        _refresh_stale(backends)
        return render(request, "console/partials/backend_rows.html", {"backends": backends})
    return render(request, "console/backend_list.html", {"backends": backends})


@require("backends.change")
@require_http_methods(["GET", "POST"])
def backend_create(request):
    initial = {k: request.GET[k] for k in ("name", "kind", "base_url") if k in request.GET}
    form = BackendForm(initial=initial or {"kind": BackendKind.OLLAMA,
                                           "base_url": "http://127.0.0.1:11434"})
    if request.method == "POST":
        data = request.POST.dict()
        then = data.pop("next", "")
        try:
            backend = actions.create_backend(Actor.from_request(request), data)
        except Invalid as exc:
            form = exc.form
        else:
            if then == "models":  # registered from discovery: straight to its models
                messages.success(request, f"Added {backend.name}. Chat with one of its "
                                          f"models, or load one first.")
                return redirect("backend_models", pk=backend.pk)
            messages.success(request, f"Added {backend.name}. Test the connection below.")
            return redirect("backend_detail", pk=backend.pk)
    return render(request, "console/backend_form.html", {"form": form, "backend": None})


@require("backends.change")
@require_http_methods(["GET", "POST"])
def backend_edit(request, pk):
    backend = get_object_for_user(request, Backend, pk, write=True)
    form = BackendForm(instance=backend)
    if request.method == "POST":
        changes = request.POST.dict()
        changes["enabled"] = "enabled" in request.POST  # unchecked boxes are absent
        had_key = backend.api_key_set
        try:
            saved = actions.update_backend(Actor.from_request(request), backend, changes)
        except Invalid as exc:
            if exc.form is not None:
                form = exc.form
            else:  # refused after the form validated (keeping a key for a new address)
                form = BackendForm(data=request.POST, instance=backend)
                form.is_valid()
                for errors in exc.errors.values():
                    form.add_error(None, errors)
        else:
            messages.success(request, f"Saved {saved.name}.")
            if had_key and not saved.api_key_set and "clear_api_key" not in request.POST:
                messages.warning(request, "The stored API key was removed because the address "
                                          "changed; enter it again for the new address.")
            return redirect("backend_detail", pk=saved.pk)
    can_keep_key = backend.api_key_set and request.user.effective_role == Role.ADMIN
    return render(request, "console/backend_form.html", {"form": form, "backend": backend,
                                                         "can_keep_key": can_keep_key})


@require("backends.change")
@require_http_methods(["GET", "POST"])
def backend_delete(request, pk):
    backend = get_object_for_user(request, Backend, pk, write=True)
    if request.method == "POST":
        actions.delete_backend(Actor.from_request(request), backend)
        messages.success(request, f"Deleted {backend.name}.")
        return redirect("backend_list")
    return render(request, "console/backend_delete.html", {"backend": backend})


@require("backends.view")
def backend_detail(request, pk):
    backend = get_object_for_user(request, Backend, pk)
    history = backend.status_changes.all()[:20]
    return render(request, "console/backend_detail.html",
                  {"backend": backend, "history": history, "panels": _panels(backend)})


def _panels(backend: Backend) -> list[str]:
    """Live panels other apps add to a backend's page (TANGLAW_BACKEND_PANELS)."""
    return [reverse(name, args=[backend.pk]) for name in settings.TANGLAW_BACKEND_PANELS]


@require("backends.test")
@require_POST
def backend_test(request, pk):
    backend = get_object_for_user(request, Backend, pk)
    report = actions.test_backend(Actor.from_request(request), backend)
    context = {"backend": backend, "report": report,
               "history": backend.status_changes.all()[:20], "panels": _panels(backend)}
    if request.htmx:
        return render(request, "console/partials/test_result.html", context)
    return render(request, "console/backend_detail.html", context)


@require("backends.discover")
@require_http_methods(["GET", "POST"])
def backend_discover(request):
    candidates = None
    if request.method == "POST":
        candidates = actions.discover(Actor.from_request(request))
    if request.htmx and candidates is not None:
        # the overview with no backends yet discovers on arrival and shows this part
        return render(request, "console/partials/discovered.html", {
            "candidates": candidates, "kinds": dict(BackendKind.choices), "arrival": True})
    return render(request, "console/backend_discover.html", {
        "candidates": candidates, "kinds": dict(BackendKind.choices),
        "ports": settings.TANGLAW_DISCOVERY_PORTS,
        "host": settings.TANGLAW_DISCOVERY_HOST,
    })
