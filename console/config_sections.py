"""The console's sections of the site configuration: backends and vLLM plans."""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError

from console import generation
from console.actions import Invalid, Refused
from console.actions import backends as backend_actions
from console.actions import plans as plan_actions
from console.audit import Actor
from console.models import Backend, DeploymentPlan, ModelRole, SiteSetting
from console.siteconfig import list_of, named_items, prefixed

BACKEND_FIELDS = ["kind", "base_url", "enabled", "connect_timeout_s", "read_timeout_s",
                  "active_probe_interval_s", "active_probe_model", "notes"]


class BackendsSection:
    keys = ("backends",)

    def export(self) -> dict[str, Any]:
        return {"backends": [
            {"name": b.name, **{f: getattr(b, f) for f in BACKEND_FIELDS},
             "api_key": "secret" if b.api_key_set else None}
            for b in Backend.objects.order_by("name")]}

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]:
        items = list_of(data.get("backends"), "backends")
        errors: dict[str, list[str]] = {}
        changes: list[dict[str, str]] = []
        seen: set[str] = set()
        for path, name, item in named_items(items, "backends", "backend",
                                            {"api_key", *BACKEND_FIELDS}, errors):
            seen.add(name)
            existing = Backend.objects.filter(name=name).first()
            values = {"name": name, **{f: item[f] for f in BACKEND_FIELDS if f in item}}
            key = secrets.get(f"backends.{name}.api_key")
            if key:
                values["api_key"] = key
            elif item.get("api_key") == "secret" and not (existing and existing.api_key_set):
                errors[f"{path}.api_key"] = [f"enter the API key (backends.{name}.api_key): "
                                             f"secrets are not exported"]
                continue
            try:
                if existing is None:
                    backend_actions.create_backend(actor, values)
                    changes.append({"action": "create", "kind": "backend", "name": name})
                else:
                    before = existing.audit_snapshot()
                    new_key = bool(key) and key != existing.api_key
                    if not key:  # a key given again counts as entered for this address
                        values.pop("api_key", None)
                    updated = backend_actions.update_backend(actor, existing, values)
                    changed = updated.audit_snapshot() != before or new_key
                    changes.append({"action": "update" if changed else "unchanged",
                                    "kind": "backend", "name": name})
            except Invalid as exc:
                errors.update(prefixed(exc, path))
        if prune:
            for backend in Backend.objects.exclude(name__in=seen):
                try:
                    backend_actions.delete_backend(actor, backend)
                    changes.append({"action": "delete", "kind": "backend",
                                    "name": backend.name})
                except (ProtectedError, Refused):
                    errors[f"backends.{backend.name}"] = [
                        "not in the file, but agents still use it: it cannot be deleted"]
        if errors:
            raise Invalid(errors)
        return changes


class PlansSection:
    keys = ("plans",)

    def export(self) -> dict[str, Any]:
        return {"plans": [
            {"name": p.name, "model": p.model, "scenario": p.scenario,
             "quantization": p.quantization, "gpus": p.gpus,
             "backend": p.backend.name if p.backend else None}
            for p in DeploymentPlan.objects.select_related("backend").order_by("name")]}

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]:
        items = list_of(data.get("plans"), "plans")
        errors: dict[str, list[str]] = {}
        changes: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            path = f"plans[{i}]"
            if not isinstance(item, dict) or not item.get("name"):
                errors[f"{path}.name"] = ["every plan needs a name"]
                continue
            name = str(item["name"])
            seen.add(name)
            backend_id = None
            if item.get("backend"):
                backend = Backend.objects.filter(name=item["backend"]).first()
                if backend is None:
                    errors[f"{path}.backend"] = [f"no backend named {item['backend']!r}"]
                    continue
                backend_id = backend.pk
            wanted = {"name": name, "model": item.get("model"), "scenario": item.get("scenario"),
                      "quantization": item.get("quantization") or "",
                      "gpus": item.get("gpus") or [], "backend_id": backend_id}
            existing = DeploymentPlan.objects.filter(name=name).first()
            if existing is not None:
                current = {"name": existing.name, "model": existing.model,
                           "scenario": existing.scenario, "quantization": existing.quantization,
                           "gpus": existing.gpus, "backend_id": existing.backend_id}
                if current == wanted:
                    changes.append({"action": "unchanged", "kind": "plan", "name": name})
                    continue
                plan_actions.delete(actor, existing)
            try:
                plan_actions.save(actor, wanted)
            except Invalid as exc:
                errors.update(prefixed(exc, path))
                continue
            changes.append({"action": "update" if existing else "create", "kind": "plan",
                            "name": name})
        if prune:
            for plan in DeploymentPlan.objects.exclude(name__in=seen):
                plan_actions.delete(actor, plan)
                changes.append({"action": "delete", "kind": "plan", "name": plan.name})
        if errors:
            raise Invalid(errors)
        return changes


DEPLOYMENT_TYPES = ("edge", "hybrid", "cloud", "on_premises")


class DeploymentSection:
    """`deployment: {type, description, models: [{backend, model, role, tasks}]}`: what kind
    of site this is and which model does what — the shape of a deployment file."""

    keys = ("deployment",)

    def export(self) -> dict[str, Any]:
        setting = SiteSetting.objects.filter(key="deployment").first()
        meta = setting.value if setting else {"type": "edge", "description": ""}
        return {"deployment": {
            **meta,
            "models": [{"backend": r.backend.name, "model": r.model, "role": r.role,
                        "tasks": list(r.tasks)}
                       for r in ModelRole.objects.select_related("backend").order_by(
                           "backend__name", "role", "model")]}}

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]:
        section = data.get("deployment")
        if section in (None, ""):
            return []
        if not isinstance(section, dict):
            raise Invalid({"deployment": ["expected a mapping with type and models"]})
        errors: dict[str, list[str]] = {}
        meta = {"type": section.get("type", "edge"),
                "description": str(section.get("description") or "")}
        if meta["type"] not in DEPLOYMENT_TYPES:
            errors["deployment.type"] = [f"one of {', '.join(DEPLOYMENT_TYPES)}"]
        for key in sorted(set(section) - {"type", "description", "models"}):
            errors[f"deployment.{key}"] = ["unknown field"]
        wanted = []
        for i, item in enumerate(list_of(section.get("models"), "deployment.models")):
            path = f"deployment.models[{i}]"
            if not isinstance(item, dict):
                errors[path] = ["expected {backend, model, role, tasks}"]
                continue
            backend = Backend.objects.filter(name=item.get("backend")).first()
            if backend is None:
                errors[f"{path}.backend"] = [f"no backend named {item.get('backend')!r}"]
            if not str(item.get("model") or "").strip():
                errors[f"{path}.model"] = ["enter the model name"]
            if item.get("role") not in ModelRole.Role.values:
                errors[f"{path}.role"] = ["primary or secondary"]
            tasks = item.get("tasks") or []
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                errors[f"{path}.tasks"] = ["a list of words, e.g. [chat, code]"]
            if backend is not None and not errors.get(f"{path}.role"):
                wanted.append((backend, str(item["model"]).strip(), item["role"],
                               tasks if isinstance(tasks, list) else []))
        if errors:
            raise Invalid(errors)
        changes = []
        current = SiteSetting.objects.filter(key="deployment").first()
        if current is None or current.value != meta:
            SiteSetting.objects.update_or_create(key="deployment", defaults={"value": meta})
            changes.append({"action": "update", "kind": "deployment", "name": meta["type"]})
        before = {(r.backend_id, r.model, r.role, tuple(r.tasks))
                  for r in ModelRole.objects.all()}
        after = {(b.pk, m, role, tuple(t)) for b, m, role, t in wanted}
        if before != after:
            ModelRole.objects.all().delete()
            ModelRole.objects.bulk_create(ModelRole(backend=b, model=m, role=role, tasks=t)
                                          for b, m, role, t in wanted)
            generation.bump()  # the gateway's role aliases (bulk_create sends no signal)
            changes.append({"action": "update", "kind": "model_roles",
                            "name": f"{len(wanted)} models"})
        return changes
