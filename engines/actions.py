"""Create, change and delete managed engines; ask for them to start, stop or restart.

These only write what the operator wants (`desired`, `generation`); the supervisor in the
monitor owns the processes and does it, recording what happened (engines.supervisor).
Every action writes its audit event.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused, form_errors
from console.audit import Actor
from console.choices import AuditAction
from console.models import DeploymentPlan
from engines import commands
from engines.choices import Desired, EngineKind, EngineState
from engines.forms import EngineForm
from engines.models import EngineEvent, ManagedEngine

FIELDS = ["name", "kind", "command", "model_path", "host", "port", "context", "threads",
          "extra_args", "env", "auto_restart", "ready_timeout_s", "plan"]


# the form's field names as the API and the site config spell them
PUBLIC_NAMES = {"command": "binary"}
DEFAULTS = {"host": "127.0.0.1", "ready_timeout_s": 300, "auto_restart": True,
            "extra_args": [], "env": {}}


def _validated(data: dict[str, Any], instance: ManagedEngine | None) -> EngineForm:
    form = EngineForm(data=data, instance=instance)
    if not form.is_valid():
        raise Invalid(form_errors(form), form)
    return form


def from_plan(plan: DeploymentPlan) -> dict[str, Any]:
    """A saved vLLM plan as the fields of an engine (the operator may still change them)."""
    try:
        model, context, extra = commands.from_plan_command(plan.command)
    except ValueError as exc:
        raise Invalid({"plan": [f"plan {plan.name!r}: {exc}"]}) from None
    return {"kind": EngineKind.VLLM, "model_path": model, "context": context,
            "extra_args": extra, "plan": plan.pk, "port": 8000}


def create_engine(actor: Actor, data: dict[str, Any], *, start: bool = False
                  ) -> ManagedEngine:
    data = {**DEFAULTS, **{k: v for k, v in data.items() if v is not None}}
    if data.get("plan"):
        plan = DeploymentPlan.objects.filter(pk=data["plan"]).first()
        if plan is None:
            raise Invalid({"plan": ["no such plan"]})
        if not data.get("model_path"):  # the plan's model and flags, unless given
            data = {**from_plan(plan),
                    **{k: v for k, v in data.items() if v not in (None, "", [])}}
    form = _validated(data, None)
    with transaction.atomic():
        engine = form.save(commit=False)
        engine.created_by = actor.username
        engine.save()
        audit.record(AuditAction.ENGINE_CREATED, actor, target=engine,
                     after=engine.audit_snapshot())
    if start:
        engine = start_engine(actor, engine)
    return engine


def update_engine(actor: Actor, engine: ManagedEngine, changes: dict[str, Any]
                  ) -> ManagedEngine:
    """A partial change; a running engine takes it at its next start (`changes_pending`)."""
    before = engine.audit_snapshot()
    data = {**before, **{k: v for k, v in changes.items() if v is not None}}
    form = _validated(data, engine)
    with transaction.atomic():
        engine = form.save()
        after = engine.audit_snapshot()
        if after != before:
            audit.record(AuditAction.ENGINE_UPDATED, actor, target=engine, before=before,
                         after=after)
    return engine


def delete_engine(actor: Actor, engine: ManagedEngine) -> None:
    engine.refresh_from_db()
    if engine.desired == Desired.RUNNING or engine.active:
        raise Refused(f"{engine.name} is {engine.get_state_display().lower()}: stop it first.")
    with transaction.atomic():
        snapshot = engine.audit_snapshot()
        audit.record(AuditAction.ENGINE_DELETED, actor, target=engine, before=snapshot,
                     detail="its backend stays; delete it on the Backends page")
        engine.delete()


def _event(engine: ManagedEngine, state: str, detail: str) -> None:
    EngineEvent.objects.create(engine=engine, state=state, detail=detail[:500])


AUDITED = {"start": AuditAction.ENGINE_STARTED, "stop": AuditAction.ENGINE_STOPPED,
           "restart": AuditAction.ENGINE_RESTARTED}


def start_engine(actor: Actor, engine: ManagedEngine) -> ManagedEngine:
    return _ask(actor, engine, "start")


def stop_engine(actor: Actor, engine: ManagedEngine) -> ManagedEngine:
    return _ask(actor, engine, "stop")


def restart_engine(actor: Actor, engine: ManagedEngine) -> ManagedEngine:
    """Stop the process (if any) and start a new one, with the engine's current settings."""
    return _ask(actor, engine, "restart")


def _ask(actor: Actor, engine: ManagedEngine, action: str) -> ManagedEngine:
    """Write what the operator wants; the supervisor does it. Asking for what is already
    so changes and records nothing."""
    running = action != "stop"
    if running and commands.command_for(engine.command) is None:
        raise Invalid({"command": ["This command is no longer allowed on this machine "
                                   "(TANGLAW_ENGINE_COMMANDS); choose another."]})
    with transaction.atomic():
        engine = ManagedEngine.objects.select_for_update().get(pk=engine.pk)
        if action == "start" and engine.desired == Desired.RUNNING \
                and engine.state not in (EngineState.FAILED, EngineState.STOPPED):
            return engine
        if action == "stop" and engine.desired == Desired.STOPPED and not engine.active:
            return engine
        fields: dict[str, Any] = {"desired": Desired.RUNNING if running else Desired.STOPPED,
                                  "next_start_at": None, "updated_at": timezone.now()}
        if action == "restart":
            fields["generation"] = engine.generation + 1
        if running and not engine.active:
            fields.update(state=EngineState.QUEUED,
                          state_reason="waiting for a monitor to start it")
        elif not running and not engine.worker:  # nobody runs it: stopped now
            fields.update(state=EngineState.STOPPED, state_reason="stopped before it started",
                          stopped_at=timezone.now())
        ManagedEngine.objects.filter(pk=engine.pk).update(**fields)
        _event(engine, EngineState.QUEUED if running else EngineState.STOPPING,
               f"{action} asked by {actor.username or 'system'}")
        audit.record(AUDITED[action], actor, target=engine,
                     after={"state": engine.state, "pid": engine.pid})
    engine.refresh_from_db()
    return engine
