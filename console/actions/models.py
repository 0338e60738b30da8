"""Model lifecycle: pull (a job with live progress), load, unload, delete. All audited.

A pull is a Job row: the request queues it and the monitor runs it
(console.jobs), so it survives the web process restarting and keeps going,
visible on every page (/ws/jobs/), when the operator leaves the page. Cancel
ends a job no monitor has claimed yet at once, and otherwise sets a flag on the
row that its runner sees within half a second, closing the upstream request. A
failed or cancelled pull can be retried (a new job, pointing at the old one).
One active pull per model and backend is enforced by a partial unique
constraint.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from console import audit, jobs
from console.actions import Invalid, Refused
from console.audit import Actor
from console.backends import adapter_for
from console.backends.base import BackendError
from console.choices import AuditAction, Outcome
from console.models import Backend, Job

MODEL_NAME_MAX = 200
KEEP_ALIVE = ("5m", "30m", "1h", "4h", "24h", "-1")  # -1: keep loaded until unloaded


def _clean_name(model: Any) -> str:
    name = str(model or "").strip()
    if not name or len(name) > MODEL_NAME_MAX or any(c.isspace() for c in name):
        raise Invalid({"model": ["Enter a model name without spaces, e.g. qwen2.5:0.5b."]})
    return name


def _action_check(backend: Backend, action: str) -> None:
    adapter = adapter_for(backend)
    reason = async_to_sync(_actions)(adapter).get(action, "")
    if reason:
        raise Refused(f"{backend.name}: {reason}")


async def _actions(adapter) -> dict[str, str]:
    async with adapter.session():
        try:
            return await adapter.model_actions()
        except BackendError as exc:
            return dict.fromkeys(("pull", "load", "unload", "delete"), exc.message)


def model_actions(backend: Backend) -> dict[str, str]:
    return async_to_sync(_actions)(adapter_for(backend))


# -- pull --------------------------------------------------------------------------

def start_pull(actor: Actor, backend: Backend, model: Any, *, retry_of: Job | None = None
               ) -> Job:
    """Queue the pull for the monitor (refused while one is active for this model)."""
    name = _clean_name(model)
    _action_check(backend, "pull")
    after: dict[str, Any] = {"model": name}
    try:
        with transaction.atomic():
            job = Job.objects.create(kind=Job.Kind.PULL, backend=backend, model=name,
                                     created_by=actor.username, retry_of=retry_of,
                                     detail="queued: waiting for the monitor")
            after["job"] = job.pk
            if retry_of is not None:
                after["retry_of"] = retry_of.pk
            audit.record(AuditAction.MODEL_PULL_STARTED, actor, target=backend, after=after)
    except IntegrityError:
        raise Refused(f"{name} is already being pulled on {backend.name}") from None
    jobs.publish(job)
    return job


def retry(actor: Actor, job: Job) -> Job:
    """Pull again what a failed or cancelled job was pulling (its monitor died, say)."""
    if not job.retryable:
        raise Refused(f"only a failed or cancelled pull can be retried; this one "
                      f"{'is ' + job.state if job.active else 'has ' + job.state}")
    return start_pull(actor, job.backend, job.model, retry_of=job)


def cancel(actor: Actor, job: Job) -> Job:
    if not job.active:
        raise Refused(f"the job has already {job.state}")
    # not claimed yet: no runner would see the flag, so it ends here
    if Job.objects.filter(pk=job.pk, state=Job.State.QUEUED, owner=None).update(
            state=Job.State.CANCELLED, detail="cancelled", cancel_requested=True,
            finished_at=timezone.now()) == 1:
        job.refresh_from_db()
        jobs.record_end(job, actor)
        jobs.publish(job)
        return job
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job.refresh_from_db()
    return job


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
        async_to_sync(go)()
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
