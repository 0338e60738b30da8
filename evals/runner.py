"""Experiments run by the monitor, as model pulls are (console.jobs): claimed with a
conditional UPDATE, held with a lease renewed every few seconds, every write
conditional on still owning it. An experiment whose monitor died fails with
OWNER_DIED and can be resumed; a monitor that is shut down puts its experiments back
in the queue. Cancelling stops the turns under way (their partial replies are kept in
their conversations, not as results), so a resumed experiment runs exactly the cases
that have no result yet.

Each case on each target is one turn of the turn service (evals.running.ask), at most
`concurrency` at once per experiment, cases taken in order with the targets
interleaved so that each target meets the same conditions. The checks are decided as
each reply ends, the judge asked, and the CaseResult written at once: the progress is
the count of results.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, close_old_connections
from django.db.models import F, Q
from django.utils import timezone

from console.audit import Actor
from console.jobs import ClaimRunner
from evals import checks, experiments, running
from evals.models import CaseResult, Experiment, ExperimentTarget

log = logging.getLogger("tanglaw.evals")
LEASE_S = 30.0
RENEW_S = 5.0
WATCH_S = 0.5  # how often a running experiment looks for a cancel
POLL_S = 1.0
MAX_RUNNING = 2  # experiments one monitor runs at once
OWNER_DIED = "the monitor running this experiment stopped; resume it to run the rest"


class LostLease(Exception):
    """Another monitor failed this experiment after our lease ran out: write nothing."""


def _lease() -> datetime:
    return timezone.now() + timedelta(seconds=LEASE_S)


def claim(worker: str, limit: int = MAX_RUNNING) -> list[int]:
    queued = Experiment.objects.filter(state=Experiment.State.QUEUED, owner=None)
    mine = []
    for pk in queued.order_by("created_at").values_list("pk", flat=True)[:limit]:
        if Experiment.objects.filter(pk=pk, state=Experiment.State.QUEUED, owner=None).update(
                owner=worker, lease_until=_lease()) == 1:
            mine.append(pk)
    return mine


def expire(now: datetime | None = None) -> int:
    """Fail the experiments whose monitor stopped renewing its lease."""
    now = now or timezone.now()
    orphaned = Q(state__in=Experiment.ACTIVE, owner__isnull=False, lease_until__lt=now)
    failed = 0
    for pk in Experiment.objects.filter(orphaned).values_list("pk", flat=True):
        if Experiment.objects.filter(orphaned, pk=pk).update(
                state=Experiment.State.FAILED, error=OWNER_DIED, detail="stopped",
                finished_at=now, lease_until=None) == 1:
            experiment = Experiment.objects.select_related("dataset").get(pk=pk)
            log.warning("experiment %s: %s (owner %s)", pk, OWNER_DIED, experiment.owner)
            experiments.record_end(experiment)
            failed += 1
    return failed


def _owned(pk: int, worker: str):
    return Experiment.objects.filter(pk=pk, owner=worker, state__in=Experiment.ACTIVE)


def _renew(pk: int, worker: str) -> bool:
    """Renew the lease; True if a cancel was asked for."""
    if not _owned(pk, worker).update(lease_until=_lease()):
        raise LostLease(pk)
    return Experiment.objects.filter(pk=pk, cancel_requested=True).exists()


def _update(pk: int, worker: str, **fields: Any) -> None:
    if not _owned(pk, worker).update(lease_until=_lease(), **fields):
        raise LostLease(pk)


def _record(pk: int, worker: str, result: CaseResult) -> None:
    """A result and the progress it makes, only while the experiment is ours."""
    if not _owned(pk, worker).exists():
        raise LostLease(pk)
    try:
        result.save()
    except IntegrityError:  # already recorded (a resume raced a slow write): keep the first
        return
    _update(pk, worker, done=F("done") + 1, detail=f"case {result.case_id}")


def _release(pk: int, worker: str) -> bool:
    return bool(_owned(pk, worker).update(owner=None, lease_until=None,
                                          state=Experiment.State.QUEUED,
                                          detail="queued: the monitor running it was stopped"))


def _load(pk: int) -> tuple[Experiment, list[ExperimentTarget], set[tuple[int, str]], Any]:
    experiment = Experiment.objects.select_related("version", "dataset", "created_by").get(
        pk=pk)
    targets = list(experiment.targets.select_related("agent__backend"))
    done = set(experiment.results.values_list("target_id", "case_id"))
    return experiment, targets, done, experiment.created_by


def _finish(pk: int, worker: str, state: str, error: str = "") -> Experiment | None:
    done = CaseResult.objects.filter(experiment_id=pk).count()
    if not _owned(pk, worker).update(state=state, error=error[:2000], done=done,
                                     detail=state, finished_at=timezone.now(),
                                     owner=None, lease_until=None):
        return None
    return Experiment.objects.select_related("dataset").get(pk=pk)


async def run(pk: int, worker: str, stopping: threading.Event | None = None) -> None:
    """Run a claimed experiment until every case has a result on every target, it is
    cancelled, or this monitor stops (then it goes back in the queue)."""
    await sync_to_async(close_old_connections)()
    try:
        state, error = await _run(pk, worker, stopping)
        ended = await sync_to_async(_finish)(pk, worker, state, error) \
            if state != "released" else None
        if ended is not None:
            await sync_to_async(experiments.record_end)(ended)
        elif state == "released":
            await sync_to_async(_release)(pk, worker)
    except LostLease:
        log.warning("experiment %s: lost its lease; another monitor failed it", pk)
    finally:
        await sync_to_async(close_old_connections)()


async def _run(pk: int, worker: str, stopping: threading.Event | None) -> tuple[str, str]:
    experiment, targets, done, user = await sync_to_async(_load)(pk)
    if experiment.cancel_requested:
        return Experiment.State.CANCELLED, ""
    if user is None or not user.is_active:
        return Experiment.State.FAILED, "the user who started it no longer exists or is inactive"
    await sync_to_async(_update)(pk, worker, state=Experiment.State.RUNNING,
                                 started_at=experiment.started_at or timezone.now(),
                                 detail="starting")
    for target in targets:  # what each target runs on, once (a resume keeps the first)
        if not target.environment and target.agent is not None:
            target.environment = await running.environment(target.agent)
            await sync_to_async(ExperimentTarget.objects.filter(pk=target.pk).update)(
                environment=target.environment)
    cases = experiment.version.cases
    base_checks = experiment.version.checks
    work = deque((i, case, target) for i, case in enumerate(cases) for target in targets
                 if (target.pk, case["id"]) not in done)
    actor = Actor(user_id=user.pk, username=user.get_username(), role=user.effective_role,
                  correlation_id=f"experiment-{pk}")

    async def worker_loop() -> None:
        while work:
            position, case, target = work.popleft()
            result = await _one(experiment, actor, user, position, case, target, base_checks)
            await sync_to_async(_record)(pk, worker, result)

    workers = [asyncio.create_task(worker_loop())
               for _ in range(min(experiment.concurrency, len(work)) or 0)]
    renewed = asyncio.get_running_loop().time()
    outcome: str = Experiment.State.SUCCEEDED
    try:
        while workers and not all(w.done() for w in workers):
            await asyncio.wait(workers, timeout=WATCH_S)
            if all(w.done() for w in workers):
                break
            if stopping is not None and stopping.is_set():
                outcome = "released"
                break
            now = asyncio.get_running_loop().time()
            if now - renewed >= RENEW_S:
                renewed = now
                cancelled = await sync_to_async(_renew)(pk, worker)
            else:
                cancelled = await sync_to_async(
                    Experiment.objects.filter(pk=pk, cancel_requested=True).exists)()
            if cancelled:
                outcome = Experiment.State.CANCELLED
                break
    finally:
        for w in workers:
            w.cancel()  # each turn stops and is saved as its conversation (no result)
        if workers:
            await asyncio.wait(workers)
    for w in workers:
        if not w.cancelled() and (failure := w.exception()) is not None:
            if isinstance(failure, LostLease):
                raise failure
            log.error("experiment %s failed", pk, exc_info=failure)
            return Experiment.State.FAILED, f"{type(failure).__name__}: {failure}"
    return outcome, ""


async def _one(experiment: Experiment, actor: Actor, user: Any, position: int,
               case: dict[str, Any], target: ExperimentTarget,
               base_checks: list[dict[str, Any]]) -> CaseResult:
    title = f"{experiment} · case {case['id']} · {target.label}"[:60]
    result = CaseResult(experiment_id=experiment.pk, target=target, case_id=case["id"],
                        position=position)
    if target.agent_id is None:
        reply, session = checks.Reply(error="the target's agent was deleted"), None
    else:
        reply, session = await running.ask(
            actor, user, target.agent_id, case["messages"], params=target.params,
            tools=case.get("tools"), transport="experiment", title=title,
            seed=experiment.seed)
    specs = [*base_checks, *case.get("checks", [])]
    outcomes = [{"kind": o.kind, "passed": o.passed, "detail": o.detail}
                for o in checks.run_all(specs, reply)]
    for spec in specs:
        if spec["kind"] == "judge":
            verdict = await running.judge(actor, user, spec, case, reply,
                                          title=f"Judge · {title}"[:60], seed=experiment.seed)
            result.judge = verdict
            outcomes.append({"kind": "judge", "passed": verdict["passed"], "detail":
                             verdict["error"] or f"score {verdict['score']:g}: "
                                                 f"{verdict['reason']}"[:300]})
    result.checks = outcomes
    result.passed = not reply.error and all(o["passed"] for o in outcomes)
    result.text, result.tool_calls, result.error = reply.text, reply.tool_calls, reply.error
    result.ttft_ms, result.total_ms = reply.ttft_ms, reply.total_ms
    if session is not None:
        state = session.state
        result.tokens_in, result.tokens_out = state.tokens_in, state.tokens_out
        result.tokens_per_s, result.model = state.tokens_per_s, state.model
        result.conversation_id = session.conversation.pk
        result.trace_id = state.trace.trace_id if state.trace.enabled else ""
    return result


def step(worker: str, limit: int = MAX_RUNNING) -> dict[str, int]:
    """One pass run to the end: fail orphaned experiments, claim queued ones, run them."""
    expired = expire()
    mine = claim(worker, limit)

    async def run_all() -> None:
        await asyncio.gather(*(run(pk, worker) for pk in mine))

    if mine:
        asyncio.run(run_all())
    return {"expired": expired, "ran": len(mine)}


class ExperimentRunner(ClaimRunner):
    """The monitor's experiments (console.jobs.ClaimRunner); stopped with the monitor,
    its experiments go back in the queue."""

    name = "experiments"
    max_running = MAX_RUNNING
    drain_s = 15.0

    def expire(self) -> int:
        return expire()

    def claim(self, worker: str, limit: int) -> list[int]:
        return claim(worker, limit)

    async def run(self, pk: int, worker: str, stopping: threading.Event) -> None:
        await run(pk, worker, stopping)
