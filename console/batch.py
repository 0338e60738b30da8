"""Rows written in batches by one background thread per process, so a request's own path
never waits for a commit: the gateway's usage records, the spans of traces.

Every `interval()` seconds (or sooner when a batch is full) the thread writes what is
queued, oldest first; a failed write keeps the rows, in order, for the next try, and
past `max_pending` the oldest go (the database has been away that long). A crash loses
at most the last interval's rows; a clean exit flushes them. With an interval of 0 (the
tests) there is no thread: `add` says so and the caller flushes, off the event loop.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import close_old_connections

log = logging.getLogger("tanglaw")


class Batcher:
    def __init__(self, name: str, write: Callable[[list[Any]], None],
                 interval: Callable[[], float], *, max_batch: int = 500,
                 max_pending: int = 20_000, pause_s: float = 0.0):
        self.name, self.write, self.interval = name, write, interval
        self.max_batch, self.max_pending = max_batch, max_pending
        # the background thread rests this long between two batches, so other writers
        # waiting on SQLite's one write lock (a chat turn's first save) get their turn
        self.pause_s = pause_s
        self.pending: list[Any] = []
        self.lock = threading.Lock()  # guards `pending`; held only to copy or append
        self._write_lock = threading.Lock()  # one writer at a time, so order holds
        self._wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.dropped = 0
        atexit.register(self._at_exit)

    def add(self, items: Iterable[Any]) -> bool:
        """Queue rows. True when the caller must write them itself (`flush`, off the
        event loop): no background thread at interval 0."""
        with self.lock:
            self.pending.extend(items)
            over = len(self.pending) - self.max_pending
            if over > 0:
                del self.pending[:over]
                self.dropped += over
            full = len(self.pending) >= self.max_batch
        if self.interval() <= 0:
            return True
        self._ensure_thread()
        if full:
            self._wake.set()
        return False

    def backlog(self) -> int:
        return len(self.pending)

    def flush(self, pause_s: float = 0.0) -> int:
        """Write everything queued now (sync), resting `pause_s` between batches.
        Returns how many rows were written."""
        written = 0
        with self._write_lock:
            while True:
                if written and pause_s:
                    time.sleep(pause_s)
                with self.lock:
                    batch = self.pending[:self.max_batch]
                    del self.pending[:self.max_batch]
                if not batch:
                    return written
                try:
                    self.write(batch)
                except Exception:
                    with self.lock:  # kept for the next try, in order
                        self.pending[:0] = batch
                    raise
                written += len(batch)

    def _ensure_thread(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                return
            self.thread = threading.Thread(target=self._run, name=f"tanglaw-{self.name}",
                                           daemon=True)
            self.thread.start()

    def _run(self) -> None:
        # the thread ends when the interval becomes 0: callers write their own from then
        while self.interval() > 0:
            self._wake.wait(self.interval())
            self._wake.clear()
            try:
                self.flush(self.pause_s)
            except Exception:  # noqa: BLE001 - kept and retried at the next interval
                log.exception("%s: queued rows could not be written; retrying", self.name)
            finally:
                close_old_connections()
        self.thread = None

    def _at_exit(self) -> None:
        if self.pending:
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the process is ending; say so
                log.exception("%s: queued rows were lost at exit", self.name)
