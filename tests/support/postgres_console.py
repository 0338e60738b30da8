"""manage.py against a throwaway PostgreSQL server (Debian's), for tests of what only a
real server shows: triggers, concurrent writers, row locks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def postgres_manage(data_dir: Path) -> Iterator[Callable[..., str]]:
    """A started server, migrated; yields `manage(*args) -> stdout` (asserting success)."""
    pytest.importorskip("psycopg", reason="the postgres extra is part of make test")
    from console.cluster import Postgres

    server = Postgres().start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TANGLAW_", "DJANGO_"))}
        env.update({"DATABASE_URL": server.url, "TANGLAW_DATA_DIR": str(data_dir),
                    "DJANGO_SETTINGS_MODULE": "console.settings"})

        def manage(*args: str) -> str:
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        manage("migrate", "-v", "0")
        yield manage
    finally:
        server.stop()
