"""Model pulls, run by the monitor (`manage.py monitor`), never by the web process.

A request queues a Job (console.actions.models.start_pull). A monitor claims it
with a conditional UPDATE (no owner → its name) and then holds a lease
(`lease_until`) that it renews every few seconds while it streams the engine's
progress. Every write a runner makes is conditional on still owning the job, so
one that lost its lease (paused, cut off from the database) stops instead of
overwriting. When an owner dies its lease runs out, and whichever monitor
notices fails the job with OWNER_DIED; the operator can retry it. A monitor
that is shut down puts its pulls back in the queue for the next one.

Progress goes to the `jobs` channel-layer group about twice a second. A layer
that spans processes (Redis) brings it to every web worker; with the in-memory
layer console.consumers relays it from the rows instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Protocol

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from console import audit
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.choices import AuditAction, Outcome
from console.models import Job

log = logging.getLogger("tanglaw.jobs")
GROUP = "jobs"
LEASE_S = 30.0  # an owner that has not renewed for this long is taken for dead
RENEW_S = 5.0
SAVE_EVERY_S = 0.5
POLL_S = 1.0
MAX_RUNNING = 4  # pulls one monitor runs at once
OWNER_DIED = "the worker running this pull stopped"
PROGRESS_FIELDS = ["state", "percent", "completed_bytes", "total_bytes", "speed_bps", "eta_s",
                   "detail", "layers", "error", "started_at", "finished_at"]


class Stopping(Protocol):
    def is_set(self) -> bool: ...


class LostLease(Exception):
    """The job is no longer ours (failed after our lease ran out): stop, write nothing."""


def _lease() -> datetime:
    return timezone.now() + timedelta(seconds=LEASE_S)


def publish(job: Job) -> None:
    """Send a job's frame to /ws/jobs/ viewers, from sync code."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(GROUP, {"type": "job.update", "frame": job.frame()})


def record_end(job: Job, actor: Actor | None = None) -> None:
    action = {Job.State.SUCCEEDED: AuditAction.MODEL_PULLED,
              Job.State.CANCELLED: AuditAction.MODEL_PULL_CANCELLED}.get(
        Job.State(job.state), AuditAction.MODEL_PULL_FAILED)
    audit.record(action, actor or Actor.system("monitor"), target=job.backend,
                 after={"model": job.model, "job": job.pk, "bytes": job.total_bytes,
                        "requested_by": job.created_by},
                 outcome=Outcome.SUCCESS if job.state == Job.State.SUCCEEDED
                 else Outcome.FAILURE, detail=job.error)


# -- claiming and leases ----------------------------------------------------------------

def claim(worker: str, limit: int = MAX_RUNNING) -> list[int]:
    """Queued jobs this worker now owns, oldest first; each taken by one worker only."""
    queued = Job.objects.filter(state=Job.State.QUEUED, owner=None).order_by("created_at")
    mine = []
    for pk in queued.values_list("pk", flat=True)[:limit]:
        if Job.objects.filter(pk=pk, state=Job.State.QUEUED, owner=None).update(
                owner=worker, lease_until=_lease()) == 1:
            mine.append(pk)
    return mine


def expire(now: datetime | None = None) -> int:
    """Fail the jobs whose owner stopped renewing its lease, and running jobs with no owner
    at all (a web process's threads, before pulls moved here). Returns how many."""
    now = now or timezone.now()
    orphaned = (Q(state__in=Job.ACTIVE, owner__isnull=False, lease_until__lt=now)
                | Q(state=Job.State.RUNNING, owner__isnull=True))
    failed = 0
    for pk in Job.objects.filter(orphaned).values_list("pk", flat=True):
        if Job.objects.filter(orphaned, pk=pk).update(
                state=Job.State.FAILED, error=OWNER_DIED, detail="stopped", finished_at=now,
                speed_bps=None, eta_s=None, lease_until=None) != 1:
            continue  # another monitor got there first
        job = Job.objects.select_related("backend").get(pk=pk)
        log.warning("pull %s of %s: %s (owner %s)", pk, job.model, OWNER_DIED, job.owner)
        record_end(job)
        publish(job)
        failed += 1
    return failed


def _owned(job: Job, worker: str):
    return Job.objects.filter(pk=job.pk, owner=worker, state__in=Job.ACTIVE)


def _save(job: Job, worker: str) -> None:
    # never `cancel_requested`: a cancel set meanwhile by a request must survive
    if not _owned(job, worker).update(lease_until=_lease(),
                                      **{f: getattr(job, f) for f in PROGRESS_FIELDS}):
        raise LostLease(job.pk)


def _renew(job: Job, worker: str) -> bool:
    """Renew the lease; True if a cancel was asked for. LostLease if it is not ours."""
    if not _owned(job, worker).update(lease_until=_lease()):
        raise LostLease(job.pk)
    return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


def _release(job: Job, worker: str) -> bool:
    """Back to the queue (this monitor is shutting down); True if it was ours."""
    job.state, job.detail, job.speed_bps, job.eta_s = (
        Job.State.QUEUED, "queued: the monitor running it was stopped", None, None)
    return bool(_owned(job, worker).update(owner=None, lease_until=None, state=job.state,
                                           detail=job.detail, speed_bps=None, eta_s=None))


# -- running ----------------------------------------------------------------------------

async def _publish(job: Job, worker: str) -> None:
    await sync_to_async(_save)(job, worker)
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(GROUP, {"type": "job.update", "frame": job.frame()})


async def run(job_id: int, worker: str, stopping: Stopping | None = None) -> None:
    """Run a claimed pull to its end (or until this monitor stops), then record how it
    ended. Safe to call for a job that was cancelled or failed meanwhile."""
    await sync_to_async(close_old_connections)()
    job = await sync_to_async(Job.objects.select_related("backend").get)(pk=job_id)
    try:
        ended = await _run(job, worker, stopping)
    except LostLease:
        log.warning("pull %s: lost its lease; another monitor failed it", job_id)
        return
    finally:
        await sync_to_async(close_old_connections)()
    if ended:
        await sync_to_async(record_end)(job)


async def _run(job: Job, worker: str, stopping: Stopping | None) -> bool:
    """The pull itself; False when it was put back in the queue instead of ending."""
    if job.cancel_requested:  # cancelled between the claim and now: never start it
        job.state, job.detail, job.finished_at = (Job.State.CANCELLED, "cancelled",
                                                  timezone.now())
        await _publish(job, worker)
        return True
    job.state, job.started_at, job.detail = Job.State.RUNNING, timezone.now(), "starting"
    await _publish(job, worker)
    consumer = asyncio.create_task(_consume(job, worker))
    renewed, released, cancelled = time.monotonic(), False, False
    try:
        while not consumer.done():  # a cancel must work even while the engine sends nothing
            await asyncio.wait({consumer}, timeout=SAVE_EVERY_S)
            if consumer.done():
                break
            if stopping is not None and stopping.is_set():
                released = True
            elif time.monotonic() - renewed >= RENEW_S:
                renewed = time.monotonic()
                cancelled = await sync_to_async(_renew)(job, worker)
            else:
                cancelled = await sync_to_async(
                    Job.objects.filter(pk=job.pk, cancel_requested=True).exists)()
            if released or cancelled:
                consumer.cancel()
        await consumer
    except asyncio.CancelledError:
        if released:
            if await sync_to_async(_release)(job, worker):
                await _announce(job)
            return False
        if not cancelled:
            raise  # this task itself was cancelled: the lease runs out and says so
        job.state, job.detail = Job.State.CANCELLED, "cancelled"
    except LostLease:
        raise
    except BackendError as exc:
        job.state, job.error = Job.State.FAILED, exc.message
    except Exception as exc:  # noqa: BLE001 - a job must end in a stored state
        log.exception("pull %s failed", job.pk)
        job.state, job.error = Job.State.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        if job.detail == "success":
            job.state = Job.State.SUCCEEDED
        else:
            job.state = Job.State.FAILED
            job.error = "the engine ended the pull without saying it succeeded"
    finally:
        if not consumer.done():  # lost the lease, or cancelled from outside
            consumer.cancel()
    job.finished_at = timezone.now()
    if job.state != Job.State.SUCCEEDED:
        job.speed_bps = job.eta_s = None
    else:
        job.eta_s = 0
    await _publish(job, worker)
    return True


async def _announce(job: Job) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(GROUP, {"type": "job.update", "frame": job.frame()})


async def _consume(job: Job, worker: str) -> None:
    """Read the engine's progress into the job; publish about twice a second."""
    adapter = adapter_for(job.backend)
    layers: dict[str, dict[str, int]] = {}
    last_save = 0.0
    window: list[tuple[float, int]] = []  # (time, completed bytes) for speed and ETA
    stream = adapter.pull(job.model)
    try:
        async for event in stream:
            status = str(event.get("status", ""))
            digest = event.get("digest")
            if digest and event.get("total"):
                layers[digest] = {"total": int(event["total"]),
                                  "completed": int(event.get("completed") or 0)}
            job.detail = status[:300]
            job.total_bytes = sum(v["total"] for v in layers.values())
            job.completed_bytes = sum(v["completed"] for v in layers.values())
            if job.total_bytes:
                job.percent = 100.0 * job.completed_bytes / job.total_bytes
            now = time.monotonic()
            window = [(t, b) for t, b in window if now - t < 5] + [(now, job.completed_bytes)]
            if len(window) > 1 and now > window[0][0]:
                job.speed_bps = (window[-1][1] - window[0][1]) / (now - window[0][0])
                remaining = job.total_bytes - job.completed_bytes
                job.eta_s = remaining / job.speed_bps if job.speed_bps else None
            job.layers = [{"digest": d[:19], **v} for d, v in layers.items()]
            if status == "success":
                job.percent = 100.0
                return
            if now - last_save >= SAVE_EVERY_S:
                last_save = now
                await _publish(job, worker)
    finally:
        await stream.aclose()  # closes the upstream request (cancel, errors, shutdown)


def step(worker: str, limit: int = MAX_RUNNING) -> dict[str, int]:
    """One pass, run to the end: fail orphaned jobs, claim queued ones and run them. The
    monitor's loop uses JobRunner instead, which does not wait for a pull to finish."""
    expired = expire()
    mine = claim(worker, limit)

    async def run_all() -> None:
        await asyncio.gather(*(run(pk, worker) for pk in mine))

    if mine:
        asyncio.run(run_all())
    return {"expired": expired, "ran": len(mine)}


class ClaimRunner:
    """A monitor's share of a queue of leased work (model pulls here, experiments in
    evals.runner): one thread with one event loop, each claimed item a task in it, so a
    long one never holds up a probe round. The Monitor owns it: started with
    run_forever, stopped (what it runs put back in the queue) when it stops.

    Subclasses name their queue's `expire(now)`, `claim(worker, limit)` and
    `run(pk, worker, stopping)`."""

    name = "jobs"
    max_running = MAX_RUNNING
    drain_s = 10.0  # how long a stop waits for its items to go back in the queue

    def __init__(self, worker: str, *, max_running: int | None = None):
        self.worker = worker
        if max_running is not None:
            self.max_running = max_running
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def expire(self) -> int:
        raise NotImplementedError

    def claim(self, worker: str, limit: int) -> list[int]:
        raise NotImplementedError

    async def run(self, pk: int, worker: str, stopping: threading.Event) -> None:
        raise NotImplementedError

    def start(self) -> ClaimRunner:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),),
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(max(timeout, self.drain_s + 5))

    async def _serve(self) -> None:
        tasks: set[asyncio.Task] = set()
        while not self.stopping.is_set():
            try:
                await sync_to_async(self.expire)()
                free = self.max_running - len(tasks)
                for pk in (await sync_to_async(self.claim)(self.worker, free)) \
                        if free > 0 else []:
                    task = asyncio.create_task(self.run(pk, self.worker, self.stopping))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except Exception:  # noqa: BLE001 - the database may be back next time
                log.exception("looking for %s to run failed", self.name)
            await asyncio.sleep(POLL_S)
        if tasks:  # each sees `stopping` within a second and puts its item back
            await asyncio.wait(tasks, timeout=self.drain_s)
        await sync_to_async(close_old_connections)()


class JobRunner(ClaimRunner):
    """The monitor's model pulls."""

    name = "jobs"

    def expire(self) -> int:
        return expire()

    def claim(self, worker: str, limit: int) -> list[int]:
        return claim(worker, limit)

    async def run(self, pk: int, worker: str, stopping: threading.Event) -> None:
        await run(pk, worker, stopping)
