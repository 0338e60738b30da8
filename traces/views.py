"""Trace pages: the list (filters in the query string, keyset pages), one trace as a
waterfall of its spans, and an external agent's page (its traffic charted like our own
agents', its recent traces). The views decide what each page shows; the templates lay
it out."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Avg, Count, Q, Sum
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from agents.models import Agent, Conversation
from console.actions import Invalid
from console.permissions import require
from console.safeinput import digits
from monitoring.store import WINDOWS
from traces import queries
from traces.choices import STATUS_COLOURS, SpanStatus
from traces.facts import MODEL_OPERATIONS, ttft_ms
from traces.models import ExternalAgent, Span, Trace

PAGE_SIZE = 50
RECENT = 20
SINCE = [("", "any time"), ("15m", "last 15 minutes"), ("1h", "last hour"),
         ("24h", "last 24 hours"), ("7d", "last 7 days"), ("custom", "custom range")]
EXTERNAL = [("", "any"), ("yes", "external only"), ("no", "Tanglaw's own")]
FORM_FIELDS = ("agent", "external", "status", "model", "min_ms", "since", "from", "until")
LINKED = ("conversation", "request")  # set by links (a conversation's traces), not the form
COLOURS = {status.value: name for status, name in STATUS_COLOURS.items()}
MAX_DEPTH = 8  # deeper steps indent no further (the CSS has a class per depth)
# attributes the detail shows in sections of their own, not in the attribute list
SHOWN_APART = frozenset({"gen_ai.input.messages", "gen_ai.output.messages",
                         "gen_ai.system_instructions", "gen_ai.tool.call.arguments",
                         "gen_ai.tool.call.result", "gen_ai.tool.definitions"})
MESSAGES = (("gen_ai.system_instructions", "System instructions"),
            ("gen_ai.input.messages", "Input messages"),
            ("gen_ai.output.messages", "Output messages"))
CHARTS = (("requests", "count", "Requests per minute"), ("error_rate", "ratio", "Error rate"),
          ("latency_ms", "ms", "Run latency"), ("ttft_ms", "ms", "Time to first token"),
          ("tokens_in", "count", "Tokens in per minute"),
          ("tokens_out", "count", "Tokens out per minute"),
          ("tool_calls", "count", "Tool calls per minute"))


def _filters(get) -> tuple[dict[str, str], dict[str, str]]:
    """The form's values, and the filters traces.queries takes from them: a preset reads
    back from now, a custom range reads From and Until."""
    form = {k: get.get(k, "").strip()[:200] for k in (*FORM_FIELDS, *LINKED)}
    params = {k: form[k] for k in ("agent", "external", "status", "model", "min_ms", *LINKED)}
    if form["since"] == "custom":
        params.update(since=form["from"], until=form["until"])
    else:
        params["since"] = form["since"]
    return form, params


def _agent_of_scope(scope: str) -> str:
    """The agent a monitoring scope names (an alert's `agent:ID` or `xagent:ID`)."""
    kind, _, ident = scope.partition(":")
    if kind not in ("agent", "xagent") or not digits(ident) or len(ident) > 18:
        raise Invalid({"agent": [f"“{scope}” names no agent (agent:ID or xagent:ID)."]})
    names = (Agent.objects if kind == "agent" else ExternalAgent.objects).values_list(
        "name", flat=True)
    name = names.filter(pk=int(ident)).first()
    if name is None:
        raise Invalid({"agent": [f"There is no agent {scope} any more."]})
    return name


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 10:
        return f"{ms:.1f} ms" if ms else "0 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{int(ms // 60_000)} min {ms % 60_000 / 1000:.0f} s"


def colour(status: str) -> str:
    return COLOURS.get(status, "muted")


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "colour": colour(r["status"]),
             "duration": duration(r["duration_ms"])} for r in rows]


@require("traces.view")
def trace_list(request):
    form, params = _filters(request.GET)
    rows: list[dict[str, Any]] = []
    next_cursor, errors = None, {}
    try:
        if request.GET.get("scope") and not form["agent"]:
            form["agent"] = params["agent"] = _agent_of_scope(request.GET["scope"][:64])
        rows, next_cursor = queries.page(queries.filtered(params),
                                         request.GET.get("cursor", "")[:64], PAGE_SIZE)
    except Invalid as exc:  # a custom range's start is the From field
        errors = {("from" if f == "since" and form["since"] == "custom" else f): m
                  for f, m in exc.errors.items()}
    query = urlencode({k: v for k, v in form.items() if v})
    since_choices = SINCE if any(form["since"] == v for v, _ in SINCE) else [
        *SINCE, (form["since"], f"since {form['since']}")]
    context = {
        "rows": _rows(rows), "form": form, "errors": errors, "query": query,
        "other_errors": {f: m for f, m in errors.items() if f not in FORM_FIELDS},
        "next_url": f"?{query}{'&' if query else ''}cursor={next_cursor}" if next_cursor
        else "", "paged": bool(request.GET.get("cursor")),
        "filtered": any(params.values()), "since_choices": since_choices,
        "external_choices": EXTERNAL, "statuses": SpanStatus.values,
        "agent_names": sorted({*Agent.objects.values_list("name", flat=True),
                               *ExternalAgent.objects.values_list("name", flat=True)}),
        "otlp_endpoint": request.build_absolute_uri("/v1/traces"),
    }
    template = "traces/partials/trace_table.html" if request.htmx and not errors else \
        "traces/trace_list.html"  # the "Older" link swaps the results only
    response = render(request, template, context, status=400 if errors else 200)
    patch_vary_headers(response, ["HX-Request"])  # one address, a page or a part of it
    return response


def _text(value: Any) -> str:
    """An attribute as the page shows it: JSON text and structures indented, unless
    they fit on a line."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if not isinstance(parsed, dict | list):
            return value
        value = parsed
    if isinstance(value, dict | list):
        line = json.dumps(value, ensure_ascii=False, default=str)
        return line if len(line) <= 60 else json.dumps(value, indent=2, ensure_ascii=False,
                                                         default=str)
    return json.dumps(value, ensure_ascii=False, default=str)


def _tool(span: Span) -> dict[str, Any] | None:
    a = span.attributes
    if span.operation != "execute_tool":
        return None
    return {"name": a.get("gen_ai.tool.name") or span.name.removeprefix("execute_tool "),
            "call_id": a.get("gen_ai.tool.call.id", ""),
            "arguments": _text(a["gen_ai.tool.call.arguments"])
            if "gen_ai.tool.call.arguments" in a else None,
            "result": _text(a["gen_ai.tool.call.result"])
            if "gen_ai.tool.call.result" in a else None}


def _event(event: dict[str, Any], start_ns: int) -> dict[str, Any]:
    a = event.get("attributes") or {}
    return {"name": event.get("name", ""), "exception": event.get("name") == "exception",
            "at": duration((int(event.get("time_ns") or start_ns) - start_ns) / 1e6),
            "type": a.get("exception.type", ""), "message": a.get("exception.message", ""),
            "stacktrace": a.get("exception.stacktrace", ""),
            "attributes": [(k, _text(v)) for k, v in sorted(a.items())
                           if not k.startswith("exception.")]}


def _step(step: queries.Step, start_ns: int) -> dict[str, Any]:
    span, a = step.span, step.span.attributes
    model_call = span.operation in MODEL_OPERATIONS
    tool = _tool(span)
    messages = [(title, _text(a[k])) for k, title in MESSAGES if k in a]
    return {
        "span": span, "depth": min(step.depth, MAX_DEPTH), "label": step.label,
        # SVG attributes, not inline styles (the CSP forbids those)
        "offset": f"{step.offset_pct:.3f}", "width": f"{step.width_pct:.3f}",
        "error": span.status == SpanStatus.ERROR, "ttft_ms": ttft_ms(a),
        "start": duration((span.start_ns - start_ns) / 1e6),
        "duration": duration(span.duration_ms), "model_call": model_call,
        "attributes": [(k, text, "\n" in text) for k, text in (
            (k, _text(v)) for k, v in sorted(a.items()) if k not in SHOWN_APART)],
        "tools": queries.tools_offered(span) if model_call else [],
        "tool": tool, "messages": messages,
        "content_missing": (model_call and not messages) or (
            tool is not None and tool["arguments"] is None and tool["result"] is None),
        "events": [_event(e, start_ns) for e in span.events if isinstance(e, dict)],
    }


def _url(route: str, /, **params: str) -> str:
    """A page of another app with a query, or "" where that app's pages are not mounted
    (TANGLAW_APP_URLS)."""
    try:
        return f"{reverse(route)}?{urlencode(params)}"
    except NoReverseMatch:
        return ""


def _audit_url(trace: Trace) -> str:
    """The audit log around the trace: its conversation's events (a turn's event names
    the trace in `after.trace_id`) in the minutes it ran."""
    since = timezone.localtime(trace.started_at - timedelta(minutes=1))
    until = timezone.localtime(trace.ended_at + timedelta(minutes=1))
    params = {"since": since.strftime("%Y-%m-%dT%H:%M:%S"),
              "until": until.strftime("%Y-%m-%dT%H:%M:%S")}
    if trace.conversation_id:
        params["target"] = f"agents.conversation:{trace.conversation_id}"
    return f"{reverse('audit_list')}?{urlencode(params)}"


def _content_hint(trace: Trace) -> str:
    if trace.external:
        return ("Content not kept: enable content logging on the key that sends these "
                "spans, and have the sender record it (MAF: enable_sensitive_data).")
    if trace.agent_id:
        return "Content not kept: enable content logging on the agent."
    return ("Content not kept: a pass-through request's text goes only to its audit event "
            "(TANGLAW_GATEWAY_LOG_CONTENT).")


@require("traces.view")
def trace_detail(request, trace_id: str):
    trace = Trace.objects.filter(trace_id=trace_id.lower()[:32]).first()
    if trace is None:
        return render(request, "traces/trace_detail.html", {"missing": trace_id[:64]},
                      status=404)
    spans = queries.spans_of(trace)
    start_ns = min((s.start_ns for s in spans), default=0)
    total_ms = (max((s.end_ns for s in spans), default=start_ns) - start_ns) / 1e6
    external = ExternalAgent.objects.filter(name=trace.agent).first() if trace.external \
        else None
    return render(request, "traces/trace_detail.html", {
        "trace": trace, "colour": colour(trace.status),
        "steps": [_step(s, start_ns) for s in queries.tree(spans)],
        "axis": [duration(0), duration(total_ms / 2), duration(total_ms)],
        "duration": duration(trace.duration_ms),
        "external_agent": external, "audit_url": _audit_url(trace),
        "content_hint": _content_hint(trace),
        "shown_spans": len(spans) if len(spans) < trace.span_count else None,
        "conversation": trace.conversation_id if trace.conversation_id and
        Conversation.objects.for_user(request.user).filter(pk=trace.conversation_id).exists()
        else None,
        "usage_url": _url("gateway_usage", request=trace.request_id) if trace.request_id
        else "",
    })


@require("traces.view")
def external_agent(request, pk: int):
    agent = get_object_or_404(ExternalAgent, pk=pk)
    rows, _ = queries.page(queries.filtered({"agent": agent.name}), "", RECENT)
    day = queries.filtered({"agent": agent.name, "since": "24h"})
    scope = f"xagent:{agent.pk}"
    return render(request, "traces/external_agent.html", {
        "agent": agent, "scope": scope, "rows": _rows(rows), "windows": list(WINDOWS),
        "charts": [{"metric": m, "unit": u, "title": t} for m, u, t in CHARTS],
        "day": day.aggregate(traces=Count("id"), errors=Count("id", filter=Q(
            status=SpanStatus.ERROR)), avg_ms=Avg("duration_ms"), tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out")),
        "all_url": _url("trace_list", agent=agent.name),
        "alert_url": _url("alert_list", scope=scope, metric="error_rate",
                          name=f"{agent.name} errors", threshold="0.1", window_s="600"),
    })
