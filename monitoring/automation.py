"""Recommendations that act, where the operator allows it (each round, after the advisor).

Per rule an operator chooses *suggest* (the default) or *apply automatically*
(AutomationPolicy). For every open recommendation of an automatable rule:

- suggest: one AutoAction row saying what it would have done, when and why — the dry
  run, shown on the Recommendations page, so the operator can see what "apply" would do
  before turning it on;
- apply: advisor.apply as the system actor "automation" (the same path as the Apply
  button, audited with the evidence), unless the rule already acted `max_per_hour` times
  in the last hour (held back, recorded once) or the same scope was acted on in the last
  COOLDOWN_S (no stop/start flapping).

Each recommendation gets one attempt; a failed one is tried again after the cooldown.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction
from monitoring import advisor
from monitoring.choices import AutoMode, AutoOutcome, RecState
from monitoring.models import AutoAction, AutomationPolicy, Recommendation

ACTOR = Actor.system("automation")
# the rules whose action Tanglaw can carry out on its own, and what each does
RULES: dict[str, str] = {
    "unload_idle": "Unload idle models (Ollama, Foundry Local, llama-server in router "
                   "mode) or stop the idle managed engine, when memory is tight",
    "engine_failed": "Restart a managed engine that failed",
    "traffic_returned": "Start a managed engine again when traffic returns to it",
}
COOLDOWN_S = 600
DEFAULT_PER_HOUR = 4


def policies() -> dict[str, AutomationPolicy]:
    """Every automatable rule's policy (the default, suggest, where none was saved)."""
    saved = {p.rule: p for p in AutomationPolicy.objects.filter(rule__in=RULES)}
    return {rule: saved.get(rule) or AutomationPolicy(rule=rule, max_per_hour=DEFAULT_PER_HOUR)
            for rule in RULES}


def set_policy(actor: Actor, rule: str, mode: str, max_per_hour: int | None = None
               ) -> AutomationPolicy:
    if rule not in RULES:
        raise Invalid({"rule": [f"one of {', '.join(RULES)}"]})
    if mode not in AutoMode.values:
        raise Invalid({"mode": [f"one of {', '.join(AutoMode.values)}"]})
    if max_per_hour is not None and not 1 <= max_per_hour <= 60:
        raise Invalid({"max_per_hour": ["between 1 and 60"]})
    with transaction.atomic():
        policy = AutomationPolicy.objects.select_for_update().filter(rule=rule).first() \
            or AutomationPolicy(rule=rule, max_per_hour=DEFAULT_PER_HOUR)
        before = {"mode": policy.mode, "max_per_hour": policy.max_per_hour}
        policy.mode = mode
        if max_per_hour is not None:
            policy.max_per_hour = max_per_hour
        policy.updated_by, policy.updated_at = actor.username, timezone.now()
        policy.save()
        after = {"mode": policy.mode, "max_per_hour": policy.max_per_hour}
        if after != before:
            audit.record(AuditAction.AUTOMATION_CHANGED, actor, target_type="automation",
                         target_id=rule, before=before, after=after)
    return policy


def _tried(rec: Recommendation, now) -> bool:
    """This recommendation was already dry-run, done, held back in the last hour, or
    failed within the cooldown."""
    rows = AutoAction.objects.filter(recommendation=rec)
    return rows.filter(outcome__in=(AutoOutcome.WOULD, AutoOutcome.DONE)).exists() \
        or rows.filter(outcome=AutoOutcome.LIMITED, at__gte=now - timedelta(hours=1)).exists() \
        or rows.filter(outcome=AutoOutcome.FAILED,
                       at__gte=now - timedelta(seconds=COOLDOWN_S)).exists()


def run(now=None) -> dict[str, int]:
    now = now or timezone.now()
    counts = {outcome: 0 for outcome in AutoOutcome.values}
    rules = policies()
    for rec in Recommendation.objects.filter(state=RecState.OPEN, rule__in=RULES,
                                             apply__isnull=False).order_by("created_at"):
        if _tried(rec, now):
            continue
        policy = rules[rec.rule]
        row: dict[str, Any] = {"rule": rec.rule, "scope": rec.scope, "recommendation": rec,
                               "description": advisor.describe(rec.apply)[:300],
                               "reason": rec.title[:300], "evidence": rec.evidence, "at": now}
        outcome, detail = _act(policy, rec, now)
        AutoAction.objects.create(outcome=outcome, detail=detail[:500], **row)
        counts[outcome] += 1
    return {k: v for k, v in counts.items() if v}


def _act(policy: AutomationPolicy, rec: Recommendation, now) -> tuple[str, str]:
    """Do what the policy says with the recommendation: (outcome, detail)."""
    if policy.mode == AutoMode.SUGGEST:
        return AutoOutcome.WOULD, ""
    if _held_back(policy, rec, now):
        return AutoOutcome.LIMITED, (f"at most {policy.max_per_hour} an hour, and one per "
                                     f"scope every {COOLDOWN_S // 60} minutes")
    try:
        return AutoOutcome.DONE, advisor.apply(ACTOR, rec)
    except Refused as exc:
        return AutoOutcome.FAILED, str(exc)


def _held_back(policy: AutomationPolicy, rec: Recommendation, now) -> bool:
    acted = AutoAction.objects.filter(outcome=AutoOutcome.DONE)
    return acted.filter(rule=policy.rule, at__gte=now - timedelta(hours=1)).count() \
        >= policy.max_per_hour or acted.filter(
            scope=rec.scope, at__gte=now - timedelta(seconds=COOLDOWN_S)).exists()
