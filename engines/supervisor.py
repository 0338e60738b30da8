"""The engine supervisor: runs the managed engines, inside the monitor (a thread of its own).

Each pass (every TICK_S) it claims the engines wanted running that no monitor holds
(a conditional UPDATE of the lease, as the pulls do), renews the leases of those it
runs, and brings each engine to what the operator wants:

- start: the argv of engines.commands, without a shell, in its own session and with
  its own small environment, output to its log (engines.logs); it is *starting*
  until `GET /health` answers 200, then *running*, with its backend registered;
- exit: with auto-restart, *backoff* and a new process after 1 s, 2 s, 4 s … up to
  MAX_BACKOFF_S (the streak resets once it ran STABLE_S); without, *failed*;
- restart asked (a newer `generation`): stop, then start at once;
- stop asked: SIGTERM to its process group, SIGKILL after STOP_GRACE_S, lease given back.

A monitor shutting down stops its engines and gives their leases back still wanted
running, so the next monitor starts them. One that died leaves its process behind:
whoever claims the engine next kills that process first (same machine, same command
line), so the port is free again.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from console import audit
from console.actions import Invalid
from console.actions import backends as backend_actions
from console.audit import Actor
from console.choices import AuditAction, Outcome
from console.models import Backend
from engines import commands, logs
from engines.choices import Desired, EngineState
from engines.models import EngineEvent, ManagedEngine

log = logging.getLogger("tanglaw.engines")
ACTOR = Actor.system("supervisor")
TICK_S = 0.5  # while a process it runs starts or stops
IDLE_TICK_S = 2.0  # otherwise: an exit is seen within 2 s, and an idle monitor stays idle
LEASE_S = 30.0
RENEW_S = 5.0
HEALTH_EVERY_S = 1.0
STOP_GRACE_S = 15.0
BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
STABLE_S = 60.0


@dataclass
class Running:
    proc: subprocess.Popen
    generation: int
    log: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    next_health: float = 0.0
    stop_reason: str = ""  # "stop", "restart", "timeout", "shutdown" once asked to stop
    stopping_since: float | None = None


def backoff_s(streak: int) -> float:
    """The wait before the `streak`-th restart in a row (1-based)."""
    return min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, streak - 1))


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """The whole process group: vLLM's engine core is a child process of its server."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


class Supervisor:
    def __init__(self, worker: str, *, hostname: str | None = None):
        self.worker = worker
        self.hostname = hostname or socket.gethostname()
        self.procs: dict[int, Running] = {}
        self.streaks: dict[int, int] = {}
        self._renewed = 0.0
        self._http = httpx.Client(timeout=httpx.Timeout(1.5), trust_env=False)

    # -- a pass ------------------------------------------------------------------
    def step(self) -> None:
        now = timezone.now()
        self._claim(now)
        if time.monotonic() - self._renewed >= RENEW_S:
            self._renew(now)
        owned = list(ManagedEngine.objects.filter(worker=self.worker))
        for engine in owned:
            try:
                self._reconcile(engine)
            except Exception:  # noqa: BLE001 - one engine must not stop the others
                log.exception("supervising engine %s failed", engine.pk)
        # processes of engines no longer ours (deleted, or lost): nobody else may run them.
        # (A pass gives an engine back only once its process is gone.)
        for pk in set(self.procs) - {engine.pk for engine in owned}:
            self._abandon(pk)

    def wait_s(self) -> float:
        """How long until the next pass."""
        busy = any(not run.ready or run.stopping_since is not None
                   for run in self.procs.values())
        return TICK_S if busy else IDLE_TICK_S

    def _owned(self, engine: ManagedEngine):
        return ManagedEngine.objects.filter(pk=engine.pk, worker=self.worker)

    def _claim(self, now) -> None:
        free = Q(worker="", desired=Desired.RUNNING) | (~Q(worker="") & Q(lease_until__lt=now))
        for engine in ManagedEngine.objects.filter(free):
            taken = ManagedEngine.objects.filter(pk=engine.pk).filter(free).update(
                worker=self.worker, lease_until=now + timedelta(seconds=LEASE_S))
            if taken:
                log.info("engine %s (%s): claimed", engine.pk, engine.name)
                self._reap_orphan(engine)

    def _renew(self, now) -> None:
        self._renewed = time.monotonic()
        ManagedEngine.objects.filter(worker=self.worker).update(
            lease_until=now + timedelta(seconds=LEASE_S))

    # -- what the operator wants -------------------------------------------------
    def _reconcile(self, engine: ManagedEngine) -> None:
        run = self.procs.get(engine.pk)
        if run is not None and run.proc.poll() is not None:
            self._exited(engine, run)
            return
        if engine.desired == Desired.STOPPED:
            if run is None:
                self._release(engine, EngineState.STOPPED, "stopped")
            else:
                self._stop(engine, run, "stop")
            return
        if run is None:
            if engine.next_start_at is None or engine.next_start_at <= timezone.now():
                self._start(engine)
            return
        if run.stopping_since is not None:
            self._stop(engine, run, run.stop_reason)
        elif run.generation != engine.generation:
            self._stop(engine, run, "restart")
        elif not run.ready:
            self._check_ready(engine, run)

    def _start(self, engine: ManagedEngine) -> None:
        command = commands.command_for(engine.command)
        if command is None:
            self._fail(engine, "its command is no longer allowed on this machine "
                               "(TANGLAW_ENGINE_COMMANDS)")
            return
        argv = commands.argv(engine, command)
        binary = argv[0]
        if shutil.which(binary) is None:  # a path: executable; a name: on PATH
            self._fail(engine, f"{binary} is not an executable on this machine")
            return
        workdir = logs.workdir(engine.pk)
        handle = logs.open_for_start(engine.pk, argv)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle,
                                    stderr=subprocess.STDOUT, cwd=workdir,
                                    env=commands.environment(engine, workdir),
                                    start_new_session=True)
        except OSError as exc:
            handle.close()
            self._fail(engine, f"cannot start {Path(binary).name}: {exc.strerror or exc}")
            return
        self.procs[engine.pk] = Running(proc, engine.generation, handle)
        self._owned(engine).update(
            state=EngineState.STARTING, pid=proc.pid, hostname=self.hostname,
            started_at=timezone.now(), ready_at=None, next_start_at=None,
            running_config=engine.audit_snapshot(),
            state_reason=f"waiting for {commands.base_url(engine)}/health")
        EngineEvent.objects.create(engine=engine, state=EngineState.STARTING, pid=proc.pid,
                                   detail=f"started {Path(binary).name} (pid {proc.pid})")
        log.info("engine %s (%s): started pid %s", engine.pk, engine.name, proc.pid)

    def _check_ready(self, engine: ManagedEngine, run: Running) -> None:
        now = time.monotonic()
        if now < run.next_health:
            return
        run.next_health = now + HEALTH_EVERY_S
        try:
            healthy = self._http.get(commands.base_url(engine) + "/health").status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy:
            self._ready(engine, run)
        elif now - run.started > engine.ready_timeout_s:
            self._owned(engine).update(
                state_reason=f"not healthy within {engine.ready_timeout_s} s: stopping it")
            self._stop(engine, run, "timeout")

    def _ready(self, engine: ManagedEngine, run: Running) -> None:
        run.ready = True
        waited = time.monotonic() - run.started
        backend = self._register(engine)
        self._owned(engine).update(
            state=EngineState.RUNNING, ready_at=timezone.now(), backend=backend,
            state_reason=f"healthy after {waited:.0f} s")
        EngineEvent.objects.create(engine=engine, state=EngineState.RUNNING,
                                   pid=run.proc.pid, detail=f"healthy after {waited:.1f} s")
        audit.record(AuditAction.ENGINE_READY, ACTOR, target=engine,
                     after={"pid": run.proc.pid, "backend_id": backend.pk if backend else None,
                            "ready_after_s": round(waited, 1), "restarts": engine.restarts})
        log.info("engine %s (%s): healthy after %.1f s", engine.pk, engine.name, waited)

    def _register(self, engine: ManagedEngine) -> Backend | None:
        """Create the engine's backend, or point it at where the engine listens now."""
        url = commands.base_url(engine)
        backend = engine.backend or Backend.objects.filter(name=engine.name).first()
        try:
            if backend is None:
                return backend_actions.create_backend(ACTOR, {
                    "name": engine.name, "kind": engine.kind, "base_url": url,
                    "enabled": True, "connect_timeout_s": 3.0, "read_timeout_s": 300.0,
                    "notes": f"Run by Tanglaw (managed engine #{engine.pk})."})
            if backend.kind != engine.kind or not backend.base_url.startswith(url) \
                    or not backend.enabled:
                return backend_actions.update_backend(ACTOR, backend, {
                    "kind": engine.kind, "base_url": url, "enabled": True})
        except Invalid as exc:
            log.warning("engine %s: its backend could not be registered: %s", engine.pk, exc)
            return engine.backend
        return backend

    def _stop(self, engine: ManagedEngine, run: Running, reason: str) -> None:
        now = time.monotonic()
        if run.stopping_since is None:
            run.stop_reason, run.stopping_since = reason, now
            _signal(run.proc, signal.SIGTERM)
            self._owned(engine).update(state=EngineState.STOPPING,
                                       state_reason=f"stopping ({reason})")
        elif now - run.stopping_since > STOP_GRACE_S:
            _signal(run.proc, signal.SIGKILL)

    def _exited(self, engine: ManagedEngine, run: Running) -> None:
        code = run.proc.returncode
        run.log.close()
        del self.procs[engine.pk]
        said = logs.last_line(engine.pk)
        if run.stop_reason in ("stop", "shutdown") or engine.desired == Desired.STOPPED:
            self._release(engine, EngineState.STOPPED, f"stopped (exit code {code})", code=code)
            return
        if run.stop_reason == "restart":
            self._owned(engine).update(state=EngineState.QUEUED, pid=None, last_exit_code=code,
                                       state_reason="restarting as asked")
            EngineEvent.objects.create(engine=engine, state=EngineState.QUEUED, exit_code=code,
                                       detail="stopped for the restart asked for")
            self._start(ManagedEngine.objects.get(pk=engine.pk))
            return
        why = f"not healthy within {engine.ready_timeout_s} s" if run.stop_reason == "timeout" \
            else f"exited with code {code}"
        stable = run.ready and time.monotonic() - run.started >= STABLE_S
        streak = 1 if stable else self.streaks.get(engine.pk, 0) + 1
        self.streaks[engine.pk] = streak
        if not engine.auto_restart:
            self._fail(engine, why + (f": {said}" if said else ""), code=code)
            return
        delay = backoff_s(streak)
        self._owned(engine).update(
            state=EngineState.BACKOFF, pid=None, last_exit_code=code,
            restarts=F("restarts") + 1,
            next_start_at=timezone.now() + timedelta(seconds=delay),
            state_reason=f"{why}; restarting in {delay:.0f} s"[:500])
        EngineEvent.objects.create(engine=engine, state=EngineState.BACKOFF, exit_code=code,
                                   pid=run.proc.pid, detail=(f"{why}: {said}" if said
                                                             else why)[:500])
        audit.record(AuditAction.ENGINE_EXITED, ACTOR, target=engine, outcome=Outcome.FAILURE,
                     after={"pid": run.proc.pid, "exit_code": code, "restart_in_s": delay,
                            "restarts": engine.restarts + 1, "streak": streak},
                     detail=why)
        log.warning("engine %s (%s): %s; restarting in %.0f s", engine.pk, engine.name, why,
                    delay)

    def _fail(self, engine: ManagedEngine, why: str, *, code: int | None = None) -> None:
        """It cannot run: failed, no longer wanted running, lease given back."""
        self._owned(engine).update(desired=Desired.STOPPED)
        self._release(engine, EngineState.FAILED, why, code=code)
        audit.record(AuditAction.ENGINE_FAILED, ACTOR, target=engine, outcome=Outcome.FAILURE,
                     after={"exit_code": code}, detail=why[:500])
        log.warning("engine %s (%s): failed: %s", engine.pk, engine.name, why)

    def _release(self, engine: ManagedEngine, state: str, why: str, *,
                 code: int | None = None) -> None:
        fields: dict[str, Any] = {"state": state, "state_reason": why[:500], "pid": None,
                                  "worker": "", "lease_until": None, "next_start_at": None,
                                  "running_config": None}
        if code is not None:
            fields["last_exit_code"] = code
        if state in (EngineState.STOPPED, EngineState.FAILED):
            fields["stopped_at"] = timezone.now()
        if self._owned(engine).update(**fields) and engine.state != state:
            EngineEvent.objects.create(engine=engine, state=state, exit_code=code,
                                       detail=why[:500])
        self.streaks.pop(engine.pk, None)

    def _abandon(self, pk: int) -> None:
        run = self.procs.pop(pk)
        _signal(run.proc, signal.SIGKILL)
        run.proc.wait(5)
        run.log.close()
        log.warning("engine %s: no longer ours; its process %s was killed", pk, run.proc.pid)

    def _reap_orphan(self, engine: ManagedEngine) -> None:
        """Kill the process a dead monitor left running for this engine, if it is still
        there: the same machine, and the engine's own command line."""
        if not engine.pid or engine.hostname != self.hostname or engine.pk in self.procs:
            return
        try:
            proc = psutil.Process(engine.pid)
            cmdline = proc.cmdline()
        except (psutil.Error, OSError):
            return
        command = commands.command_for(engine.command)
        if command is None or tuple(cmdline[:len(command.argv)]) != command.argv \
                or str(engine.port) not in cmdline:
            return
        log.warning("engine %s: killing pid %s left by monitor %s", engine.pk, engine.pid,
                    engine.worker)
        try:
            os.killpg(engine.pid, signal.SIGTERM)
            proc.wait(STOP_GRACE_S)
        except (psutil.TimeoutExpired, OSError):
            proc.kill()
        EngineEvent.objects.create(engine=engine, state=EngineState.STOPPED, pid=engine.pid,
                                   detail="killed the process a stopped monitor left behind")

    # -- shutdown ----------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every engine this monitor runs and give the leases back; an engine still
        wanted running is queued for the next monitor."""
        for run in self.procs.values():
            if run.proc.poll() is None:
                _signal(run.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for run in self.procs.values():
            try:
                run.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(run.proc, signal.SIGKILL)
                run.proc.wait(5)
            run.log.close()
        for pk, run in self.procs.items():
            ManagedEngine.objects.filter(pk=pk, worker=self.worker).update(
                state=EngineState.QUEUED, pid=None, worker="", lease_until=None,
                last_exit_code=run.proc.returncode, running_config=None,
                state_reason="its monitor stopped; the next monitor starts it")
        ManagedEngine.objects.filter(worker=self.worker).update(worker="", lease_until=None)
        self.procs.clear()
        self._http.close()


class SupervisorThread:
    """The supervisor's own thread in the monitor: a start-up or a health wait never
    delays a probing round, and a round never delays a restart."""

    def __init__(self, worker: str):
        self.supervisor = Supervisor(worker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-supervisor",
                                        daemon=True)

    def start(self) -> SupervisorThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                close_old_connections()
                try:
                    self.supervisor.step()
                except Exception:  # noqa: BLE001 - keep supervising
                    log.exception("engine supervisor pass failed")
                self._stop.wait(self.supervisor.wait_s())
            self.supervisor.shutdown()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_GRACE_S + 10)
