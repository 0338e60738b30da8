"""Tanglaw's own spans: a turn or a gateway request records its steps in memory (a
list append per step, nothing per token) and hands them to traces.store when it ends.

Names and attributes follow the OpenTelemetry GenAI conventions in their latest
experimental form (what `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
selects): `invoke_agent <agent>`, `chat <model>`, `execute_tool <tool>`,
`gen_ai.provider.name`, `gen_ai.input.messages`… Tanglaw's own facts are `tanglaw.*`.

A caller's W3C `traceparent` makes the spans children of the caller's span, in its
trace; `traceparent(span)` is what to send on to the next hop.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from traces import content as content_rules
from traces.choices import SpanKind, SpanStatus

TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SERVICE = "tanglaw"
RESOURCE = {"service.name": SERVICE, "telemetry.sdk.name": "tanglaw",
            "telemetry.sdk.language": "python"}


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid W3C traceparent, else None (a new trace)."""
    match = TRACEPARENT.match((header or "").strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, parent = match.group(2), match.group(3)
    if set(trace_id) == {"0"} or set(parent) == {"0"}:
        return None
    return trace_id, parent


def server_of(base_url: str) -> dict[str, Any]:
    """server.address and server.port of a backend's URL: the host only, never a path,
    query or credentials the URL may hold."""
    try:
        url = urlsplit(base_url)
        return {k: v for k, v in (("server.address", url.hostname), ("server.port", url.port))
                if v is not None}
    except (AttributeError, ValueError):
        return {}


@dataclass
class SpanRecord:
    name: str
    kind: str
    span_id: str
    parent_id: str
    start_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    end_ns: int = 0
    status: str = SpanStatus.UNSET
    status_message: str = ""

    def set(self, **attributes: Any) -> None:
        self.attributes.update({k.replace("__", "."): v for k, v in attributes.items()
                                if v is not None})

    def fail(self, error_type: str, message: str) -> None:
        self.status, self.status_message = SpanStatus.ERROR, message[:500]
        self.attributes["error.type"] = error_type


class Recorder:
    """The spans of one turn or request. `content`: the operator lets prompts and
    replies be kept (the agent's or key's log_content); without it they are not even
    gathered."""

    enabled = True

    def __init__(self, traceparent: str | None = None, *, content: bool = False):
        joined = parse_traceparent(traceparent)
        self.trace_id, self.remote_parent = joined or (os.urandom(16).hex(), "")
        self.content = content
        self.spans: list[SpanRecord] = []
        self._stack: list[SpanRecord] = []

    def start(self, name: str, kind: str = SpanKind.INTERNAL, **attributes: Any) -> SpanRecord:
        parent = self._stack[-1].span_id if self._stack else self.remote_parent
        span = SpanRecord(name[:200], kind, os.urandom(8).hex(), parent, time.time_ns())
        span.set(**attributes)
        self.spans.append(span)
        return span

    def enter(self, name: str, kind: str = SpanKind.INTERNAL, **attributes: Any) -> SpanRecord:
        """A span the next ones nest under until `leave` (a turn's root)."""
        span = self.start(name, kind, **attributes)
        self._stack.append(span)
        return span

    def leave(self, span: SpanRecord) -> None:
        if span in self._stack:
            self._stack.remove(span)
        self.end(span)

    @contextmanager
    def span(self, name: str, kind: str = SpanKind.INTERNAL,
             **attributes: Any) -> Iterator[SpanRecord]:
        """A step, its children nested under it; an exception marks it failed (a
        cancel — stop, disconnect — marks it stopped) and goes on."""
        span = self.start(name, kind, **attributes)
        self._stack.append(span)
        try:
            yield span
        except BaseException as exc:
            if isinstance(exc, GeneratorExit | KeyboardInterrupt):
                raise
            if span.status != SpanStatus.ERROR:
                code = getattr(exc, "code", None)
                if isinstance(exc, asyncio.CancelledError):
                    span.set(tanglaw__stopped=True)
                else:
                    span.fail(code or type(exc).__name__,
                              getattr(exc, "message", None) or str(exc) or type(exc).__name__)
            raise
        finally:
            self.leave(span)

    def end(self, span: SpanRecord) -> None:
        if not span.end_ns:
            span.end_ns = max(time.time_ns(), span.start_ns)

    def traceparent(self, span: SpanRecord) -> str:
        """The W3C traceparent that makes the next hop a child of `span`."""
        return f"00-{self.trace_id}-{span.span_id}-01"

    def rows(self) -> list[dict[str, Any]]:
        """The spans as traces.store takes them; unfinished ones end now."""
        out = []
        for span in self.spans:
            self.end(span)
            row = {"trace_id": self.trace_id, "span_id": span.span_id,
                   "parent_id": span.parent_id, "name": span.name, "kind": span.kind,
                   "start_ns": span.start_ns, "end_ns": span.end_ns, "status": span.status,
                   "status_message": span.status_message, "service": SERVICE,
                   "scope": "tanglaw", "attributes": dict(span.attributes),
                   "events": list(span.events), "resource": RESOURCE, "links": [],
                   "external": False}
            if not self.content:
                content_rules.strip(row)
            out.append(row)
        return out


class _Off(Recorder):
    """Where nothing is recorded (a caller without a trace): every call is a no-op."""

    enabled = False

    def __init__(self) -> None:
        super().__init__()

    def start(self, name: str, kind: str = SpanKind.INTERNAL, **attributes: Any) -> SpanRecord:
        return SpanRecord(name, kind, "0" * 16, "", 0)

    @contextmanager
    def span(self, name: str, kind: str = SpanKind.INTERNAL,
             **attributes: Any) -> Iterator[SpanRecord]:
        yield self.start(name, kind)

    def enter(self, name: str, kind: str = SpanKind.INTERNAL, **attributes: Any) -> SpanRecord:
        return self.start(name, kind)

    def leave(self, span: SpanRecord) -> None:
        return None

    def rows(self) -> list[dict[str, Any]]:
        return []


OFF = _Off()
