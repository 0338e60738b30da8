"""Monitoring's section of the site configuration: the alert rules."""

from __future__ import annotations

from typing import Any

from console.actions import Invalid
from console.audit import Actor
from console.siteconfig import list_of, prefixed
from monitoring import alerts
from monitoring.models import AlertRule


class AlertRulesSection:
    keys = ("alert_rules",)

    def export(self) -> dict[str, Any]:
        return {"alert_rules": [alerts.rule_state(r) for r in AlertRule.objects.order_by("name")]}

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]:
        rules = list_of(data.get("alert_rules"), "alert_rules")
        errors: dict[str, list[str]] = {}
        changes: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, item in enumerate(rules):
            path = f"alert_rules[{i}]"
            if not isinstance(item, dict) or not item.get("name"):
                errors[f"{path}.name"] = ["every rule needs a name"]
                continue
            name = str(item["name"])
            seen.add(name)
            for key in sorted(set(item) - set(alerts.RULE_FIELDS)):
                errors[f"{path}.{key}"] = ["unknown field"]
            rule = AlertRule.objects.filter(name=name).first()
            if rule is not None and all(alerts.rule_state(rule).get(k) == v
                                        for k, v in item.items()):
                changes.append({"action": "unchanged", "kind": "alert_rule", "name": name})
                continue
            try:
                alerts.save_rule(actor, item, rule)
            except Invalid as exc:
                errors.update(prefixed(exc, path))
                continue
            changes.append({"action": "update" if rule else "create", "kind": "alert_rule",
                            "name": name})
        if prune:
            for rule in AlertRule.objects.exclude(name__in=seen):
                alerts.delete_rule(actor, rule)
                changes.append({"action": "delete", "kind": "alert_rule", "name": rule.name})
        if errors:
            raise Invalid(errors)
        return changes
