"""What every notifier says about an alert event."""

from __future__ import annotations

from typing import Any


def payload(event) -> dict[str, Any]:
    alert = event.alert
    return {"alert_id": alert.pk, "rule": alert.rule.name, "metric": alert.rule.metric,
            "severity": alert.rule.severity, "state": event.state, "scope": alert.scope,
            "value": alert.value, "threshold": alert.threshold, "message": alert.message,
            "started_at": alert.started_at.isoformat() if alert.started_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "reason": event.reason or None, "at": event.ts.isoformat()}


def headline(event) -> str:
    icon = {"firing": "🔴", "resolved": "✅"}.get(event.state, "•")
    why = f" ({event.reason})" if event.reason else ""
    return f"{icon} [{event.alert.rule.severity}] {event.state}{why}: {event.alert.message}"
