"""Create, change, delete and test backends."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, form_errors
from console.actions.secrets import secret_move
from console.audit import Actor
from console.backends import Report, adapter_for, probe
from console.choices import AuditAction, BackendKind, Outcome, Status
from console.forms import BackendForm
from console.models import Backend, BackendStatusChange


def _validated(actor: Actor, data: dict[str, Any], instance: Backend | None) -> BackendForm:
    form = BackendForm(data=data, instance=instance)
    if not form.is_valid():
        if form.refused_url_reason:
            audit.record(AuditAction.BACKEND_REFUSED_URL, actor, target_type="console.backend",
                         target_id=instance.pk if instance else "",
                         after={"base_url": str(data.get("base_url", ""))[:500]},
                         outcome=Outcome.DENIED, detail=form.refused_url_reason)
        raise Invalid(form_errors(form), form)
    return form


def _apply_key(backend: Backend, form: BackendForm) -> None:
    key = form.cleaned_data.get("api_key") or ""
    if form.cleaned_data.get("clear_api_key"):
        backend.api_key, backend.api_key_last4 = "", ""
    elif key:
        backend.api_key, backend.api_key_last4 = key, key[-4:]


def create_backend(actor: Actor, data: dict[str, Any]) -> Backend:
    form = _validated(actor, data, None)
    with transaction.atomic():
        backend = form.save(commit=False)
        backend.api_key, backend.api_key_last4 = "", ""
        _apply_key(backend, form)
        backend.save()
        audit.record(AuditAction.BACKEND_CREATED, actor, target=backend,
                     after=backend.audit_snapshot())
    return backend


def update_backend(actor: Actor, backend: Backend, changes: dict[str, Any]) -> Backend:
    """Apply a partial change: fields not in `changes` keep their values."""
    current = backend.audit_snapshot()
    data = {k: v for k, v in current.items() if k in BackendForm.Meta.fields}
    data.update({k: v for k, v in changes.items() if v is not None})
    old_key, old_url = backend.api_key, backend.base_url
    form = _validated(actor, data, backend)
    move = secret_move(actor, field="api_key", old_url=old_url,
                       new_url=form.cleaned_data["base_url"], has_secret=bool(old_key),
                       replaced=bool(form.cleaned_data.get("api_key")
                                     or form.cleaned_data.get("clear_api_key")),
                       keep=bool(changes.get("keep_api_key")))
    with transaction.atomic():
        backend = form.save(commit=False)
        backend.api_key = old_key
        _apply_key(backend, form)
        if move.clear:
            backend.api_key, backend.api_key_last4 = "", ""
        backend.save()
        after = backend.audit_snapshot()
        if after != current:
            audit.record(AuditAction.BACKEND_UPDATED, actor, target=backend,
                         before=current, after=after, detail=move.note)
        if current["enabled"] and not backend.enabled:
            _resolve_alerts(actor, backend, "is disabled")
    return backend


def _resolve_alerts(actor: Actor, backend: Backend, why: str) -> None:
    """Its alerts end with it: nothing probes a deleted or disabled backend any more."""
    from monitoring.alerts import resolve_target  # monitoring builds on console, not back

    resolve_target(actor, f"backend:{backend.pk}", f"backend {backend.name} {why}")


def delete_backend(actor: Actor, backend: Backend) -> None:
    with transaction.atomic():
        snapshot, pk, name = backend.audit_snapshot(), backend.pk, backend.name
        _resolve_alerts(actor, backend, "was deleted")
        backend.delete()
        audit.record(AuditAction.BACKEND_DELETED, actor, target_type="console.backend",
                     target_id=pk, before=snapshot, detail=f"deleted {name}")


STATUS_WRITE_TRIES = 20


def record_probe(backend: Backend, report: Report) -> None:
    """Store the latest probe on the backend, and a row when the status changed.

    The monitor, the list page's poll and "Test connection" all write here, each with a
    Backend read a while ago, so its `status` may be stale. The new status is written by
    an UPDATE that must match the status stored now, and the row names that one as
    `previous`: the rows form one chain (uptime is read from them) whatever the order.
    """
    fields: dict[str, Any] = {"status_reason": report.error[:500],
                              "latency_ms": report.latency_ms,
                              "version": report.version[:100],
                              "last_checked_at": timezone.now()}
    if report.models_listed or report.status == Status.UNHEALTHY:
        # a health-only probe (the list's poll) did not count models: keep the count
        fields["model_count"] = report.model_count
    rows = Backend.objects.filter(pk=backend.pk)
    with transaction.atomic():
        for _ in range(STATUS_WRITE_TRIES):
            stored = rows.values_list("status", flat=True).first()
            if stored is None:
                return  # deleted meanwhile: nothing to record
            # 0 rows: another writer changed the status since we read it; read again
            if rows.filter(status=stored).update(status=report.status, **fields):
                break
        else:
            raise RuntimeError(f"the status of backend {backend.pk} kept changing while "
                               f"{STATUS_WRITE_TRIES} probes were written")
        if stored != report.status:
            BackendStatusChange.objects.create(
                backend_id=backend.pk, status=report.status, previous=stored,
                reason=report.error[:500], latency_ms=report.latency_ms,
            )
    backend.status = report.status
    for name, value in fields.items():
        setattr(backend, name, value)


def test_backend(actor: Actor, backend: Backend) -> Report:
    """"Test connection": probe now, store the result, record who asked. A backend that
    fails but answers like another kind of engine says so (the usual mistake: the wrong
    kind picked for the URL)."""
    report = async_to_sync(probe)(adapter_for(backend))
    if report.status == Status.UNHEALTHY:
        hint = wrong_kind_hint(backend)
        if hint:
            report.error = f"{hint} ({report.error})" if report.error else hint
    record_probe(backend, report)
    audit.record(
        AuditAction.BACKEND_TESTED, actor, target=backend,
        after={"status": report.status, "latency_ms": report.latency_ms,
               "version": report.version, "models": len(report.models)},
        outcome=Outcome.SUCCESS if report.status != Status.UNHEALTHY else Outcome.FAILURE,
        detail=report.error,
    )
    return report


def wrong_kind_hint(backend: Backend) -> str:
    """"This answers like llama-server, not Ollama — change the kind?" or ""."""
    from console.discovery import answers_like

    kind = async_to_sync(answers_like)(backend.base_url)
    if not kind or kind == backend.kind:
        return ""
    names = {**dict(BackendKind.choices), "llamacpp": "llama-server"}
    return (f"this answers like {names.get(kind, kind)}, not {names.get(backend.kind)} — "
            f"change the kind?")


def discover(actor: Actor, ports: list[int] | None = None) -> list:
    """Look for engines on this machine; registers nothing, records what was found."""
    from console.discovery import discover_sync

    candidates = discover_sync(ports)
    audit.record(AuditAction.BACKEND_DISCOVERED, actor,
                 after={"found": [c.as_dict() for c in candidates]})
    return candidates
