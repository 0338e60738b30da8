"""Caps on concurrent generations, per user and per backend, shared by every worker through
Django's cache (Redis when REDIS_URL is set; per process otherwise).

A slot is taken before a turn starts and given back when it ends; a slot lost to a crash
expires with the key after the longest a turn may take.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from console.actions import Refused

SLOT_TTL_S = 3600


class Busy(Refused):
    """A cap on generations in flight is reached: try again in a moment."""


def _take(key: str, limit: int) -> bool:
    cache.add(key, 0, timeout=SLOT_TTL_S)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=SLOT_TTL_S)
        count = 1
    if count > limit:
        _give(key)
        return False
    cache.touch(key, SLOT_TTL_S)  # incr keeps the first TTL: live slots must not expire
    return True


def _give(key: str) -> None:
    try:
        if cache.decr(key) < 0:
            cache.set(key, 0, timeout=SLOT_TTL_S)
    except ValueError:
        pass


def acquire(user_id: int, backend_id: int | None) -> list[str]:
    """Take a generation slot for the user and the backend, or raise Refused saying which
    limit was reached. Returns the keys to give back with `release`."""
    user_key = f"tanglaw:gen:user:{user_id}"
    if not _take(user_key, settings.TANGLAW_MAX_GENERATIONS_PER_USER):
        raise Busy(f"you already have {settings.TANGLAW_MAX_GENERATIONS_PER_USER} replies "
                      f"being generated; wait for one to finish")
    if backend_id is None:
        return [user_key]
    backend_key = f"tanglaw:gen:backend:{backend_id}"
    if not _take(backend_key, settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND):
        _give(user_key)
        raise Busy(f"the backend is generating {settings.TANGLAW_MAX_GENERATIONS_PER_BACKEND}"
                      f" replies already; try again in a moment")
    return [user_key, backend_key]


def take(key: str, limit: int) -> bool:
    """One slot of a named cap (e.g. a gateway key's requests in flight); give it back
    with `release([key])`."""
    return _take(key, limit)


def release(keys: list[str]) -> None:
    for key in keys:
        _give(key)


def take_socket(user_id: int) -> str | None:
    """A slot for one more open WebSocket of the user (TANGLAW_MAX_SOCKETS_PER_USER, all
    workers together), or None when they have that many open already."""
    key = f"tanglaw:sockets:user:{user_id}"
    return key if _take(key, settings.TANGLAW_MAX_SOCKETS_PER_USER) else None


def give_socket(key: str | None) -> None:
    if key:
        _give(key)


def chat_wait(user, ip: str | None) -> float | None:
    """None if the user may start another turn now (TANGLAW_CHAT_RATE, the same bucket
    as the chat API's); otherwise the seconds to wait."""
    from types import SimpleNamespace

    from console.api import ChatThrottle

    throttle = ChatThrottle()
    if throttle.allow_request(SimpleNamespace(user=user, META={"REMOTE_ADDR": ip})):
        return None
    return max(1.0, float(throttle.wait() or 1.0))
