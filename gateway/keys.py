"""Who is calling: the bearer key of a /v1/ request, resolved without a query on the
hot path.

A key is an ApiToken (console.models): hashed, revocable, with optional scopes, model
patterns, expiry and limits. Each process keeps what it read about a key for a few
seconds and until the configuration generation moves (console.generation): creating,
changing or revoking a key, or changing its owner's role or activity, bumps it, so a
revoked key is refused at once on every worker.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from console import generation
from console.models import ApiToken, User
from console.permissions import has_perm
from gateway.errors import GatewayError

TTL_S = 10.0


@dataclass(frozen=True)
class Key:
    """What the gateway needs to know about a key and its owner."""

    token_id: int
    name: str
    hint: str
    user: User
    scopes: tuple[str, ...]
    patterns: tuple[str, ...]
    expires_at: datetime | None
    rpm: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None
    max_streams: int | None
    log_content: bool = False

    def may(self, perm: str) -> bool:
        return has_perm(self.user, perm)

    def allows_scope(self, scope: str) -> bool:
        return not self.scopes or scope in self.scopes

    def allows_model(self, name: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


_lock = threading.Lock()
_cache: dict[str, tuple[object, float, Key | None]] = {}


def _read(digest: str) -> Key | None:
    token = ApiToken.objects.select_related("user").filter(
        digest=digest, revoked_at__isnull=True, user__is_active=True).first()
    if token is None:
        return None
    return Key(token.pk, token.name, token.hint, token.user, tuple(token.scopes or ()),
               tuple(token.allowed_models or ()), token.expires_at, token.rpm,
               token.tokens_per_day, token.tokens_per_month, token.max_streams,
               token.log_content)


def lookup(raw: str) -> Key | None:
    """The live key for a raw bearer value, or None (sync: may read the database)."""
    found = cached(raw)
    if found is not False:
        return found
    gen = generation.current()
    if gen is None:  # nothing bumped yet: start the generation so it can be compared
        generation.bump_now()
        gen = generation.current()
    digest = ApiToken.digest_of(raw)
    key = _read(digest)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (gen, time.monotonic(), key)
    return _live(key)


def cached(raw: str) -> Key | None | Literal[False]:
    """The key from this process's memory when that is still good; False when it must be
    read (then call `lookup` off the event loop)."""
    if not raw.startswith(ApiToken.PREFIX) or len(raw) > 200:
        return None
    entry = _cache.get(ApiToken.digest_of(raw))
    if entry is None or time.monotonic() - entry[1] >= TTL_S:
        return False
    gen = generation.current()
    if gen is None or entry[0] != gen:
        return False
    return _live(entry[2])


def _live(key: Key | None) -> Key | None:
    """None for a key that expired since it was read."""
    if key is not None and key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    return key


def bearer(request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # some clients send the key as `api-key` (Azure style) or `x-api-key`
    return (request.headers.get("api-key") or request.headers.get("x-api-key") or "").strip()


def refuse_missing() -> GatewayError:
    return GatewayError(401, "no API key: send `Authorization: Bearer tgl_…` (create a key "
                             "on the Gateway keys page)", code="missing_api_key")


def refuse_unknown() -> GatewayError:
    return GatewayError(401, "the API key is not valid: unknown, revoked, expired or its "
                             "owner is deactivated", code="invalid_api_key")


def forget() -> None:
    with _lock:
        _cache.clear()


def _token_changed(sender, **kwargs) -> None:
    generation.bump()


def _user_changed(sender, instance=None, update_fields=None, **kwargs) -> None:
    if update_fields is None or {"role", "is_active", "is_superuser"} & set(update_fields):
        generation.bump()


post_save.connect(_token_changed, sender=ApiToken, dispatch_uid="gateway-token-save")
post_delete.connect(_token_changed, sender=ApiToken, dispatch_uid="gateway-token-delete")
post_save.connect(_user_changed, sender=User, dispatch_uid="gateway-user-save")
