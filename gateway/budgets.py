"""A key's live status for the pages, the API and alert rules: requests this minute,
tokens used today and this month, what remains and when each count resets.

The counts are the ones the limiter (gateway.quota) keeps in the cache; a count the
cache does not hold is read for every key at once (one grouped query per period) and
left in the cache as `quota.used_tokens` would, so a page listing fifty keys costs two
queries, not a hundred. The monitor reads the stored requests instead when each
process has its own cache (`fresh`): there nobody counts the requests the web
server admitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import F, Sum
from django.utils import timezone

from console.models import ApiToken
from gateway import quota, usage
from gateway.models import Request

shared_cache = quota.shared_cache
_rpm_key = quota.rpm_key  # the limiter's per-minute counter (gateway.quota.admit)


def used_many(token_ids: Iterable[int], kind: str, now: datetime | None = None, *,
              fresh: bool = False) -> dict[int, int]:
    """Tokens (in + out) each key used this day or month. `fresh`: from the stored
    requests, not the cache (one query either way for the keys the cache lacks)."""
    now = now or timezone.now()
    ids = sorted(set(token_ids))
    if not ids:
        return {}
    start, end = quota.period(kind, now)
    names = {quota.tokens_key(pk, kind, start): pk for pk in ids}
    found = {} if fresh else {names[n]: int(v) for n, v in cache.get_many(names).items()}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        stored = dict(Request.objects.filter(token_id__in=missing, ts__gte=start)
                      .values("token_id").annotate(n=Sum(F("tokens_in") + F("tokens_out")))
                      .values_list("token_id", "n"))
        ttl = max(60, int((end - now).total_seconds()) + 60)
        for pk in missing:
            total = (stored.get(pk) or 0) + usage.pending_tokens(pk, start)
            found[pk] = total
            if not fresh:
                cache.add(quota.tokens_key(pk, kind, start), total, timeout=ttl)
    return found


def requests_this_minute(token_ids: Iterable[int], now: datetime | None = None) -> dict[int, int]:
    """What the limiter counted this clock minute per key (refused attempts included)."""
    minute = int((now or timezone.now()).timestamp() // 60)
    names = {_rpm_key(pk, minute): pk for pk in set(token_ids)}
    counted = cache.get_many(names)
    return {pk: int(counted.get(name) or 0) for name, pk in names.items()}


@dataclass
class Budget:
    """One limit of one key: used of `limit` (None: no limit), resetting at `resets_at`."""

    used: int
    limit: int | None
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    @property
    def percent(self) -> float | None:
        return None if not self.limit else round(100 * self.used / self.limit, 1)

    @property
    def level(self) -> str:
        """The bar's colour: green, amber from 80 %, red when used up."""
        pct = self.percent
        if pct is None or pct < 80:
            return "green"
        return "amber" if pct < 100 else "red"

    @property
    def low(self) -> int:
        """A <meter>'s `low` and `high`: amber from 80 %, red when used up."""
        return int((self.limit or 0) * 0.8)

    @property
    def high(self) -> int:
        return max(self.low, (self.limit or 1) - 1)

    @property
    def resets_label(self) -> str:
        """When it resets, in the budget time zone: a time today, else the date too."""
        local = self.resets_at.astimezone(quota.zone())
        today = timezone.now().astimezone(quota.zone()).date()
        return local.strftime("%H:%M %Z" if local.date() <= today + timedelta(days=1)
                              else "%d %b %H:%M %Z")

    def as_dict(self) -> dict:
        return {"used": self.used, "limit": self.limit, "remaining": self.remaining,
                "percent": self.percent, "resets_at": self.resets_at}


@dataclass
class Status:
    """A key's live status."""

    minute: Budget
    day: Budget
    month: Budget

    def as_dict(self) -> dict:
        return {"requests_this_minute": self.minute.as_dict(), "tokens_today": self.day.as_dict(),
                "tokens_this_month": self.month.as_dict()}


def statuses(tokens: Iterable[ApiToken], now: datetime | None = None) -> dict[int, Status]:
    """The live status of each token: no query when the cache holds its counts, else two
    grouped queries for all of them."""
    now = now or timezone.now()
    tokens = list(tokens)
    ids = [t.pk for t in tokens]
    minute_end = datetime.fromtimestamp((int(now.timestamp()) // 60 + 1) * 60, tz=now.tzinfo)
    per_minute = requests_this_minute(ids, now)
    days, months = used_many(ids, "day", now), used_many(ids, "month", now)
    day_end, month_end = quota.period("day", now)[1], quota.period("month", now)[1]
    return {t.pk: Status(Budget(per_minute[t.pk], t.rpm, minute_end),
                         Budget(days[t.pk], t.tokens_per_day, day_end),
                         Budget(months[t.pk], t.tokens_per_month, month_end))
            for t in tokens}


def percent_used(tokens: Iterable[ApiToken], kind: str,
                 now: datetime | None = None) -> dict[int, float | None]:
    """For alert rules: the share of each key's day or month budget used, in percent
    (None for a key without that budget). Read fresh where each process has its own
    cache."""
    field = "tokens_per_day" if kind == "day" else "tokens_per_month"
    tokens = list(tokens)
    used = used_many([t.pk for t in tokens if getattr(t, field)], kind, now,
                     fresh=not shared_cache())
    return {t.pk: (100 * used[t.pk] / getattr(t, field) if getattr(t, field) else None)
            for t in tokens}
