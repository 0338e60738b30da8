"""Dataset pages: the list, a new dataset (from a file or pasted JSON Lines), one
dataset at any of its versions, a new version from a file."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid
from console.audit import Actor
from console.permissions import has_perm, require
from console.safeinput import small_int
from evals import actions
from evals.checks import describe
from evals.models import Dataset


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
                                      f"{len(dataset.versions.get().cases)} cases.")
            return redirect("dataset_detail", pk=dataset.pk)
    return render(request, "evals/dataset_list.html", {
        "datasets": Dataset.objects.all(), "errors": errors, "posted": request.POST})


@require("datasets.view")
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    number = small_int(request.GET.get("version"), max_digits=9)
    version = get_object_or_404(dataset.versions,
                                number=dataset.version if number is None else number)
    cases = [{**case, "question": next((m["content"] for m in reversed(case["messages"])
                                        if m["role"] == "user"), ""),
              "check_words": [describe(c) for c in case.get("checks", [])]}
             for case in version.cases]
    return render(request, "evals/dataset_detail.html", {
        "dataset": dataset, "version": version, "cases": cases,
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
    messages.success(request, f"Version {version.number}: {len(version.cases)} cases.")
    return redirect("dataset_detail", pk=dataset.pk)


@require("datasets.change")
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    actions.delete_dataset(Actor.from_request(request), dataset)
    messages.success(request, f"Deleted {dataset.name} and its versions.")
    return redirect("dataset_list")
