"""The monitor: probe, collect, roll up, prune, evaluate alerts, notify, advise, run
model pulls (console.jobs: a thread of its own, so a long pull never delays a round),
experiments (evals.runner: another) and the managed engines (engines.supervisor: another).

One small method per step, so tests call them directly. Work that must happen
once per interval across several monitor processes is claimed with a
conditional UPDATE on a Lease row (`claim`); host metrics are claimed per host
name, so two monitors on one machine do not both record it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from agents.actions import prune_comparisons
from console import egress, jobs
from console.actions.backends import record_probe
from console.models import Backend
from engines.supervisor import SupervisorThread
from evals.runner import ExperimentRunner
from monitoring import alerts, fleet, notify, store, traffic
from monitoring.collectors import Reading
from monitoring.collectors.gpu import GpuCollector
from monitoring.collectors.host import HostCollector
from monitoring.models import Heartbeat, HostTarget, Lease, State
from monitoring.probes import ProbeResult, active_probe, describe_error, probe_backends
from traces import retention

log = logging.getLogger("tanglaw.monitor")
GPU_PROCESS_EVERY = 6  # rounds between per-process GPU memory reads


def yield_cpu() -> int:
    """Lower this process's CPU priority by TANGLAW_MONITOR_NICE (at most to 19): when
    the cores are busy, chat turns and the engine run before a probing round. Returns
    the niceness now."""
    wanted = min(19, settings.TANGLAW_MONITOR_NICE)
    current = os.nice(0)
    return os.nice(wanted - current) if wanted > current else current


def settle_heap() -> None:
    """Before the first round: load the HTTP stack and its TLS context (~100 ms of imports
    and CA bundle, else paid on the first round's loop), collect once, then leave what
    start-up built (Django, the apps, the SDKs: ~200,000 objects) out of every later
    collection: each full collection walked all of it and stopped the probing loop for
    150-350 ms (bench/: the loop's worst lags)."""
    egress.client()  # never used: no connection to close
    gc.collect()
    gc.freeze()


def probe_interval() -> int:
    """The probe interval: set in the UI (State) or from TANGLAW_PROBE_INTERVAL_S."""
    state = State.objects.filter(key="probe_interval_s").first()
    return int(state.value) if state else settings.TANGLAW_PROBE_INTERVAL_S


class Monitor:
    def __init__(self, *, host_interval: int | None = None, gpu: GpuCollector | None = None,
                 worker: str | None = None, fixed_probe_interval: int | None = None):
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.hostname = socket.gethostname()
        self.host_interval = host_interval or settings.TANGLAW_HOST_INTERVAL_S
        self.fixed_probe_interval = fixed_probe_interval
        self.host = HostCollector(settings.DATA_DIR)
        self.gpu = gpu or GpuCollector()
        self.started_at = timezone.now()
        self.rounds = 0
        self.stopping = False
        self._counters: dict[int, tuple[float, float]] = {}  # backend → (time, tokens)

    @property
    def probe_interval(self) -> int:
        return self.fixed_probe_interval or probe_interval()

    # -- coordination ------------------------------------------------------------
    def claim(self, name: str, seconds: float) -> bool:
        """True if this monitor gets `name` for the next `seconds` (nobody else does)."""
        now = timezone.now()
        Lease.objects.get_or_create(name=name, defaults={"until": now})
        return bool(Lease.objects.filter(name=name, until__lte=now).update(
            owner=self.worker, until=now + timedelta(seconds=seconds), done_at=now))

    def heartbeat(self, *, round_done: bool = False) -> None:
        now = timezone.now()
        fields: dict[str, Any] = {"pid": os.getpid(), "hostname": self.hostname,
                                  "started_at": self.started_at, "seen_at": now,
                                  "rounds": self.rounds}
        if round_done:
            fields["last_round_at"] = now
        Heartbeat.objects.update_or_create(worker=self.worker, defaults=fields)

    # -- steps -------------------------------------------------------------------
    def probe(self) -> list[ProbeResult]:
        backends = list(Backend.objects.filter(enabled=True))
        if not backends:
            return []
        deadline = max(2.0, min(15.0, self.probe_interval * 0.8))
        results = asyncio.run(probe_backends(backends, deadline_s=deadline))
        now = timezone.now()
        readings = []
        unloads = dict(State.objects.filter(key__startswith="unloads:")
                       .values_list("key", "value"))
        for result in results:
            try:  # one backend's row (a name, a model list) must not lose the others'
                record_probe(result.backend, result.report)
                readings += result.readings() + self._throughput(result)
                if result.report.models:  # for the advisor's "does it fit" and "unload" rules
                    State.objects.update_or_create(key=f"models:{result.backend.pk}",
                                                   defaults={"value": result.report.models})
                    key = f"unloads:{result.backend.pk}"
                    if unloads.get(key) != result.report.unloads:  # rarely changes
                        State.objects.update_or_create(
                            key=key, defaults={"value": result.report.unloads})
            except Exception:  # noqa: BLE001
                log.exception("storing the probe of backend %s failed", result.backend.pk)
        store.record(readings, now)
        return results

    def _throughput(self, result: ProbeResult) -> list[Reading]:
        """Generated tokens per second across the engine, from its counter's growth."""
        total = result.engine.get("engine_generation_tokens_total")
        pk = result.backend.pk
        if total is None:
            self._counters.pop(pk, None)
            return []
        now = time.monotonic()
        previous = self._counters.get(pk)
        self._counters[pk] = (now, total)
        if previous is None or total < previous[1] or now <= previous[0]:
            return []  # first reading, or the engine restarted
        return [Reading("engine_throughput_tokens_per_s", f"backend:{pk}",
                        (total - previous[1]) / (now - previous[0]))]

    def active_probes(self) -> int:
        """The optional 1-token completions, each backend at its own interval."""
        due = [b for b in Backend.objects.filter(enabled=True, active_probe_interval_s__gt=0)
               .exclude(status="unhealthy")
               if self.claim(f"active:{b.pk}", b.active_probe_interval_s * 0.95)]
        if not due:
            return 0

        async def run_all():
            return await asyncio.gather(*(active_probe(b) for b in due))

        results = asyncio.run(run_all())
        readings = []
        for backend, result in zip(due, results, strict=True):
            if result is None:
                continue
            ttft, rate = result
            readings.append(Reading("probe_ttft_ms", f"backend:{backend.pk}", ttft))
            if rate is not None:
                readings.append(Reading("probe_tokens_per_s", f"backend:{backend.pk}", rate))
        return store.record(readings)

    def scrape_hosts(self, run: Any = asyncio.run) -> int:
        """The fleet's exporters: each target once per interval, whichever monitor holds
        its lease (the others skip it). The round's own lease keeps rounds apart; a
        target's lasts half an interval, so the next round (which may start a few
        seconds early, when its probes are quicker) always finds it free."""
        targets = [t for t in HostTarget.objects.filter(host__enabled=True)
                   .select_related("host").order_by("pk")
                   if self.claim(f"scrape:{t.pk}", self.probe_interval * 0.5)]
        return fleet.scrape_targets(targets, run)

    def collect_host(self) -> int:
        readings = self.host.collect()
        local = Backend.objects.filter(enabled=True).only("pk", "base_url")
        readings += self.host.backend_processes(local)
        readings += self.gpu.collect()
        State.objects.update_or_create(key=f"gpu:{self.hostname}", defaults={"value": {
            "available": self.gpu.available, "reason": self.gpu.reason,
            "driver": self.gpu.driver, "devices": self.gpu.describe()}})
        return store.record(readings)

    def gpu_processes(self) -> None:
        if self.gpu.available:
            State.objects.update_or_create(key=f"gpu_processes:{self.hostname}",
                                           defaults={"value": self.gpu.processes()})

    def traffic(self) -> int:
        return traffic.ingest_runs() + traffic.ingest_gateway() + traffic.ingest_spans()

    def rollup(self) -> dict[str, int]:
        return store.rollup()

    def prune(self) -> dict[str, int]:
        return {**store.prune(), **{f"trace_{k}": v for k, v in retention.prune().items()},
                "comparisons": prune_comparisons()}

    def evaluate(self) -> dict[str, int]:
        return alerts.evaluate()

    def notify(self) -> dict[str, int]:
        return notify.run_due(self.worker)

    def verify_audit(self, every_s: int = 3600) -> bool | None:
        """Walk the audit chain and its signed checkpoints (hourly, one monitor); record
        `audit_chain_ok` so the default rule alerts when it breaks. None: not due."""
        if not self.claim("audit_verify", every_s * 0.95):
            return None
        from console import audit

        result = audit.verify()
        store.record([Reading("audit_chain_ok", "audit", 1.0 if result.ok else 0.0)])
        if not result.ok:
            log.error("audit log verification failed at #%s: %s", result.first_bad,
                      result.reason)
            State.objects.update_or_create(key="audit_verify", defaults={"value": {
                "ok": False, "first_bad": result.first_bad, "reason": result.reason}})
        else:
            State.objects.update_or_create(key="audit_verify", defaults={"value": {
                "ok": True, "checked": result.checked}})
        return result.ok

    def audit_head(self) -> int | None:
        """Record the audit chain's head in the heads file when the log grew since the last
        one and that is older than TANGLAW_AUDIT_HEAD_INTERVAL_S: events only record heads
        when written, so a quiet tail needs the tick. The seq recorded, or None."""
        from console import audit

        return audit.record_quiet_head()

    def run_jobs(self) -> dict[str, int]:
        """Fail pulls whose monitor died; claim queued ones and run them to the end. The
        long-running loop uses a JobRunner instead, which does not wait for them."""
        return jobs.step(self.worker)

    def advise(self) -> dict[str, int]:
        from monitoring import advisor

        return advisor.run()

    def automate(self) -> dict[str, int]:
        from monitoring import automation

        return automation.run()

    # -- rounds ------------------------------------------------------------------
    def round(self, *, force: bool = False) -> dict[str, Any]:
        """A full round. Skipped (returns {}) when another monitor has this interval."""
        if not force and not self.claim("round", self.probe_interval * 0.9):
            return {}
        # when the round was claimed (the database's clock decides who gets it): the log
        # line lets an operator, and the two-monitor test, see that rounds never overlap
        summary: dict[str, Any] = {"claimed_at": timezone.now().isoformat(),
                                   "worker": self.worker}
        steps: list[tuple[str, Any]] = [
            ("probed", lambda: len(self.probe())), ("active_probes", self.active_probes),
            ("fleet_samples", self.scrape_hosts)]
        if force or self.claim(f"host:{self.hostname}", self.host_interval * 0.9):
            steps.append(("host_samples", self.collect_host))
        steps += [("runs", self.traffic), ("rollup", self.rollup), ("pruned", self.prune),
                  ("alerts", self.evaluate), ("notifications", self.notify),
                  ("recommendations", self.advise), ("automation", self.automate),
                  ("audit_ok", self.verify_audit),
                  ("audit_head", self.audit_head)]
        if self.rounds % GPU_PROCESS_EVERY == 0:
            steps.append(("gpu_processes", self.gpu_processes))
        for name, step in steps:
            summary[name] = self._step(name, step)
        self.rounds += 1
        self.heartbeat(round_done=True)
        return summary

    def _step(self, name: str, step) -> Any:
        """Run one step of a round; a failure is logged and recorded, and the round goes
        on, so one bad row never stops the alerts, notifications or the audit check."""
        try:
            return step()
        except Exception as exc:  # noqa: BLE001
            log.exception("monitor step %s failed", name)
            return {"error": describe_error(exc)}

    def run_forever(self) -> None:
        log.info("monitor %s: probes every %ss, host every %ss", self.worker,
                 self.probe_interval, self.host_interval)
        yield_cpu()
        settle_heap()
        last_round = next_round = next_host = 0.0
        runner = jobs.JobRunner(self.worker).start()
        experiments = ExperimentRunner(self.worker).start()
        supervisor = SupervisorThread(self.worker).start() \
            if settings.TANGLAW_ENGINE_SUPERVISOR else None
        while not self.stopping:
            close_old_connections()
            now = time.monotonic()
            try:
                # a shorter interval set in the UI applies at the next host tick, not
                # after the long wait already under way
                next_round = min(next_round, last_round + self.probe_interval)
                if now >= next_round:
                    summary = self.round()
                    if summary:
                        log.info("round: %s", summary)
                    last_round, next_round = now, now + self.probe_interval
                elif now >= next_host:
                    if self.claim(f"host:{self.hostname}", self.host_interval * 0.9):
                        self.collect_host()
                    self.notify()
                    self.heartbeat()
                next_host = now + self.host_interval
            except Exception:  # noqa: BLE001 - one bad round must not stop monitoring
                log.exception("monitor round failed; trying again next interval")
                last_round, next_round = now, now + self.probe_interval
            deadline = min(next_round, next_host)
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.2)
        runner.stop()  # its pulls go back in the queue for the next monitor
        experiments.stop()  # and its experiments
        if supervisor is not None:
            supervisor.stop()  # its engines stop, queued for the next monitor
        Heartbeat.objects.filter(worker=self.worker).delete()
        log.info("monitor %s stopped", self.worker)
