"""One module per notification channel kind; each has `send(channel, event)`.

The in-app channel is the alerts list itself and needs no module.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

REGISTRY = {
    "webhook": "monitoring.notifiers.webhook.send",
    "email": "monitoring.notifiers.email.send",
}


def sender(kind: str) -> Any:
    return import_string(REGISTRY[kind])
