"""The `engines:` section of the site configuration: managed engines and whether each
should run (applied after the plans, which an engine may name)."""

from __future__ import annotations

from typing import Any

from console.actions import Invalid, Refused
from console.audit import Actor
from console.models import DeploymentPlan
from console.siteconfig import list_of, named_items, prefixed
from engines import actions
from engines.choices import Desired
from engines.models import ManagedEngine

FIELDS = ["kind", "binary", "model_path", "host", "port", "context", "threads", "extra_args",
          "env", "auto_restart", "ready_timeout_s"]


class EnginesSection:
    keys = ("engines",)

    def export(self) -> dict[str, Any]:
        return {"engines": [
            {"name": e.name, "kind": e.kind, "binary": e.command, "model_path": e.model_path,
             "host": e.host, "port": e.port, "context": e.context, "threads": e.threads,
             "extra_args": list(e.extra_args), "env": dict(e.env),
             "auto_restart": e.auto_restart, "ready_timeout_s": e.ready_timeout_s,
             "plan": e.plan.name if e.plan else None, "desired": e.desired}
            for e in ManagedEngine.objects.select_related("plan").order_by("name")]}

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]:
        items = list_of(data.get("engines"), "engines")
        errors: dict[str, list[str]] = {}
        changes: list[dict[str, str]] = []
        seen: set[str] = set()
        for path, name, item in named_items(items, "engines", "engine",
                                            {"plan", "desired", *FIELDS}, errors):
            seen.add(name)
            desired = item.get("desired", Desired.STOPPED)
            if desired not in Desired.values:
                errors[f"{path}.desired"] = [f"one of {', '.join(Desired.values)}"]
                continue
            values: dict[str, Any] = {"name": name, **{f: item[f] for f in FIELDS if f in item}}
            if "binary" in values:
                values["command"] = values.pop("binary")
            if item.get("plan"):
                plan = DeploymentPlan.objects.filter(name=item["plan"]).first()
                if plan is None:
                    errors[f"{path}.plan"] = [f"no plan named {item['plan']!r}"]
                    continue
                values["plan"] = plan.pk
            try:
                change = self._apply_one(actor, name, values, desired)
            except Invalid as exc:
                errors.update(prefixed(Invalid({actions.PUBLIC_NAMES.get(k, k): v
                                                for k, v in exc.errors.items()}), path))
                continue
            changes.append({"action": change, "kind": "engine", "name": name})
        if prune:
            for engine in ManagedEngine.objects.exclude(name__in=seen):
                try:
                    actions.delete_engine(actor, engine)
                    changes.append({"action": "delete", "kind": "engine", "name": engine.name})
                except Refused:
                    errors[f"engines.{engine.name}"] = [
                        "not in the file, but it is running: stop it first"]
        if errors:
            raise Invalid(errors)
        return changes

    @staticmethod
    def _apply_one(actor: Actor, name: str, values: dict[str, Any], desired: str) -> str:
        existing = ManagedEngine.objects.filter(name=name).first()
        if existing is None:
            engine = actions.create_engine(actor, values)
            change = "create"
        else:
            before = existing.audit_snapshot()
            engine = actions.update_engine(actor, existing, values)
            change = "update" if engine.audit_snapshot() != before else "unchanged"
        if desired != engine.desired:
            (actions.start_engine if desired == Desired.RUNNING else actions.stop_engine)(
                actor, engine)
            change = "create" if change == "create" else "update"
        return change
