"""Saved vLLM deployment plans (computed by console.plans), audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from console import audit, plans
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from console.models import Backend, DeploymentPlan


def compute(data: dict[str, Any]) -> plans.Plan:
    gpus = data.get("gpus") or plans.detected_gpus()
    try:
        return plans.plan(str(data.get("model") or ""), str(data.get("scenario") or ""),
                          gpus if isinstance(gpus, list) else [],
                          quantization=str(data.get("quantization") or ""))
    except plans.PlanError as exc:
        raise Invalid({exc.field: [str(exc)]}) from None


def save(actor: Actor, data: dict[str, Any]) -> DeploymentPlan:
    name = str(data.get("name") or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 100:
        errors["name"] = ["Name the plan (at most 100 characters)."]
    elif DeploymentPlan.objects.filter(name=name).exists():
        errors["name"] = [f"A plan named {name} already exists."]
    backend = None
    if data.get("backend_id"):
        backend = Backend.objects.filter(pk=data["backend_id"]).first()
        if backend is None:
            errors["backend_id"] = ["No such backend."]
    if errors:
        raise Invalid(errors)
    result = compute(data)
    gpus = data.get("gpus") or plans.detected_gpus()
    with transaction.atomic():
        saved = DeploymentPlan.objects.create(
            name=name, model=str(data["model"]).strip(), scenario=data["scenario"],
            quantization=str(data.get("quantization") or ""), gpus=gpus,
            command=result.command, docker_command=result.docker_command, fits=result.fits,
            warnings=result.warnings, backend=backend, created_by=actor.username)
        audit.record(AuditAction.PLAN_SAVED, actor, target=saved,
                     after={"model": saved.model, "scenario": saved.scenario,
                            "fits": saved.fits, "backend_id": saved.backend_id})
    return saved


def delete(actor: Actor, plan: DeploymentPlan) -> None:
    with transaction.atomic():
        pk, name = plan.pk, plan.name
        plan.delete()
        audit.record(AuditAction.PLAN_DELETED, actor, target_type="console.deploymentplan",
                     target_id=pk, before={"name": name})
