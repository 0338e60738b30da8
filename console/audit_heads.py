"""Signed heads of the audit chain, kept outside the database.

Whoever can rewrite the database can delete its newest events together with
their checkpoints, or rewrite a young chain that has no checkpoint yet; the
hash chain alone cannot tell. So, after each commit that is due (the first
event, every TANGLAW_AUDIT_HEAD_EVERY events, and whenever the last head is
older than TANGLAW_AUDIT_HEAD_INTERVAL_S), the statement "the chain up to #seq
ends in hash", HMAC-signed with the audit key, is appended to a file in the
data directory and logged to `tanglaw.audit.heads` (a syslog sink sends it off
the box). `audit.verify()` then fails when the database ends before a head.

This module touches neither the database nor Django's settings, so any process
can append, and a test can run it in bare subprocesses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.safeinput import digits

log = logging.getLogger("tanglaw.audit.heads")


def signature(key: str, seq: int, head: str, ts: str) -> str:
    return hmac.new(key.encode(), f"{seq}:{head}:{ts}".encode(), hashlib.sha256).hexdigest()


def signed_by(key: str, head: dict[str, Any]) -> bool:
    expected = signature(key, head["seq"], head["hash"], head["ts"])
    return hmac.compare_digest(expected.encode(), head["signature"].encode())


def append(path: Path, key: str, seq: int, head: str) -> dict[str, Any]:
    """Append one signed head as one line, with one write() on an O_APPEND descriptor
    under an exclusive lock, so writers in several processes never interleave."""
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    statement = {"seq": seq, "hash": head, "ts": ts,
                 "signature": signature(key, seq, head, ts)}
    line = json.dumps(statement, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o600)  # one made by hand or restored with looser rights
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
    finally:
        os.close(fd)  # closing releases the lock
    log.info("%s", line.rstrip("\n"))
    return statement


def age_s(path: Path, now: float) -> float | None:
    """Seconds since a head was last appended (any process), or None: no file yet."""
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return None


def last_seq(path: Path) -> int | None:
    """The highest seq among the last few heads (several processes append, so the last
    line is not always the highest), or None: no heads yet."""
    try:
        with path.open("rb") as handle:
            start = max(0, handle.seek(0, os.SEEK_END) - 4096)
            handle.seek(start)
            tail = handle.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    if start:
        tail = tail[1:]  # began mid-line
    seqs = [head["seq"] for head in map(_parse, tail) if head is not None]
    return max(seqs, default=None)


def read(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, head) for every line; head is None for a line that is not one.

    A line may carry a prefix before the JSON (a syslog server's copy of the heads)."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        for number, line in enumerate(handle, start=1):
            yield number, _parse(line)


def _parse(line: str) -> dict[str, Any] | None:
    start = line.find("{")
    if start < 0:
        return None
    try:  # raw_decode: syslog may end the line with a NUL or a trailer
        head, _ = json.JSONDecoder().raw_decode(line, start)
    except ValueError:
        return None
    if not isinstance(head, dict):
        return None
    valid = (isinstance(head.get("seq"), int) and not isinstance(head["seq"], bool)
             and all(isinstance(head.get(k), str) for k in ("hash", "ts", "signature")))
    return head if valid else None


def syslog_handler(target: str) -> dict[str, Any]:
    """A `logging` handler config sending each head to syslog, off the box: "/dev/log" (the
    local daemon, which may forward it), "host" or "host:port" (UDP, so a slow or absent
    collector never holds up the request that wrote the head)."""
    address: str | tuple[str, int]
    if target.startswith("/"):
        address = target
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "514")
        if not host or not digits(port):
            raise ValueError(f"TANGLAW_AUDIT_HEADS_SYSLOG: expected /path, host or "
                             f"host:port, not {target!r}")
        address = (host, int(port))
    return {"class": "logging.handlers.SysLogHandler", "address": address,
            "facility": "auth", ".": {"ident": "tanglaw-audit-head: "}}
