"""Experiments: a dataset version against targets, queued for the monitor (evals.runner),
cancelled and resumed; every change audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction, Outcome
from evals import running
from evals.models import Dataset, Experiment, ExperimentTarget

MAX_TARGETS = 8
MAX_CONCURRENCY = 8
MAX_RUNS = 20_000  # cases × targets


def _whole(value: Any, name: str, low: int, high: int, errors: dict[str, list[str]],
           default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[name] = [f"a whole number from {low} to {high}"]
        return default
    return value


def create_experiment(actor: Actor, user, data: Any) -> Experiment:
    """`{dataset_id, version?, targets, concurrency?, seed?, name?}` → a queued
    experiment. Raises Invalid, every error by field (`targets[1].params.temperature`)."""
    if not isinstance(data, dict):
        raise Invalid({"body": ["an object: {dataset_id, version?, targets, …}"]})
    errors: dict[str, list[str]] = {}
    for key in sorted(set(data) - {"dataset_id", "version", "targets", "concurrency", "seed",
                                   "name"}):
        errors[key] = ["unknown field"]
    pk = data.get("dataset_id")
    dataset = Dataset.objects.filter(pk=pk).first() \
        if isinstance(pk, int) and not isinstance(pk, bool) else None
    version = None
    if dataset is None:
        errors["dataset_id"] = ["no such dataset"]
    else:
        number = _whole(data.get("version"), "version", 1, 10**9, errors, dataset.version)
        version = dataset.versions.filter(number=number).first()
        if version is None and "version" not in errors:
            errors["version"] = [f"{dataset.name} has no version {number}"]
        elif version is not None and not version.cases:
            errors["dataset_id"] = [f"version {number} of {dataset.name} has no cases"]
    concurrency = _whole(data.get("concurrency"), "concurrency", 1, MAX_CONCURRENCY, errors, 2)
    seed = _whole(data.get("seed"), "seed", 0, 2**53, errors, None)
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        errors["name"] = ["text (at most 200 characters)"]
    try:
        targets = running.clean_targets(actor, user, data.get("targets"), most=MAX_TARGETS)
    except Invalid as exc:
        errors.update(exc.errors)
        targets = []
    if version is not None and targets and len(version.cases) * len(targets) > MAX_RUNS:
        errors["targets"] = [f"{len(version.cases)} cases × {len(targets)} targets is more "
                             f"than {MAX_RUNS:,} runs"]
    if errors:
        raise Invalid(errors)
    assert dataset is not None and version is not None
    with transaction.atomic():
        experiment = Experiment.objects.create(
            name=name.strip() or f"{dataset.name} v{version.number}", dataset=dataset,
            version=version, concurrency=concurrency, seed=seed,
            total=len(version.cases) * len(targets), detail="queued",
            created_by=user if getattr(user, "pk", None) else None)
        ExperimentTarget.objects.bulk_create([
            ExperimentTarget(experiment=experiment, position=i, label=t.label, kind=t.kind,
                             agent=t.agent, agent_version=t.agent.version,
                             backend=t.backend or t.agent.backend,
                             model=t.model or t.agent.model, params=t.params)
            for i, t in enumerate(targets)])
        audit.record(AuditAction.EXPERIMENT_STARTED, actor, target=experiment,
                     after={"dataset": dataset.name, "version": version.number,
                            "targets": [t.label for t in targets],
                            "concurrency": concurrency, "seed": seed,
                            "runs": experiment.total})
    return experiment


def may_change(user, experiment: Experiment) -> bool:
    """The one who started it, or an admin."""
    return bool(user.is_authenticated and (experiment.created_by_id == user.pk
                                           or user.effective_role == "admin"))


def cancel(actor: Actor, user, experiment: Experiment) -> Experiment:
    """A queued experiment stops at once; a running one within a second (its monitor
    sees the flag). What was recorded stays; *Resume* runs the rest."""
    if not may_change(user, experiment):
        raise Refused("only the one who started an experiment, or an admin, may cancel it")
    now = timezone.now()
    stopped = Experiment.objects.filter(  # not claimed yet: it ends here
        pk=experiment.pk, state=Experiment.State.QUEUED, owner=None).update(
        state=Experiment.State.CANCELLED, detail="cancelled", finished_at=now,
        cancel_requested=True)
    if not stopped and not Experiment.objects.filter(
            pk=experiment.pk, state__in=Experiment.ACTIVE).update(cancel_requested=True):
        raise Refused(f"the experiment is {experiment.state}: there is nothing to cancel")
    experiment.refresh_from_db()
    audit.record(AuditAction.EXPERIMENT_CANCELLED, actor, target=experiment,
                 after={"done": experiment.done, "total": experiment.total})
    return experiment


def resume(actor: Actor, user, experiment: Experiment) -> Experiment:
    """A cancelled or failed experiment queued again: the cases without a result run."""
    if not may_change(user, experiment):
        raise Refused("only the one who started an experiment, or an admin, may resume it")
    ended = (Experiment.State.CANCELLED, Experiment.State.FAILED)
    if not Experiment.objects.filter(pk=experiment.pk, state__in=ended).update(
            state=Experiment.State.QUEUED, cancel_requested=False, owner=None,
            lease_until=None, error="", detail="queued again", finished_at=None):
        raise Refused(f"the experiment is {experiment.state}: only a cancelled or failed "
                      f"one can be resumed")
    experiment.refresh_from_db()
    audit.record(AuditAction.EXPERIMENT_RESUMED, actor, target=experiment,
                 after={"done": experiment.done, "total": experiment.total})
    return experiment


def delete(actor: Actor, user, experiment: Experiment) -> None:
    if not may_change(user, experiment):
        raise Refused("only the one who started an experiment, or an admin, may delete it")
    if experiment.active:
        raise Refused("cancel the experiment before deleting it")
    pk, label = experiment.pk, experiment.audit_label
    with transaction.atomic():
        experiment.delete()
        audit.record(AuditAction.EXPERIMENT_DELETED, actor, target_type="evals.experiment",
                     target_id=pk, before={"experiment": label})


def record_end(experiment: Experiment) -> None:
    audit.record(AuditAction.EXPERIMENT_FINISHED, Actor.system("monitor"), target=experiment,
                 after={"state": experiment.state, "done": experiment.done,
                        "total": experiment.total},
                 outcome=Outcome.SUCCESS if experiment.state == Experiment.State.SUCCEEDED
                 else Outcome.FAILURE, detail=experiment.error[:300])
