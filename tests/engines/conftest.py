"""Managed engines: the stand-in engine process as an allowed command, and a helper that
drives a supervisor until an engine reaches a state."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "support" / "engine_process.py"
FAKE_COMMAND = shlex.join([sys.executable, str(FAKE)])


@pytest.fixture(autouse=True)
def _own_data_dir(settings, tmp_path):
    """Engine logs go under the data dir by engine id: one per test, as ids repeat."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()


@pytest.fixture
def fake_command(settings):
    settings.TANGLAW_ENGINE_COMMANDS = [FAKE_COMMAND]
    return FAKE_COMMAND


@pytest.fixture
def behaviour(tmp_path):
    """Write a behaviour file for the stand-in engine: behaviour(ready_after_s=0.2, …)."""

    def write(**fields) -> str:
        path = tmp_path / f"behaviour-{len(list(tmp_path.glob('behaviour-*')))}.json"
        path.write_text(json.dumps(fields))
        return str(path)

    return write


def drive(supervisor, engine, until, timeout: float = 20.0, what: str = ""):
    """Run supervisor passes until `until(engine)` holds on the fresh row; the row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.step()
        engine.refresh_from_db()
        if until(engine):
            return engine
        time.sleep(0.05)
    raise AssertionError(f"engine never reached {what or until}: state {engine.state}, "
                         f"reason {engine.state_reason!r}")
