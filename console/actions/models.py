"""Model lifecycle: pull (a job with live progress), load, unload, delete. All audited.

A pull is a Job row run in a background thread of the web process: it streams
the engine's progress, saves it about twice a second and sends it to the
`jobs` channel-layer group, which every open page listens to (/ws/jobs/), so
the pull keeps going and stays visible when the operator leaves the page.
Cancel sets a flag on the row (any worker can set it); the runner sees it,
stops reading and closes the upstream request. One active pull per model and
backend is enforced by a partial unique constraint.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.choices import AuditAction, Outcome
from console.models import Backend, Job

log = logging.getLogger("tanglaw.jobs")
SAVE_EVERY_S = 0.5
MODEL_NAME_MAX = 200
KEEP_ALIVE = ("5m", "30m", "1h", "4h", "24h", "-1")  # -1: keep loaded until unloaded


def _clean_name(model: Any) -> str:
    name = str(model or "").strip()
    if not name or len(name) > MODEL_NAME_MAX or any(c.isspace() for c in name):
        raise Invalid({"model": ["Enter a model name without spaces, e.g. qwen2.5:0.5b."]})
    return name


def _action_check(backend: Backend, action: str) -> None:
    adapter = adapter_for(backend)
    reason = asyncio.run(_actions(adapter)).get(action, "")
    if reason:
        raise Refused(f"{backend.name}: {reason}")


async def _actions(adapter) -> dict[str, str]:
    async with adapter.session():
        try:
            return await adapter.model_actions()
        except BackendError as exc:
            return dict.fromkeys(("pull", "load", "unload", "delete"), exc.message)


def model_actions(backend: Backend) -> dict[str, str]:
    return asyncio.run(_actions(adapter_for(backend)))


# -- pull --------------------------------------------------------------------------

def start_pull(actor: Actor, backend: Backend, model: Any, *, run: bool = True) -> Job:
    """Create the job (refused while one runs for this model) and start it in a thread."""
    name = _clean_name(model)
    _action_check(backend, "pull")
    try:
        with transaction.atomic():
            job = Job.objects.create(kind=Job.Kind.PULL, backend=backend, model=name,
                                     created_by=actor.username, detail="queued")
            audit.record(AuditAction.MODEL_PULL_STARTED, actor, target=backend,
                         after={"model": name, "job": job.pk})
    except IntegrityError:
        raise Refused(f"{name} is already being pulled on {backend.name}") from None
    if run:
        threading.Thread(target=run_job, args=(job.pk, actor), daemon=True,
                         name=f"pull-{job.pk}").start()
    return job


def cancel(actor: Actor, job: Job) -> Job:
    if not job.active:
        raise Refused(f"the job has already {job.state}")
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def run_job(job_id: int, actor: Actor) -> None:
    """The thread body: run the pull, then record how it ended."""
    close_old_connections()
    try:
        asyncio.run(_pull(job_id))
    finally:
        job = Job.objects.select_related("backend").get(pk=job_id)
        action = {Job.State.SUCCEEDED: AuditAction.MODEL_PULLED,
                  Job.State.CANCELLED: AuditAction.MODEL_PULL_CANCELLED}.get(
            Job.State(job.state), AuditAction.MODEL_PULL_FAILED)
        audit.record(action, actor, target=job.backend,
                     after={"model": job.model, "job": job.pk,
                            "bytes": job.total_bytes},
                     outcome=Outcome.SUCCESS if job.state == Job.State.SUCCEEDED
                     else Outcome.FAILURE, detail=job.error)
        close_old_connections()


PROGRESS_FIELDS = ["state", "percent", "completed_bytes", "total_bytes", "speed_bps", "eta_s",
                   "detail", "layers", "error", "started_at", "finished_at"]


async def _publish(job: Job) -> None:
    # never `cancel_requested`: a cancel set meanwhile by another request must survive
    await sync_to_async(job.save)(update_fields=PROGRESS_FIELDS)
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send("jobs", {"type": "job.update", "frame": job.frame()})


async def _pull(job_id: int) -> None:
    job = await sync_to_async(Job.objects.select_related("backend").get)(pk=job_id)
    job.state, job.started_at, job.detail = Job.State.RUNNING, timezone.now(), "starting"
    await _publish(job)
    consumer = asyncio.create_task(_consume(job))
    while not consumer.done():  # a cancel must work even while the engine sends nothing
        await asyncio.wait({consumer}, timeout=SAVE_EVERY_S)
        if not consumer.done() and await sync_to_async(
                Job.objects.filter(pk=job.pk, cancel_requested=True).exists)():
            consumer.cancel()
    try:
        await consumer
    except asyncio.CancelledError:
        job.state, job.detail = Job.State.CANCELLED, "cancelled"
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
    job.finished_at = timezone.now()
    if job.state != Job.State.SUCCEEDED:
        job.speed_bps = job.eta_s = None
    else:
        job.eta_s = 0
    await _publish(job)


async def _consume(job: Job) -> None:
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
                await _publish(job)
    finally:
        await stream.aclose()  # closes the upstream request (cancel, errors)


# -- load, unload, delete ------------------------------------------------------------

def _do(actor: Actor, backend: Backend, action: str, model: Any, call, **after) -> None:
    name = _clean_name(model)
    _action_check(backend, action)
    adapter = adapter_for(backend)

    async def go():
        async with adapter.session():
            await call(adapter, name)

    audit_action = {"load": AuditAction.MODEL_LOADED, "unload": AuditAction.MODEL_UNLOADED,
                    "delete": AuditAction.MODEL_DELETED}[action]
    try:
        asyncio.run(go())
    except BackendError as exc:
        audit.record(audit_action, actor, target=backend, after={"model": name, **after},
                     outcome=Outcome.FAILURE, detail=exc.message)
        raise Refused(f"{backend.name}: {exc.message}") from None
    audit.record(audit_action, actor, target=backend, after={"model": name, **after})


def load(actor: Actor, backend: Backend, model: Any, keep_alive: str | None = None) -> None:
    if keep_alive is not None and keep_alive not in KEEP_ALIVE:
        raise Invalid({"keep_alive": [f"One of {', '.join(KEEP_ALIVE)}."]})
    _do(actor, backend, "load", model, lambda a, m: a.load(m, keep_alive),
        keep_alive=keep_alive)


def unload(actor: Actor, backend: Backend, model: Any) -> None:
    _do(actor, backend, "unload", model, lambda a, m: a.unload_model(m))


def delete(actor: Actor, backend: Backend, model: Any) -> None:
    _do(actor, backend, "delete", model, lambda a, m: a.delete_model(m))
