"""The benchmark parts that run inside one Django process (called by bench/run.py).

    python bench/inproc.py persistence|probing|dashboards|traces|audit --out FILE [--quick]

Each uses the database named by the environment (SQLite in TANGLAW_DATA_DIR unless
DATABASE_URL is set), migrates it first, and writes its numbers as JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.stats import pct, summary  # noqa: E402


def admin():
    from console.models import User

    user, _ = User.objects.get_or_create(username="bench", defaults={"role": "admin"})
    return user


class Statements:
    """Counts SQL statements on every connection (any thread) while active."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        with self.lock:
            self.count += 1
        return execute(sql, params, many, context)


def timed_pages(client, pages: dict[str, str], repeats: int, label: str) -> dict:
    """Server time of each page through the test client: p50, p95 and max over
    `repeats` requests after three that warm caches and templates."""
    out = {}
    for name, url in pages.items():
        times = []
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
            if i >= 3:
                times.append(elapsed)
        out[name] = {"url": url, "p50_ms": round(pct(times, 50), 1),
                     "p95_ms": round(pct(times, 95), 1), "max_ms": round(max(times), 1)}
        print(f"{label} {name}: p50 {out[name]['p50_ms']} ms, p95 {out[name]['p95_ms']} ms")
    return out


def written_bytes() -> int:
    """Bytes this process handed to write() (database file and WAL included)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


# -- persistence ----------------------------------------------------------------------
def persistence(quick: bool) -> dict:
    from agents import actions
    from agents.models import Agent
    from agents.runtime import TurnState
    from console import limits
    from console.audit import Actor
    from console.models import Backend

    user = admin()
    backend = Backend.objects.create(name="p", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    agent = Agent.objects.create(name="p", backend=backend, model="m")
    actor = Actor(user_id=user.pk, username=user.username, role="admin")
    turns = 10 if quick else 50
    out = {}
    # the first turn of a process also builds the agent's blueprint (agents.blueprints)
    # and reads the audit chain's head: not per-turn costs, so one turn runs uncounted
    warm = actions.prepare_message(actor, user, agent.pk, "warm up", None)
    actions.store_start(warm)
    actions.persist_turn(actor, agent, warm.conversation, "warm up",
                         TurnState(text="ok", finish_reason="stop", backend_id=backend.pk,
                                   model="m"), timezone.now(), user_saved=True)
    limits.release(warm.settings.slots)
    for label, tokens in (("short", 20), ("long", 2000)):
        reply = "".join(f"tok{i} " for i in range(tokens))
        counter = Statements()
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = written_bytes()
        with connection.execute_wrapper(counter):
            for _ in range(turns):
                started = timezone.now()
                prepared = actions.prepare_message(actor, user, agent.pk, "hello there", None)
                actions.store_start(prepared)
                conversation, turn = prepared.conversation, prepared.settings
                state = TurnState(text=reply, finish_reason="stop", backend_id=backend.pk,
                                  model="m", ttft_ms=12.0, total_ms=400.0, tokens_in=9,
                                  tokens_out=tokens)
                state.messages.append({"role": "assistant", "content": reply})
                actions.persist_turn(actor, agent, conversation, "hello there", state, started,
                                     user_saved=True)
                limits.release(turn.slots)
        wrote = written_bytes() - before
        out[label] = {"tokens": tokens, "reply_bytes": len(reply.encode()),
                      "statements_per_turn": round(counter.count / turns, 2),
                      "bytes_written_per_turn": round(wrote / turns),
                      "overhead_bytes_per_turn": round(wrote / turns - len(reply.encode()))}
        print(f"persistence {label}: {out[label]}")
    out["constant_statements"] = (out["short"]["statements_per_turn"]
                                  == out["long"]["statements_per_turn"])
    out["note"] = ("the turn's own transactions (question first, one at the end); a stream "
                   "longer than 5 s also saves one checkpoint UPDATE per 5 s")
    return out


def edge_backends(count: int) -> list:
    """`count` backends, each its own path on the fast server at BENCH_BACKEND_URL."""
    from console.models import Backend

    url = os.environ["BENCH_BACKEND_URL"]
    Backend.objects.bulk_create([
        Backend(name=f"edge-{i:03}", kind="openai_compatible", base_url=f"{url}/b{i}/v1")
        for i in range(count)])
    return list(Backend.objects.all())


class LoopWatch:
    """The event loop's lag while it works: a task that asks to wake every 5 ms and
    records how late it woke (ms). `async with LoopWatch(lags): ...`"""

    def __init__(self, lags: list[float]):
        self.lags, self.stop = lags, asyncio.Event()
        self.task: asyncio.Task | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            expected = loop.time() + 0.005
            await asyncio.sleep(0.005)
            self.lags.append((loop.time() - expected) * 1000)

    async def __aenter__(self) -> LoopWatch:
        self.task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


# -- probing ----------------------------------------------------------------------------
def probing(quick: bool) -> dict:
    from monitoring.probes import probe_backends
    from monitoring.worker import settle_heap

    count = 50 if quick else 200
    backends = edge_backends(count)
    ticks = 3 if quick else 10
    settle_heap()  # as the monitor does before its first round

    async def main():
        lags: list[float] = []
        durations, healthy = [], []
        async with LoopWatch(lags):
            for _ in range(ticks):
                started = time.perf_counter()
                results = await probe_backends(backends, deadline_s=15)
                durations.append((time.perf_counter() - started) * 1000)
                healthy.append(sum(1 for r in results if r.report.status == "healthy"))
                await asyncio.sleep(0.2)
        return durations, lags, healthy

    durations, lags, healthy = asyncio.run(main())
    out = {"backends": count, "ticks": ticks, "tick_ms": summary(durations),
           "loop_lag_ms": summary(lags), "healthy_per_tick": min(healthy)}
    print(f"probing: {count} backends, tick p50 {out['tick_ms']['p50']:.0f} ms, "
          f"loop lag p99 {out['loop_lag_ms']['p99']:.1f} ms")
    return out


# -- the fleet ---------------------------------------------------------------------------
def fleet_scrapes(quick: bool) -> dict:
    """Two monitors and 200 hosts, each a node exporter on the fast server: every target
    scraped once per interval (whichever monitor holds its lease), and the scraping
    monitor's event-loop lag while it scrapes and parses them."""
    import httpx

    from monitoring.models import Host, HostTarget, Lease
    from monitoring.worker import Monitor, settle_heap

    count = 50 if quick else 200
    intervals = 3 if quick else 8
    url = os.environ["BENCH_BACKEND_URL"]
    Host.objects.bulk_create([Host(name=f"edge-{i:03}", address=f"10.9.{i // 250}.{i % 250 + 1}")
                              for i in range(count)])
    HostTarget.objects.bulk_create([
        HostTarget(host=host, kind="node_exporter", url=f"{url}/h{host.pk}/metrics")
        for host in Host.objects.all()])
    monitors = [Monitor(worker="bench-a", fixed_probe_interval=30),
                Monitor(worker="bench-b", fixed_probe_interval=30)]
    settle_heap()
    lags: list[float] = []
    scrape_ms: list[float] = []
    claimed: list[list[int]] = []

    def watched(work):
        async def main():
            async with LoopWatch(lags):
                started = time.perf_counter()
                try:
                    return await work
                finally:
                    scrape_ms.append((time.perf_counter() - started) * 1000)
        return asyncio.run(main())

    readings = 0
    for _ in range(intervals):
        Lease.objects.filter(name__startswith="scrape:").delete()  # the next interval
        # both monitors reach the interval; the leases decide who scrapes what
        counts = []
        for monitor in monitors:
            done = monitor.scrape_hosts(run=watched)
            readings += done
            counts.append(done)
        claimed.append(counts)
    stats = httpx.get(f"{url}/bench/stats", timeout=10).json()["scrapes"]
    per_target = [stats.get(f"/h{pk}/metrics", 0)
                  for pk in HostTarget.objects.values_list("host_id", flat=True)]
    up = Host.objects.filter(status="up").count()
    out = {"hosts": count, "intervals": intervals, "monitors": len(monitors),
           "scrapes_per_target": {"min": min(per_target), "max": max(per_target)},
           "every_target_once_per_interval": min(per_target) == max(per_target) == intervals,
           "readings_per_interval": readings // intervals, "hosts_up": up,
           "scrape_ms": summary(scrape_ms), "loop_lag_ms": summary(lags),
           "body_bytes": int(httpx.get(f"{url}/h0/metrics", timeout=5).headers[
               "content-length"])}
    print(f"fleet: {count} hosts × {intervals} intervals, scrapes per target "
          f"{out['scrapes_per_target']}, scrape p50 {out['scrape_ms']['p50']:.0f} ms, "
          f"loop lag p99 {out['loop_lag_ms']['p99']:.1f} ms")
    return out


def probe_load(seconds: float) -> dict:
    """Probe 200 backends back to back for a while (the chat-beside-probing run)."""
    from monitoring.probes import probe_backends
    from monitoring.worker import settle_heap, yield_cpu

    backends = edge_backends(200)
    yield_cpu()  # as the monitor does before its first round
    settle_heap()
    ticks = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asyncio.run(probe_backends(backends, deadline_s=15))
        ticks += 1
    return {"ticks": ticks}


# -- dashboards ---------------------------------------------------------------------------
def dashboards(quick: bool) -> dict:
    from console import audit
    from console.models import AuditEvent, Backend
    from monitoring.models import Rollup, Sample
    from monitoring.store import EDGES, HOUR, MINUTE

    scale = 10 if quick else 1
    samples, events = 1_000_000 // scale, 1_000_000 // scale
    now = timezone.now().replace(second=0, microsecond=0)
    backends = Backend.objects.bulk_create([
        Backend(name=f"edge-{i}", kind="vllm", base_url=f"http://10.0.0.{i + 1}:8000")
        for i in range(10)])
    metrics = ["probe_latency_ms", "backend_up", "ttft_ms"]
    series = [(m, f"backend:{b.pk}") for b in backends for m in metrics]
    rng = random.Random(1)
    started = time.perf_counter()
    per_series = samples // len(series)
    step = timedelta(hours=48) / per_series
    batch = []
    for metric, scope in series:
        for i in range(per_series):
            batch.append(Sample(ts=now - i * step, metric=metric, scope=scope,
                                value=rng.random() * 100))
            if len(batch) == 20_000:
                Sample.objects.bulk_create(batch)
                batch = []
    Sample.objects.bulk_create(batch)
    hist = [0] * len(EDGES)
    rollups = []
    for metric, scope in series:
        for tier, count in ((MINUTE, 30 * 24 * 60 // scale), (HOUR, 30 * 24)):
            for i in range(count):
                value = rng.random() * 100
                rollups.append(Rollup(tier=tier, bucket=now - timedelta(seconds=tier * i),
                                      metric=metric, scope=scope, count=12, sum=value * 12,
                                      min=value, max=value, hist=hist))
                if len(rollups) == 20_000:
                    Rollup.objects.bulk_create(rollups)
                    rollups = []
    Rollup.objects.bulk_create(rollups)
    generated_metrics_s = time.perf_counter() - started

    started = time.perf_counter()
    prev, rows = audit.GENESIS, []
    actions = ["backend.updated", "agent.turn", "tool.called", "login.succeeded",
               "alert.fired"]
    actors = ["ana", "ben", "chidi", "dara", "system"]
    first_ts = now - timedelta(days=30)
    for seq in range(1, events + 1):
        event = AuditEvent(seq=seq, ts=first_ts + timedelta(seconds=seq * 2.5),
                           actor=rng.choice(actors), role="operator",
                           action=rng.choice(actions), target_type="agents.agent",
                           target_id=str(seq % 40), target_repr=f"agent {seq % 40}",
                           after={"tokens_out": seq % 500, "ttft_ms": 40.5},
                           outcome="success", prev_hash=prev)
        event.hash = audit.compute_hash(event)
        prev = event.hash
        rows.append(event)
        if len(rows) == 20_000:
            AuditEvent.objects.bulk_create(rows)
            rows = []
    AuditEvent.objects.bulk_create(rows)
    generated_audit_s = time.perf_counter() - started
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    client = Client(SERVER_NAME="localhost")
    client.force_login(admin())
    scope = backends[0].pk
    pages = {
        "overview": "/",
        "chart_24h": f"/api/metrics/series?metric=probe_latency_ms&backend={scope}&window=24h",
        "chart_30d": f"/api/metrics/series?metric=probe_latency_ms&backend={scope}&window=30d",
        "audit_unfiltered": "/audit/",
        "audit_filtered": "/audit/?action=tool.called&actor=ben",
    }
    out = {"samples": Sample.objects.count(), "rollups": Rollup.objects.count(),
           "audit_events": AuditEvent.objects.count(),
           "generate_s": {"metrics": round(generated_metrics_s, 1),
                          "audit": round(generated_audit_s, 1)}, "pages": {}}
    out["pages"] = timed_pages(client, pages, 10 if quick else 40, "dashboards")
    out["goal_p95_ms"] = 50
    out["met"] = all(p["p95_ms"] <= 50 for p in out["pages"].values())
    return out


# -- trace pages ---------------------------------------------------------------------------
def trace_pages(quick: bool) -> dict:
    """The trace list (unfiltered and filtered, first and a later keyset page) and one
    trace's view, server time through Django's test client, over 1,000,000 stored spans
    (125,000 eight-span traces of three agents over 14 days; a tenth with an error)."""
    from traces import queries
    from traces.models import Span, Trace

    scale = 10 if quick else 1
    traces = 125_000 // scale
    rng = random.Random(3)
    now_ns = time.time_ns()
    window_ns = 14 * 86400 * 10**9
    agents = ["weather-bot", "support-desk", "nightly-eval"]
    started = time.perf_counter()
    trace_rows, span_rows = [], []

    def flush():
        Trace.objects.bulk_create(trace_rows, batch_size=5000)
        Span.objects.bulk_create(span_rows, batch_size=5000)
        trace_rows.clear()
        span_rows.clear()

    from traces.store import when

    for n in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        start = now_ns - rng.randrange(window_ns)
        agent = agents[n % 3]
        failed = n % 10 == 0
        ids = [f"{rng.getrandbits(64):016x}" for _ in range(8)]
        duration = rng.randrange(200, 5000) * 10**6
        for i in range(8):
            s_start = start + i * duration // 10
            operation = ("invoke_agent" if i == 0 else "execute_tool" if i % 3 == 0
                         else "chat")
            span_rows.append(Span(
                trace_id=trace_id, span_id=ids[i], parent_id="" if i == 0 else ids[0],
                name=f"{operation} {agent if i == 0 else 'qwen'}", kind="internal",
                start_ns=s_start, end_ns=s_start + duration // 10, duration_ms=duration / 1e7,
                status="error" if failed and i == 3 else "unset", service="bench-app",
                operation=operation, agent=agent if i == 0 else "", model="qwen",
                tokens_in=40, tokens_out=12, external=True,
                attributes={"gen_ai.operation.name": operation, "gen_ai.request.model": "qwen",
                            "gen_ai.usage.input_tokens": 40}, received_at=when(start)))
        trace_rows.append(Trace(
            trace_id=trace_id, started_at=when(start), ended_at=when(start + duration),
            duration_ms=duration / 1e6, name=f"invoke_agent {agent}", has_root=True,
            service="bench-app", agent=agent, external=True,
            status="error" if failed else "unset", model="qwen", tokens_in=240,
            tokens_out=72, span_count=8, error_count=1 if failed else 0))
        if len(span_rows) >= 40_000:
            flush()
    flush()
    generated_s = time.perf_counter() - started
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    client = Client(SERVER_NAME="localhost")
    client.force_login(admin())
    some = Trace.objects.order_by("-started_at")[traces // 2]
    rows, cursor = queries.page(queries.filtered({}), "", 50)
    for _ in range(20):  # twenty pages in
        rows, cursor = queries.page(queries.filtered({}), cursor or "", 50)
    pages = {
        "list": "/traces/", "list_agent": "/traces/?agent=weather-bot",
        "list_errors": "/traces/?status=error", "list_slow": "/traces/?min_ms=4500",
        "list_since_1h": "/traces/?since=1h", "list_page_21": f"/traces/?cursor={cursor}",
        "view": f"/traces/{some.trace_id}/",
        "api_list": "/api/traces?agent=support-desk&status=error",
        "api_view": f"/api/traces/{some.trace_id}",
    }
    out = {"spans": Span.objects.count(), "traces": Trace.objects.count(),
           "generate_s": round(generated_s, 1), "pages": {}}
    out["pages"] = timed_pages(client, pages, 10 if quick else 40, "traces")
    out["goal_p95_ms"] = 50
    out["met"] = all(p["p95_ms"] <= 50 for p in out["pages"].values())
    return out


# -- audit throughput ----------------------------------------------------------------------
def audit_throughput(quick: bool) -> dict:
    from django.db import close_old_connections

    from console import audit
    from console.audit import Actor

    seconds = 3 if quick else 10
    out = {"vendor": connection.vendor, "checkpoint_every":
           settings.TANGLAW_AUDIT_CHECKPOINT_EVERY, "runs": []}
    for threads in (1, 4):
        counts = [0] * threads
        stop = time.monotonic() + seconds

        def writer(n: int, counts=counts, stop=stop) -> None:
            actor = Actor.system(f"bench-{n}")
            while time.monotonic() < stop:
                audit.record("backend.updated", actor, target_type="console.backend",
                             target_id=n, after={"n": counts[n]})
                counts[n] += 1
            close_old_connections()
            connection.close()

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        [w.start() for w in workers]
        [w.join() for w in workers]
        verified = audit.verify()
        out["runs"].append({"threads": threads, "events": sum(counts),
                            "events_per_s": round(sum(counts) / seconds),
                            "chain_ok": verified.ok})
        print(f"audit {connection.vendor} threads={threads}: "
              f"{sum(counts) / seconds:.0f} events/s, chain ok={verified.ok}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["persistence", "probing", "probe-load", "dashboards",
                                         "traces", "audit", "fleet"])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    call_command("migrate", verbosity=0, interactive=False)
    if args.part == "persistence":
        result = persistence(args.quick)
    elif args.part == "probing":
        result = probing(args.quick)
    elif args.part == "fleet":
        result = fleet_scrapes(args.quick)
    elif args.part == "probe-load":
        result = probe_load(args.seconds)
    elif args.part == "dashboards":
        result = dashboards(args.quick)
    elif args.part == "traces":
        result = trace_pages(args.quick)
    else:
        result = audit_throughput(args.quick)
    args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
