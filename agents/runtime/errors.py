"""How a turn fails: TurnFailed(code, message), and messages an operator can act on
for the OpenAI SDK's errors."""

from __future__ import annotations

import openai

from agents.runtime.types import Candidate
from console.urlsafety import UnsafeURL


class TurnFailed(Exception):
    """The turn stops; `code` is stored with it (and decides fallback and breakers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _engine_says(exc: openai.APIStatusError) -> str:
    """The engine's own message in an OpenAI-shaped error body, if it sent one."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:200] if message else ""


def explain(exc: BaseException, candidate: Candidate, timeout_s: float) -> str:
    """A message an operator can act on, for errors of the OpenAI SDK."""
    where = candidate.label or candidate.adapter.base_url
    if isinstance(exc, openai.APITimeoutError):
        return f"{where} did not answer within {timeout_s:g}s"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        if isinstance(cause, UnsafeURL):  # the connect-time address check refused it
            return f"refused to connect to {where}: {cause}"
        return f"cannot reach {where} — is {candidate.adapter.engine} running?"
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code in (401, 403):
            return f"HTTP {code} from {where} — check the API key"
        if code == 404:
            said = _engine_says(exc)
            return (f"HTTP 404 from {where} — is the model {candidate.model!r} served there?"
                    + (f" It says: {said}" if said else ""))
        if code == 429:
            retry = exc.response.headers.get("retry-after", "")
            when = f"in {retry} s" if retry.isdigit() else "shortly"
            return f"HTTP 429 from {where} — the backend is rate limiting; try again {when}"
        try:
            body = exc.response.text
        except Exception:  # noqa: BLE001 - a streamed body may be unreadable
            body = ""
        detail = body or (exc.message if isinstance(exc.message, str) else "")
        if "<html" in detail.lower() or "html" in exc.response.headers.get("content-type", ""):
            detail = "an HTML error page (a proxy in front of the engine?)"
        return f"HTTP {code} from {where}: {detail[:200]}"
    if isinstance(exc, UnsafeURL):  # the connect-time address check (console.egress)
        return f"refused to connect to {where}: {exc}"
    if isinstance(exc, ValueError):
        return f"{where} sent a malformed stream: {str(exc)[:200]}"
    return f"{where}: {type(exc).__name__}: {str(exc)[:200]}"
