"""A key's limits: requests per minute, tokens per day and per month, requests in
flight. Counted in Django's cache (Redis when scaled out, so every worker shares them);
a token budget the cache does not hold yet is read from the stored requests (and the
ones still waiting to be written), so a restart forgets nothing.

Over a limit the request is refused with 429, `Retry-After` and the `x-ratelimit-*`
headers OpenAI sends. Budgets reset at midnight, and on the first of the month, in
TANGLAW_GATEWAY_BUDGET_TZ (default: TIME_ZONE).
"""

from __future__ import annotations

import contextlib
import math
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Sum
from django.utils import timezone

from console import generation, limits
from gateway.errors import GatewayError
from gateway.keys import Key


def shared_cache() -> bool:
    """Whether every process counts in one cache (Redis): then a cache call is network
    I/O, kept off the event loop."""
    return generation.cache_is_shared()


def zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TANGLAW_GATEWAY_BUDGET_TZ)


def period(kind: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start and end of the day or month `now` falls in, in the budget time zone."""
    local = (now or timezone.now()).astimezone(zone())
    if kind == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # DST-safe next midnight
    else:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def tokens_key(token_id: int, kind: str, start: datetime) -> str:
    """The cache key counting a key's tokens in the day or month starting at `start`."""
    return f"tanglaw:gw:tokens:{token_id}:{kind}:{start.date().isoformat()}"


def used_tokens(token_id: int, kind: str, now: datetime | None = None) -> int:
    """Tokens (in + out) the key used this day or month (sync; reads the database when
    the cache does not hold the count)."""
    start, end = period(kind, now)
    name = tokens_key(token_id, kind, start)
    value = cache.get(name)
    if value is not None:
        return int(value)
    from gateway import usage
    from gateway.models import Request

    stored = Request.objects.filter(token_id=token_id, ts__gte=start).aggregate(
        n=Sum(F("tokens_in") + F("tokens_out")))["n"] or 0
    total = stored + usage.pending_tokens(token_id, start)
    ttl = max(60, int((end - timezone.now()).total_seconds()) + 60)
    cache.add(name, total, timeout=ttl)
    return int(cache.get(name, total))


def charge(token_id: int, tokens: int, ts: datetime) -> None:
    """Count a finished request's tokens where the budget is already being counted; a
    count not in the cache is read whole from the requests when next needed."""
    if tokens <= 0:
        return
    for kind in ("day", "month"):
        start, _ = period(kind, ts)
        with contextlib.suppress(ValueError):
            cache.incr(tokens_key(token_id, kind, start), tokens)


def rpm_key(token_id: int, minute: int) -> str:
    """The cache key counting a key's requests in one minute (unix time // 60)."""
    return f"tanglaw:gw:rpm:{token_id}:{minute}"


def _reset(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: `1s`, `6m0s`, `1h2m3s`."""
    seconds = max(0, math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass
class Admission:
    """A request let in: the headers to send, the slot to give back."""

    headers: dict[str, str] = field(default_factory=dict)
    slot: str | None = None

    def release(self) -> None:
        if self.slot is not None:
            limits.release([self.slot])
            self.slot = None


def needs_thread(key: Key) -> bool:
    """Whether admitting the key may block (a shared cache, or a database read): then
    the caller runs `admit` off the event loop."""
    if not (key.rpm or key.tokens_per_day or key.tokens_per_month or key.max_streams):
        return False
    return shared_cache() or bool(key.tokens_per_day or key.tokens_per_month)


def admit(key: Key, now: datetime | None = None) -> Admission:
    """Check and count the key's limits for one more request; raise a 429 GatewayError
    naming the limit. Sync (cache, and the database for an uncounted budget)."""
    admission = Admission()
    now = now or timezone.now()
    if key.rpm:
        name = rpm_key(key.token_id, int(now.timestamp() // 60))
        cache.add(name, 0, timeout=120)
        try:
            count = cache.incr(name)
        except ValueError:
            cache.add(name, 1, timeout=120)
            count = 1
        wait = 60 - now.timestamp() % 60
        admission.headers.update({"x-ratelimit-limit-requests": str(key.rpm),
                                  "x-ratelimit-remaining-requests": str(max(0, key.rpm - count)),
                                  "x-ratelimit-reset-requests": _reset(wait)})
        if count > key.rpm:
            raise GatewayError(429, f"rate limit reached: this key may make {key.rpm} "
                                    f"requests per minute; try again in {math.ceil(wait)} s",
                               code="rate_limit_exceeded",
                               headers={**admission.headers, "Retry-After": str(math.ceil(wait))})
    tightest: tuple[int, int, float] | None = None  # limit, remaining, seconds to reset
    for kind, limit in (("day", key.tokens_per_day), ("month", key.tokens_per_month)):
        if not limit:
            continue
        used = used_tokens(key.token_id, kind, now)
        _, end = period(kind, now)
        wait = (end - now).total_seconds()
        remaining = max(0, limit - used)
        if tightest is None or remaining < tightest[1]:
            tightest = (limit, remaining, wait)
        if used >= limit:
            headers = {**admission.headers, "x-ratelimit-limit-tokens": str(limit),
                       "x-ratelimit-remaining-tokens": "0",
                       "x-ratelimit-reset-tokens": _reset(wait),
                       "Retry-After": str(math.ceil(wait))}
            resets = end.strftime("%Y-%m-%d %H:%M %Z")
            raise GatewayError(429, f"this key's token budget per {kind} ({limit:,}) is used "
                                    f"up; it resets at {resets}",
                               code=f"tokens_per_{kind}_exceeded", headers=headers)
    if tightest is not None:
        admission.headers.update({"x-ratelimit-limit-tokens": str(tightest[0]),
                                  "x-ratelimit-remaining-tokens": str(tightest[1]),
                                  "x-ratelimit-reset-tokens": _reset(tightest[2])})
    if key.max_streams:
        name = f"tanglaw:gw:streams:{key.token_id}"
        if not limits.take(name, key.max_streams):
            raise GatewayError(429, f"this key already has {key.max_streams} requests in "
                                    f"flight; wait for one to finish",
                               code="concurrency_limit_exceeded",
                               headers={**admission.headers, "Retry-After": "1"})
        admission.slot = name
    return admission
