"""Regression sets: an agent names a dataset its changes are checked on. Saving a new
version offers to run it (an experiment with the agent as its one target); the agent's
page and each version's page show that version's results beside the version before,
and what regressed between them (stats.diff). The link lives here, so agents knows
nothing of evals: its pages load the panel from evals by URL name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction
from evals import experiments, stats
from evals.models import Dataset, Experiment, ExperimentTarget, RegressionSet

SHOWN_VERSIONS = 10  # the newest versions that ran, on the panel


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def agent_of(user: Any, agent_id: Any) -> Any:
    from agents.models import Agent

    agent = Agent.objects.for_user(user).filter(pk=_number(agent_id)).first() \
        if _number(agent_id) is not None else None
    if agent is None:
        raise Invalid({"agent_id": ["no such agent of yours"]})
    return agent


def regression_set(agent: Any) -> RegressionSet | None:
    return RegressionSet.objects.select_related("dataset").filter(agent=agent).first()


def choose(actor: Actor, agent: Any, dataset_id: Any) -> RegressionSet | None:
    """Name the agent's regression set (`dataset_id`), or none (`None`). Audited."""
    before = regression_set(agent)
    if dataset_id is None:
        if before is None:
            return None
        with transaction.atomic():
            before.delete()
            audit.record(AuditAction.AGENT_REGRESSION_SET, actor, target=agent,
                         before={"dataset": before.dataset.name}, after={"dataset": None})
        return None
    number = _number(dataset_id)
    dataset = Dataset.objects.filter(pk=number).first() if number is not None else None
    if dataset is None:
        raise Invalid({"dataset_id": ["no such dataset"]})
    if before is not None and before.dataset_id == dataset.pk:
        return before
    with transaction.atomic():
        chosen, _ = RegressionSet.objects.update_or_create(agent=agent, defaults={
            "dataset": dataset, "set_by": actor.username, "updated_at": timezone.now()})
        audit.record(AuditAction.AGENT_REGRESSION_SET, actor, target=agent,
                     before={"dataset": before.dataset.name if before else None},
                     after={"dataset": dataset.name, "dataset_id": dataset.pk})
    return chosen


def run(actor: Actor, user: Any, agent: Any) -> Experiment:
    """The regression set's current version on the agent as it is now: an experiment
    (queued for a monitor; audited as experiment.started)."""
    chosen = regression_set(agent)
    if chosen is None:
        raise Refused(f"{agent.name} has no regression set: choose a dataset first")
    if not agent.enabled:
        raise Refused(f"the agent {agent.name} is disabled")
    running = ExperimentTarget.objects.filter(
        agent=agent, agent_version=agent.version, experiment__dataset=chosen.dataset,
        experiment__state__in=Experiment.ACTIVE).select_related("experiment").first()
    if running is not None:
        raise Refused(f"version {agent.version} is already being checked: "
                      f"{running.experiment}")
    return experiments.create_experiment(actor, user, {
        "dataset_id": chosen.dataset_id, "targets": [{"agent_id": agent.pk}],
        "name": f"{agent.name} v{agent.version} on {chosen.dataset.name}"[:200]})


@dataclass
class VersionRun:
    version: int
    experiment: Experiment
    stats: stats.TargetStats

    def as_dict(self) -> dict[str, Any]:
        return {"agent_version": self.version, "experiment_id": self.experiment.pk,
                "state": self.experiment.state, "dataset_version": self.experiment.version
                .number, "created_at": self.experiment.created_at, **self.stats.as_dict()}


def runs_by_version(agent: Any, dataset: Dataset) -> dict[int, VersionRun]:
    """Each agent version's newest run on the dataset (any state, any dataset version)."""
    found: dict[int, ExperimentTarget] = {}
    for target in (ExperimentTarget.objects.filter(agent=agent, experiment__dataset=dataset)
                   .exclude(agent_version=None).select_related("experiment__version")
                   .order_by("-experiment__created_at")):
        if target.agent_version is not None:
            found.setdefault(target.agent_version, target)
    newest = sorted(found, reverse=True)[:SHOWN_VERSIONS]
    results: dict[int, list] = {}
    for result in [r for v in newest for r in found[v].results.all()]:
        results.setdefault(result.target_id, []).append(result)
    return {v: VersionRun(v, found[v].experiment, stats.experiment_stats(
                [found[v]], results.get(found[v].pk, []))[0]) for v in newest}


def summary(agent: Any, version: int | None = None) -> dict[str, Any]:
    """The panel: the regression set, this version's run and the one before it, what
    regressed or was fixed between them, and the newest versions' runs."""
    chosen = regression_set(agent)
    version = version or agent.version
    out: dict[str, Any] = {"regression_set": chosen, "version": version, "this": None,
                           "previous": None, "diff": None, "runs": []}
    if chosen is None:
        return out
    runs = runs_by_version(agent, chosen.dataset)
    out["runs"] = [runs[v] for v in sorted(runs, reverse=True)]
    out["this"] = runs.get(version)
    earlier = [v for v in runs if v < version]
    out["previous"] = runs[max(earlier)] if earlier else None
    this, previous = out["this"], out["previous"]
    if this is not None and previous is not None and not this.experiment.active \
            and not previous.experiment.active:
        out["diff"] = stats.diff(previous.stats.target, this.stats.target)
    return out


def summary_dict(agent: Any, version: int | None = None) -> dict[str, Any]:
    found = summary(agent, version)
    chosen, diff = found["regression_set"], found["diff"]
    return {"agent_id": agent.pk, "agent_version": found["version"],
            "regression_set": None if chosen is None else {
                "dataset_id": chosen.dataset_id, "name": chosen.dataset.name,
                "dataset_version": chosen.dataset.version, "set_by": chosen.set_by},
            "this": found["this"].as_dict() if found["this"] else None,
            "previous": found["previous"].as_dict() if found["previous"] else None,
            "diff": diff.as_dict() if diff is not None else None,
            "runs": [r.as_dict() for r in found["runs"]]}
