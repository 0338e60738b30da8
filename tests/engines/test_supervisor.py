"""The supervisor against a stand-in engine process (tests/support/engine_process.py):
start, health wait, registration, exits and backoff, readiness timeouts, stops that
need SIGKILL, restarts, two monitors, a dead monitor's orphan, shutdown."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from console.audit import Actor
from console.choices import AuditAction
from console.cluster import free_port
from console.models import AuditEvent, Backend
from engines import actions, logs, supervisor
from engines.choices import Desired, EngineState
from engines.models import EngineEvent, ManagedEngine
from engines.supervisor import Supervisor
from tests.engines.conftest import drive

pytestmark = pytest.mark.django_db
ADMIN = Actor(username="root", role="admin")


@pytest.fixture
def sup():
    made: list[Supervisor] = []

    def make(worker: str = "monitor-a") -> Supervisor:
        made.append(Supervisor(worker))
        return made[-1]

    yield make
    for each in made:
        each.shutdown()


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(supervisor, "BASE_BACKOFF_S", 0.2)
    monkeypatch.setattr(supervisor, "STOP_GRACE_S", 1.0)
    monkeypatch.setattr(supervisor, "HEALTH_EVERY_S", 0.1)


def make_engine(fake_command, behaviour, start=True, **fields):
    data = {"name": fields.pop("name", "local-fake"), "kind": "llamacpp",
            "command": fake_command, "model_path": behaviour(**fields.pop("does", {})),
            "port": free_port(), "auto_restart": True, "ready_timeout_s": 60, **fields}
    return actions.create_engine(ADMIN, data, start=start)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_it_starts_waits_for_health_and_registers_its_backend(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.6})
    assert engine.state == EngineState.QUEUED and engine.desired == Desired.RUNNING
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.STARTING, what="starting")
    assert engine.pid and alive(engine.pid) and engine.worker == "monitor-a"
    assert engine.backend_id is None  # not before it answers /health
    assert a.wait_s() == supervisor.TICK_S  # watched closely while it starts
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING, what="running")
    assert a.wait_s() == supervisor.IDLE_TICK_S
    backend = Backend.objects.get(pk=engine.backend_id)
    assert (backend.name, backend.kind) == ("local-fake", "llamacpp")
    assert backend.base_url == f"http://127.0.0.1:{engine.port}"
    ready = AuditEvent.objects.get(action=AuditAction.ENGINE_READY)
    assert ready.after["pid"] == engine.pid and ready.after["backend_id"] == backend.pk
    assert [e.state for e in EngineEvent.objects.filter(engine=engine).order_by("pk")] == [
        EngineState.QUEUED, EngineState.STARTING, EngineState.RUNNING]
    # the child got its own small environment, never the console's secrets
    env_line = next(line for line in logs.tail(engine.pk) if line.startswith("env:"))
    names = set(env_line.split()[1:])
    assert "TANGLAW_ENCRYPTION_KEYS" not in names and "DJANGO_SETTINGS_MODULE" not in names
    assert "PATH" in names
    args = next(line for line in logs.tail(engine.pk) if line.startswith("args:"))
    assert f"--port {engine.port}" in args and "--metrics" in args


def test_an_exit_restarts_it_with_a_growing_backoff(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour,
                         does={"ready_after_s": 0.1, "exit_after_s": 0.5, "exit_code": 3})
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.BACKOFF, what="backoff")
    assert engine.restarts == 1 and engine.last_exit_code == 3 and engine.pid is None
    assert "exited with code 3" in engine.state_reason
    event = EngineEvent.objects.filter(engine=engine, state=EngineState.BACKOFF).first()
    first_wait = (engine.next_start_at - event.at).total_seconds()
    assert "crashed as asked" in event.detail  # what it printed last, for the operator
    engine = drive(a, engine, lambda e: e.restarts == 2 and e.state == EngineState.BACKOFF,
                   what="second exit")
    second = EngineEvent.objects.filter(engine=engine, state=EngineState.BACKOFF).first()
    second_wait = (engine.next_start_at - second.at).total_seconds()
    assert second_wait > first_wait * 1.5  # 0.2 s, then 0.4 s
    exits = AuditEvent.objects.filter(action=AuditAction.ENGINE_EXITED).order_by("seq")
    assert [e.after["exit_code"] for e in exits] == [3, 3]
    assert [e.after["streak"] for e in exits] == [1, 2]


def test_backoff_doubles_up_to_its_cap():
    assert [supervisor.backoff_s(n) for n in (1, 2, 3, 4)] == [
        supervisor.BASE_BACKOFF_S * f for f in (1, 2, 4, 8)]
    assert supervisor.backoff_s(50) == supervisor.MAX_BACKOFF_S


def test_without_auto_restart_an_exit_is_a_failure(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, auto_restart=False,
                         does={"ready_after_s": 0.1, "exit_after_s": 0.4, "exit_code": 7})
    engine = drive(sup(), engine, lambda e: e.state == EngineState.FAILED, what="failed")
    assert engine.desired == Desired.STOPPED and engine.worker == ""
    assert engine.last_exit_code == 7 and "exited with code 7" in engine.state_reason
    failed = AuditEvent.objects.get(action=AuditAction.ENGINE_FAILED)
    assert failed.after["exit_code"] == 7


def test_one_never_healthy_is_stopped_after_its_timeout(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"never_ready": True})
    ManagedEngine.objects.filter(pk=engine.pk).update(ready_timeout_s=1)
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.STARTING)
    pid = engine.pid
    engine = drive(a, engine, lambda e: e.state == EngineState.BACKOFF, what="timed out")
    assert "not healthy within 1 s" in engine.state_reason and not alive(pid)
    assert engine.restarts == 1


def test_a_stop_sends_sigterm_then_sigkill(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1,
                                                        "ignore_term": True})
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING)
    pid = engine.pid
    engine = actions.stop_engine(ADMIN, engine)
    assert engine.desired == Desired.STOPPED
    engine = drive(a, engine, lambda e: e.state == EngineState.STOPPED, what="stopped")
    assert not alive(pid)
    assert engine.last_exit_code == -signal.SIGKILL and engine.worker == ""
    assert "ignoring SIGTERM" in "\n".join(logs.tail(engine.pk))
    assert AuditEvent.objects.filter(action=AuditAction.ENGINE_STOPPED).count() == 1


def test_a_restart_starts_a_new_process_without_counting_a_crash(fake_command, behaviour,
                                                                 sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1})
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING)
    old = engine.pid
    engine = actions.restart_engine(ADMIN, engine)
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING and e.pid != old,
                   what="running again")
    assert not alive(old) and engine.restarts == 0
    assert AuditEvent.objects.filter(action=AuditAction.ENGINE_RESTARTED).count() == 1


def test_a_changed_setting_is_pending_until_the_restart(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1})
    a = sup()
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING)
    engine = actions.update_engine(ADMIN, engine, {"extra_args": ["--parallel", "2"]})
    assert engine.changes_pending
    engine = actions.restart_engine(ADMIN, engine)
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING
                   and not e.changes_pending)
    assert "--parallel 2" in next(x for x in reversed(logs.tail(engine.pk))
                                  if x.startswith("args:"))


def test_two_monitors_never_run_one_engine_twice(fake_command, behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1})
    a, b = sup("monitor-a"), sup("monitor-b")
    for _ in range(5):
        a.step()
        b.step()
    engine.refresh_from_db()
    assert engine.worker == "monitor-a" and list(a.procs) == [engine.pk] and not b.procs


def test_a_dead_monitors_process_is_killed_before_the_next_one_starts(fake_command,
                                                                      behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1})
    a = sup("monitor-a")
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING)
    orphan = engine.pid
    a.procs.clear()  # monitor-a "dies": it no longer watches, its process lives on
    ManagedEngine.objects.filter(pk=engine.pk).update(lease_until="2000-01-01T00:00:00Z")
    b = sup("monitor-b")
    engine = drive(b, engine, lambda e: e.state == EngineState.RUNNING and e.pid != orphan,
                   what="running under monitor-b")
    assert engine.worker == "monitor-b"
    deadline = time.monotonic() + 5
    while alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(orphan)
    assert EngineEvent.objects.filter(engine=engine, detail__contains="left behind").exists()


def test_shutdown_stops_its_engines_and_queues_them_for_the_next_monitor(fake_command,
                                                                         behaviour, sup):
    engine = make_engine(fake_command, behaviour, does={"ready_after_s": 0.1})
    a = Supervisor("monitor-a")
    engine = drive(a, engine, lambda e: e.state == EngineState.RUNNING)
    pid = engine.pid
    a.shutdown()
    engine.refresh_from_db()
    assert not alive(pid)
    assert (engine.state, engine.desired, engine.worker) == (EngineState.QUEUED,
                                                             Desired.RUNNING, "")
    engine = drive(sup("monitor-b"), engine, lambda e: e.state == EngineState.RUNNING)
    assert engine.worker == "monitor-b"


def test_a_command_no_longer_allowed_fails_instead_of_running(fake_command, behaviour, sup,
                                                              settings):
    engine = make_engine(fake_command, behaviour, start=True)
    settings.TANGLAW_ENGINE_COMMANDS = []
    engine = drive(sup(), engine, lambda e: e.state == EngineState.FAILED)
    assert "no longer allowed" in engine.state_reason and engine.pid is None
    assert engine.desired == Desired.STOPPED


def test_a_stop_before_any_monitor_took_it_needs_no_monitor(fake_command, behaviour):
    engine = make_engine(fake_command, behaviour)
    engine = actions.stop_engine(ADMIN, engine)
    assert (engine.state, engine.desired) == (EngineState.STOPPED, Desired.STOPPED)
    assert not os.path.exists(logs.log_path(engine.pk))  # it never ran
