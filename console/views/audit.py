"""The audit log page: filters, keyset paging, CSV/JSONL export, verification."""

from __future__ import annotations

import csv
import json
from datetime import datetime

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from console.csvcells import safe_row
from console.models import AuditEvent
from console.permissions import require
from console.safeinput import digits

PAGE_SIZE = 50


def _when(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:  # a well-formed but impossible date (2026-99-99) raises instead of None
        parsed = parse_datetime(value) or parse_datetime(value + "T00:00:00")
    except ValueError:
        parsed = None
    if parsed is None:
        raise Invalid({field: ["Use a date like 2026-11-24 or 2026-11-24T10:00."]})
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def filtered_events(params) -> tuple:
    """Apply the audit filters shared by the page, the export and the API."""
    qs = AuditEvent.objects.all()
    filters = {k: (params.get(k) or "").strip() for k in
               ("action", "actor", "target", "since", "until")}
    if filters["action"]:
        if filters["action"] not in AuditAction.values:
            raise Invalid({"action": [f"Unknown action {filters['action']!r}."]})
        qs = qs.filter(action=filters["action"])
    if filters["actor"]:
        qs = qs.filter(actor=filters["actor"])
    if filters["target"]:
        target_type, _, target_id = filters["target"].partition(":")
        qs = qs.filter(target_type=target_type)
        if target_id:
            qs = qs.filter(target_id=target_id)
    if since := _when(filters["since"], "since"):
        qs = qs.filter(ts__gte=since)
    if until := _when(filters["until"], "until"):
        qs = qs.filter(ts__lt=until)
    return qs, filters


def page_of(qs, cursor: str, size: int = PAGE_SIZE) -> tuple[list[AuditEvent], int | None]:
    """Keyset paging on seq (newest first): the cursor is the last seq seen."""
    if cursor:
        if not (cursor.isascii() and digits(cursor) and len(cursor) <= 19):
            raise Invalid({"cursor": ["The cursor must be a number from a previous page."]})
        qs = qs.filter(seq__lt=int(cursor))
    events = list(qs.order_by("-seq")[: size + 1])
    more = len(events) > size
    events = events[:size]
    return events, (events[-1].seq if more else None)


@require("audit.view")
def audit_list(request):
    events: list[AuditEvent] = []
    error, next_cursor, filters = "", None, {}
    try:
        qs, filters = filtered_events(request.GET)
        events, next_cursor = page_of(qs, request.GET.get("cursor", ""))
    except Invalid as exc:
        error = str(exc)
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return render(request, "console/audit_list.html", {
        "events": events, "next_cursor": next_cursor, "filters": filters, "error": error,
        "actions": AuditAction.values, "query": query,
    })


class _Echo:
    def write(self, value):
        return value


def export_response(request, params, fmt: str):
    """Stream the filtered events as CSV or JSONL; the export itself is audited."""
    from console.actions.audit import record_export

    qs, filters = filtered_events(params)
    record_export(Actor.from_request(request), fmt, filters)
    rows = audit.export_rows(qs)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        writer = csv.writer(_Echo())

        def lines():
            yield writer.writerow(audit.EXPORT_FIELDS)
            for row in rows:
                yield writer.writerow(safe_row([
                    json.dumps(row[f]) if f in ("before", "after") else row[f]
                    for f in audit.EXPORT_FIELDS
                ]))

        response = StreamingHttpResponse(lines(), content_type="text/csv")
    else:
        def jsonl():
            last = None
            for row in rows:
                last = row
                yield json.dumps(row, default=str) + "\n"
            if last is not None:  # for off-box keeping: a signed statement of the last row
                yield json.dumps({"checkpoint": audit.signed_statement(
                    last["seq"], last["hash"])}) + "\n"

        response = StreamingHttpResponse(jsonl(), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="tanglaw-audit-{stamp}.{fmt}"'
    return response


@require("audit.export")
def audit_export(request, fmt):
    try:
        return export_response(request, request.GET, fmt)
    except Invalid as exc:
        return render(request, "console/audit_list.html",
                      {"events": [], "error": str(exc), "filters": {},
                       "actions": AuditAction.values}, status=400)


@require("audit.view")
def audit_verify(request):
    from console.actions.audit import verify_chain

    result = verify_chain(Actor.from_request(request))
    return render(request, "console/partials/audit_verify.html", {"result": result})
