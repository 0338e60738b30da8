"""The configuration generation: a token that changes whenever configuration a worker
keeps in memory changes (backends, agents, tools, MCP servers, a circuit breaker's
state), in every process of the installation.

A worker caches what a chat turn needs (agents.blueprints) and compares the token on
each turn: one cache read (Redis, when the console is scaled out) or one `stat()` of a
file in the data directory (one machine, where each process has its own local-memory
cache) — never a database query. `bump()` runs when a change commits; the model
signals below catch every save and delete, and code that writes with `.update()` on
these tables calls it itself (console.breaker).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

KEY = "tanglaw:config-generation"


def cache_is_shared() -> bool:
    """Whether every process reads one cache (Redis), not its own local memory."""
    return "LocMemCache" not in settings.CACHES["default"]["BACKEND"]


def _path() -> Path:
    return Path(settings.DATA_DIR) / "config-generation"


def current() -> object:
    """A value that differs after every bump (compare with ==)."""
    if cache_is_shared():
        return cache.get(KEY)
    try:
        stat = os.stat(_path())
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def bump_now() -> None:
    token = uuid.uuid4().hex
    if cache_is_shared():
        cache.set(KEY, token, None)
        return
    path = _path()
    temporary = path.with_name(f".{path.name}.{token}")
    temporary.write_text(token)
    os.replace(temporary, path)  # a new inode: a reader never sees a half-written file


def bump() -> None:
    """Now, and again when the current transaction commits: a worker that rebuilt from
    the database between the two (seeing the old rows) rebuilds once more after it."""
    bump_now()
    if not transaction.get_autocommit():
        transaction.on_commit(bump_now)
