"""A probe round's shape: a bounded number of probes at once, slow ones give their slot up,
and the monitor settles its heap before the first round."""

import asyncio
import gc

import pytest

from console.backends import Report
from console.models import Backend
from monitoring import probes, worker
from monitoring.collectors.gpu import GpuCollector
from tests.support.fake_nvml import FakeNvml


def in_flight_counter(monkeypatch, *, hold=None):
    """Wrap probes._probe_one: count the probes running at once (the most, and all)."""
    seen = {"now": 0, "most": 0, "started": 0}
    real = probes._probe_one

    async def counting(backend, adapter, deadline_s):
        seen["now"] += 1
        seen["started"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        try:
            if hold is not None:
                return await hold(backend, adapter, deadline_s)
            await asyncio.sleep(0.01)  # long enough for the others to pile up
            return await real(backend, adapter, deadline_s)
        finally:
            seen["now"] -= 1

    monkeypatch.setattr(probes, "_probe_one", counting)
    return seen


@pytest.mark.django_db
def test_a_round_runs_a_bounded_number_of_probes_at_once(fake, monkeypatch):
    monkeypatch.setattr(probes, "SLOW_PROBE_S", 60.0)  # none counts as slow here
    engine = fake("vllm")
    backends = [Backend.objects.create(name=f"b{i}", kind="vllm", base_url=engine.url)
                for i in range(3 * probes.PROBE_CONCURRENCY)]
    seen = in_flight_counter(monkeypatch)
    results = asyncio.run(probes.probe_backends(backends, deadline_s=10))
    assert seen["most"] == probes.PROBE_CONCURRENCY
    assert [r.backend.pk for r in results] == [b.pk for b in backends]  # the input's order
    assert {r.report.status for r in results} == {"healthy"}
    health_checks = [r for r in engine.requests if r["path"] == "/health"]
    assert len(health_checks) == len(backends)


def test_probes_waiting_on_the_network_give_their_slots_to_the_next(monkeypatch):
    """Every probe below waits until all have started: with slots held while waiting,
    only PROBE_CONCURRENCY would ever start and the round would never end."""
    monkeypatch.setattr(probes, "SLOW_PROBE_S", 0.01)
    backends = [Backend(pk=i, name=f"b{i}", kind="vllm", base_url="http://127.0.0.1:9")
                for i in range(1, 4 * probes.PROBE_CONCURRENCY + 1)]
    everyone: asyncio.Event | None = None

    async def hanging(backend, adapter, deadline_s):
        if seen["started"] == len(backends):
            everyone.set()
        await everyone.wait()
        return probes.ProbeResult(backend, Report("healthy"))

    seen = in_flight_counter(monkeypatch, hold=hanging)

    async def round_():
        nonlocal everyone
        everyone = asyncio.Event()
        async with asyncio.timeout(30):  # a guard: fail, not hang, when slots are held
            return await probes.probe_backends(backends, deadline_s=10)

    results = asyncio.run(round_())
    assert seen["most"] == len(backends)
    assert [r.report.status for r in results] == ["healthy"] * len(backends)


def test_settle_heap_freezes_what_start_up_built():
    assert gc.get_freeze_count() == 0
    try:
        worker.settle_heap()
        assert gc.get_freeze_count() > 10_000  # Django and the apps at least
    finally:
        gc.unfreeze()


@pytest.mark.django_db
def test_the_monitor_settles_its_heap_before_its_first_round(monkeypatch):
    events = []

    class Runner:
        def __init__(self, name):
            pass

        def start(self):
            events.append("jobs started")
            return self

        def stop(self):
            events.append("jobs stopped")

    monkeypatch.setattr(worker, "yield_cpu", lambda: events.append("niced"))
    monkeypatch.setattr(worker, "settle_heap", lambda: events.append("settled"))
    monkeypatch.setattr(worker.jobs, "JobRunner", Runner)
    monitor = worker.Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w1",
                             fixed_probe_interval=30)
    monitor.stopping = True  # no round: only what happens before and after them
    monitor.run_forever()
    assert events == ["niced", "settled", "jobs started", "jobs stopped"]


def test_the_monitor_yields_the_cpu_to_chat_and_the_engine():
    """TANGLAW_MONITOR_NICE (default 10) in a process of its own: never raised past 19,
    never lowered (a process already nicer keeps its niceness), 0 leaves it alone."""
    import os
    import subprocess
    import sys

    def niceness(env_value, start=0):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
        env.pop("TANGLAW_MONITOR_NICE", None)
        if env_value is not None:
            env["TANGLAW_MONITOR_NICE"] = env_value
        code = (f"import os; os.nice({start}); import django; django.setup(); "
                "from monitoring.worker import yield_cpu; print(yield_cpu(), os.nice(0))")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.split()

    base = os.nice(0)
    assert niceness(None) == [str(max(base, 10))] * 2
    assert niceness("0") == [str(base)] * 2
    assert niceness("5", start=12) == [str(min(19, base + 12))] * 2
