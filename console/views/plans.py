"""The vLLM deployment plan page: inputs → commands and a fit check; saved plans."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from console import plans
from console.actions import Invalid
from console.actions import plans as plan_actions
from console.audit import Actor
from console.models import Backend, DeploymentPlan
from console.permissions import has_perm, require

GIB = 1024 ** 3


def _gpus_from_form(post) -> list[dict]:
    """"2 x 24" (count × GiB) typed by the operator, or the detected GPUs when empty."""
    text = post.get("gpus", "").strip().lower().replace("×", "x")
    if not text:
        return plans.detected_gpus()
    count, _, size = text.partition("x")
    try:
        n, gib = (int(count), float(size)) if size else (1, float(count))
    except ValueError:
        raise Invalid({"gpus": ["Write the GPUs as COUNT x GiB, e.g. 2 x 24."]}) from None
    if not 1 <= n <= 64 or not 1 <= gib <= 1024:
        raise Invalid({"gpus": ["Between 1 and 64 GPUs of 1 to 1024 GiB."]})
    return [{"name": f"GPU {i}", "memory_bytes": int(gib * GIB)} for i in range(n)]


@require("backends.view")
@require_http_methods(["GET", "POST"])
def plan_page(request):
    result, errors, values = None, {}, {"scenario": "production_low", "model": "",
                                        "quantization": "", "gpus": ""}
    if request.method == "POST":
        values = {k: request.POST.get(k, "") for k in ("model", "scenario", "quantization",
                                                       "gpus", "name", "backend_id")}
        try:
            data: dict[str, Any] = {**values, "gpus": _gpus_from_form(request.POST)}
            if request.POST.get("action") == "save":
                if not has_perm(request.user, "backends.change"):
                    raise PermissionDenied("Your role may not save plans.")
                data["backend_id"] = int(values["backend_id"]) if values["backend_id"] else None
                saved = plan_actions.save(Actor.from_request(request), data)
                messages.success(request, f"Saved the plan {saved.name}.")
                return redirect("plan_page")
            result = plan_actions.compute(data)
        except Invalid as exc:
            errors = exc.errors
    return render(request, "console/plans.html", {
        "result": result, "errors": errors, "values": values,
        "scenarios": plans.SCENARIOS, "models": plans.MODELS,
        "quantizations": [q for q in plans.BYTES_PER_WEIGHT if q],
        "detected": plans.detected_gpus(), "saved": DeploymentPlan.objects.select_related(
            "backend"), "backends": Backend.objects.filter(kind="vllm"),
        "scenario_json": json.dumps(plans.SCENARIOS, indent=1)})


@require("backends.change")
@require_POST
def plan_delete(request, pk: int):
    plan = get_object_or_404(DeploymentPlan, pk=pk)
    plan_actions.delete(Actor.from_request(request), plan)
    messages.success(request, f"Deleted the plan {plan.name}.")
    return redirect("plan_page")
