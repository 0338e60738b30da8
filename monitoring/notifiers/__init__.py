"""One module per notification channel kind; each has `send(channel, event)`.

`send` returns when the channel accepted the message and raises NotifierError
otherwise — with `permanent=True` when trying again cannot help (the hook is
gone, the address is refused, the channel is misconfigured), so
monitoring.notify records it once instead of retrying. The in-app channel is
the alerts list itself and needs no module.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

REGISTRY = {
    "webhook": "monitoring.notifiers.webhook.send",
    "email": "monitoring.notifiers.email.send",
}
# client errors that say "later" rather than "never" (RFC 9110 §15.5.9, RFC 6585 §4)
RETRYABLE_CLIENT_STATUS = (408, 429)


class NotifierError(Exception):
    """A notification was not accepted. `message` is for people; `permanent`: a retry
    cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def http_error(status: int, host: str, body: str) -> NotifierError:
    """A non-2xx answer: 5xx, 408 and 429 may pass; any other 4xx, and a redirect (never
    followed, so it cannot succeed either), will not."""
    permanent = status < 500 and status not in RETRYABLE_CLIENT_STATUS
    return NotifierError(f"HTTP {status} from {host}: {body[:200]}", permanent=permanent)


def sender(kind: str) -> Any:
    if kind not in REGISTRY:
        raise NotifierError(f"no notifier for channel kind {kind!r}", permanent=True)
    return import_string(REGISTRY[kind])
