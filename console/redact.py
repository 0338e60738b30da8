"""Structural redaction of secrets for logs, errors and audit before/after."""

from __future__ import annotations

import logging
import re
from typing import Any

# a key that is, or ends in, a secret word: api_key, access_token, password, X-Auth-Token…
# (not tokens_out, api_key_set or api_key_last4)
SECRET_NAME = re.compile(
    r"(^|[_\-\s])(api[_\-]?key|key|token|secret|password|passwd|authorization|cookie|"
    r"credentials?)$|^(key|token|secret|password|authorization|cookie)$", re.I)
MASK = "********"

_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"), r"\1" + MASK),
    (re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token)=)[^&\s]+"), r"\1" + MASK),
    (re.compile(r"(?i)(\b(?:api[_-]?key|password|secret)\s*[=:]\s*)[^\s,;]+"), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\btgl_[A-Za-z0-9_-]{8,}"), MASK),
]


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """Mask values under secret-looking keys, recursively; scrub strings."""
    if isinstance(value, dict):
        return {
            k: (MASK if SECRET_NAME.search(str(k)) and v not in (None, "", False, True)
                else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """Logging filter: scrub the formatted message of tokens and keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - never lose a log line over formatting
            return True
        record.msg = redact_text(message)
        record.args = ()
        return True


class ExpectedResponseFilter(logging.Filter):
    """Handler filter: a 4xx answer is the client's mistake or a refusal (audited
    already), not a crash. Django logs a 404 or a 403 from PermissionDenied at WARNING,
    the 403 with its traceback; here every 4xx record loses its traceback, and those of
    django.request count as INFO, so they show only when the level is INFO or lower.
    django.security's lines (a bad Host header, a CSRF failure) stay warnings."""

    def __init__(self, level: str = "WARNING") -> None:
        super().__init__()
        self.threshold = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not isinstance(status, int) or not 400 <= status < 500:
            return True
        if record.name == "django.request" and self.threshold > logging.INFO:
            return False
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        if record.name == "django.request":
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def mask_url(url: str) -> str:
    """A URL whose path or query may hold a token, shown like a key: its scheme and host
    and the last four characters (``https://hooks.slack.com/…wxyz``)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…" + url.strip()[-4:] if len(url.strip()) > 8 else MASK
    rest = url.strip()[len(f"{parts.scheme}://{parts.netloc}"):]
    if not host:
        return MASK
    tail = rest[-4:] if len(rest) > 8 else ""
    return f"{parts.scheme}://{host}{port}/…{tail}" if rest.strip("/") else (
        f"{parts.scheme}://{host}{port}")
