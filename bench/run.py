"""`make bench`: Tanglaw measured beside a direct connection and LiteLLM, in one run.

Starts the fast scripted backend (bench/fastserver.py), Tanglaw (`manage.py serve
--no-monitor`, SQLite in a temp dir), LiteLLM's proxy (its own venv, `openai/` model
pointing at the same backend, no database), then measures, with the paths
interleaved round by round:

- added time to first token and per-token transit, direct vs Tanglaw WebSocket vs
  Tanglaw HTTP (SSE) vs LiteLLM, at concurrency 1, 16 and 64, and Tanglaw's CPU time
  per 1,000 tokens it relayed;
- the same Tanglaw paths under each ASGI server (`--servers`: Daphne, uvicorn,
  granian; one `serve` per server on one data directory, their paths interleaved
  in the same rounds);
- concurrent WebSocket streams, ramped until a token is lost or reordered or a gap
  exceeds 10x the backend's; CPU time per 1,000 tokens;
- the in-process parts (bench/inproc.py): persistence per turn, probing 200
  backends, dashboards over 1 M rows, audit throughput on SQLite and PostgreSQL.

Writes bench/results/<date>-<sha>.json and rewrites the results section of
docs/benchmarks.md. `--quick` runs fewer rounds and smaller data sets (a smoke test,
not for the record).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load, report  # noqa: E402
from bench.stats import median_of, rounds_summary, summary  # noqa: E402
from console.cluster import free_port  # noqa: E402
from console.web import DEFAULT_SERVER, SERVERS  # noqa: E402
from tests.support.console_server import signed_in  # noqa: E402
from tests.support.llama_server import wait_until_up  # noqa: E402

PASSWORD = "bench-passphrase-1234"
MASTER_KEY = "sk-bench-" + "0" * 32
PATHS = ("direct", "tanglaw_ws", "tanglaw_sse", "tanglaw_gateway", "litellm")
TANGLAW_PATHS = ("tanglaw_ws", "tanglaw_sse")
GATEWAY = "tanglaw_gateway"  # /v1/chat/completions pass-through, on the default server
LLAMA_TOKENS = 32


def wait_http(url: str, process: Process, what: str, timeout: float = 120) -> None:
    """Until `url` answers 200 (tests' helper: fails at once, with the log, if it exits)."""
    if not wait_until_up(process.proc, url, process.log, timeout, what):
        raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


class Process:
    def __init__(self, name: str, command: list[str], logs: Path, **kwargs):
        self.name = name
        self.log = logs / f"{name}.log"
        self.proc = subprocess.Popen(command, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def cpu_s(self) -> float:
        """CPU seconds of the process and its children (the ASGI server under `serve`,
        granian's worker under granian)."""
        try:
            me = psutil.Process(self.proc.pid)
            procs = [me, *me.children(recursive=True)]
            return sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        except psutil.Error:
            return 0.0


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="tanglaw-bench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.processes: list[Process] = []
        self.results: dict = {"notes": []}
        self.servers: list[str] = list(args.servers)
        # the existing result keys (latency.*.tanglaw_ws…) are this server's
        self.default_server = DEFAULT_SERVER if DEFAULT_SERVER in self.servers else \
            self.servers[0]
        self.instances: dict[str, Process] = {}
        self.bases: dict[str, str] = {}

    # -- servers -------------------------------------------------------------------
    def start(self, stack: ExitStack) -> None:
        a = self.args
        self.backend_port = free_port()
        self.backend = self.spawn("fastserver", [
            sys.executable, str(ROOT / "bench" / "fastserver.py"), "--port",
            str(self.backend_port), "--ttft-ms", str(a.ttft_ms), "--tokens", str(a.tokens),
            "--gap-ms", str(a.gap_ms)])
        self.backend_url = f"http://127.0.0.1:{self.backend_port}"
        wait_http(f"{self.backend_url}/health", self.backend, "backend")
        stack.callback(self.stop_all)

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TANGLAW_", "DJANGO_", "DATABASE_", "REDIS_"))}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "TANGLAW_DATA_DIR": str(self.tmp / "data"),
            "TANGLAW_ADMIN_PASSWORD": PASSWORD, "PORT": str(self.port),
            # the benchmark is one user driving hundreds of chats: lift the per-user caps
            "TANGLAW_API_RATE": "1000000/m", "TANGLAW_CHAT_RATE": "1000000/m",
            "TANGLAW_MAX_GENERATIONS_PER_USER": "10000", "TANGLAW_MAX_SOCKETS_PER_USER": "100000",
            "TANGLAW_MAX_GENERATIONS_PER_BACKEND": "10000", "LOG_LEVEL": "WARNING",
            # the traces part measures what the console takes, not the per-key rate
            "TANGLAW_OTLP_SPANS_PER_S": "1000000"})
        self.tanglaw = self.start_tanglaw(self.default_server, self.port)
        self.setup_tanglaw()
        # the other servers: the same data directory (same users, sessions, agents), one
        # at a time so only one migrates; idle while another server's path runs
        for server in self.servers:
            if server != self.default_server:
                self.start_tanglaw(server, free_port())
        self.llama = None
        if "llamacpp" in a.parts:
            try:
                self.start_llama()
                stack.callback(self.llama.stop)
            except RuntimeError as exc:
                self.results["notes"].append(f"llama.cpp part skipped: {exc}")
                self.llama = None

        self.litellm_url = None
        self.rps_port = free_port()  # the gateway throughput part's instant backend
        binary = Path(a.litellm)
        if binary.exists():
            lport = free_port()
            config = self.tmp / "litellm.yaml"
            config.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n"
                f"      model: openai/bench\n      api_base: http://127.0.0.1:{self.backend_port}/v1\n"
                "      api_key: none\n" + (
                    "  - model_name: tiny\n    litellm_params:\n      model: openai/tiny\n"
                    f"      api_base: {self.llama.url}/v1\n      api_key: none\n"
                    if self.llama else "") +
                "  - model_name: rps\n    litellm_params:\n      model: openai/bench\n"
                f"      api_base: http://127.0.0.1:{self.rps_port}/v1\n      api_key: none\n"
                "litellm_settings:\n  telemetry: false\n")
            env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY,
                   "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            self.litellm = self.spawn("litellm", [str(binary), "--config", str(config),
                                                  "--port", str(lport), "--num_workers", "1"],
                                      env=env, cwd=self.tmp)
            wait_http(f"http://127.0.0.1:{lport}/health/liveliness", self.litellm,
                      "litellm", timeout=180)
            self.litellm_url = f"http://127.0.0.1:{lport}/v1/chat/completions"
        else:
            self.results["notes"].append(f"LiteLLM not found at {binary}: not compared")

    def start_tanglaw(self, server: str, port: int) -> Process:
        name = "tanglaw" if server == self.default_server else f"tanglaw-{server}"
        process = self.spawn(name, [sys.executable, "manage.py", "serve", "--no-monitor",
                                    "--server", server], cwd=ROOT,
                             env={**self.env, "PORT": str(port)})
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/login/", process, name, timeout=180)
        self.instances[server], self.bases[server] = process, base
        return process

    def spawn(self, name: str, command: list[str], **kwargs) -> Process:
        process = Process(name, command, self.logs, **kwargs)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]}: {done.stderr[-1500:]}")
        return done.stdout

    def setup_tanglaw(self) -> None:
        token = self.manage("create_api_token", "admin").strip()
        self.api_headers = {"Authorization": f"Bearer {token}"}
        self.agent_id = self.bench_agent("bench", self.backend_port)
        client = signed_in(self.base, PASSWORD)
        self.cookie = f"sessionid={client.cookies['sessionid']}"
        client.close()

    def bench_agent(self, name: str, port: int) -> int:
        """A backend on a fast server at `port` and an agent on it (the API, as an
        operator would): the agent's id."""
        with httpx.Client(base_url=self.base, headers=self.api_headers, timeout=30) as api:
            backend = api.post("/api/backends", json={
                "name": name, "kind": "openai_compatible",
                "base_url": f"http://127.0.0.1:{port}/v1"})
            backend.raise_for_status()
            agent = api.post("/api/agents", json={
                "name": name, "backend_id": backend.json()["id"], "model": "bench",
                "max_tokens": 8192, "tool_ids": []})
            agent.raise_for_status()
            return agent.json()["id"]

    # -- relay cost ------------------------------------------------------------------------
    RELAY = {  # label: (gap between tokens ms, tokens per stream, streams at once)
        "one_token_per_frame": (20, 300, 8),  # slower than the 20 ms batch: a frame each
        "batched": (0, 2000, 4),  # as fast as the backend writes: merged frames
    }

    def fast_backend(self, name: str, port: int, *, ttft_ms: float, tokens: int,
                     gap_ms: float) -> Process:
        """A fast scripted backend on `port`, started and answering."""
        backend = self.spawn(name, [
            sys.executable, str(ROOT / "bench" / "fastserver.py"), "--port", str(port),
            "--ttft-ms", str(ttft_ms), "--tokens", str(tokens), "--gap-ms", str(gap_ms)])
        wait_http(f"http://127.0.0.1:{port}/health", backend, name)
        return backend

    def relay_costs(self, prefix: str, measure) -> dict:
        """Tanglaw's CPU per 1,000 relayed tokens for each RELAY shape: `measure(name,
        agent_id, tokens, streams)` runs the streams (after a warm-up) on a backend and
        agent called `name` and returns (samples, CPU seconds of the measured part)."""
        out = {}
        for label, (gap, tokens, streams) in self.RELAY.items():
            port = free_port()
            name = f"{prefix}-{label}".replace("_", "-")
            backend = self.fast_backend(f"fastserver-{name}", port, ttft_ms=0, tokens=tokens,
                                        gap_ms=gap)
            samples, cpu = measure(name, self.bench_agent(name, port), tokens, streams)
            relayed = sum(s.tokens for s in samples)
            out[label] = {"gap_ms": gap, "tokens_per_stream": tokens, "streams": streams,
                          "tokens": relayed, "lost": sum(not s.ok for s in samples),
                          "cpu_s": round(cpu, 3),
                          "cpu_ms_per_1000_tokens": round(cpu * 1e6 / relayed, 1)
                          if relayed else None}
            print(f"{prefix} {label}: {out[label]['cpu_ms_per_1000_tokens']} ms CPU per "
                  f"1,000 tokens", flush=True)
            backend.stop()
        return out

    def relay(self) -> None:
        """Tanglaw's CPU per 1,000 relayed tokens on the WebSocket, long streams (so the
        turn's own start and save are a small share): a stream slow enough that every
        token is its own frame, and a fast one whose tokens are merged."""

        def measure(name, agent_id, tokens, streams):
            async def main():
                sockets = [load.TanglawSocket(self.base, self.cookie, agent_id)
                           for _ in range(streams)]
                await asyncio.gather(*(s.turn(tokens) for s in sockets))  # warm-up
                cpu0 = self.tanglaw.cpu_s()
                samples = await asyncio.gather(*(s.turn(tokens) for s in sockets))
                cpu = self.tanglaw.cpu_s() - cpu0
                await asyncio.gather(*(s.close() for s in sockets))
                return samples, cpu

            return asyncio.run(main())

        self.results["relay"] = self.relay_costs("relay", measure)

    # -- the gateway -------------------------------------------------------------------------
    def gateway(self) -> None:
        """The gateway's pass-through beyond the latency table: its CPU per 1,000 relayed
        tokens, non-streamed requests/s at ≤ 100 ms added p99 beside LiteLLM's, and
        whether its x-tanglaw-overhead-ms agrees with what a client measures."""
        url = self.base + "/v1/chat/completions"

        def measure(name, agent_id, tokens, streams):
            async def streams_once():
                async with httpx.AsyncClient(timeout=120) as client:
                    return await asyncio.gather(*(load.openai_stream(
                        client, url, self.api_headers, tokens, f"{name}/bench")
                        for _ in range(streams)))

            asyncio.run(streams_once())  # warm-up
            cpu0 = self.tanglaw.cpu_s()
            samples = asyncio.run(streams_once())
            return samples, self.tanglaw.cpu_s() - cpu0

        out: dict = {"relay": self.relay_costs("gateway-relay", measure)}
        out["throughput"] = self.gateway_throughput()
        out["overhead_header"] = self.overhead_agreement()
        self.results["gateway"] = out

    def gateway_throughput(self) -> dict:
        """Non-streamed requests at rising concurrency against an instant backend: per
        path the best requests/s whose p99 is ≤ 100 ms above direct's at that load."""
        port = self.rps_port
        backend = self.fast_backend("fastserver-rps", port, ttft_ms=0, tokens=8, gap_ms=0)
        self.bench_agent("rps", port)
        targets = {"direct": (f"http://127.0.0.1:{port}/v1/chat/completions", {}, "bench"),
                   GATEWAY: (self.base + "/v1/chat/completions", self.api_headers,
                             "rps/bench")}
        if self.litellm_url:
            targets["litellm"] = (self.litellm_url, {"Authorization": f"Bearer {MASTER_KEY}"},
                                  "rps")
        levels = [1, 4, 16, 32, 64]
        table: dict = {}
        for c in levels:
            for path, (url, headers, model) in targets.items():
                async def main(url=url, headers=headers, model=model, c=c):
                    limits = httpx.Limits(max_connections=c + 4)
                    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                        async def user():
                            return [await load.openai_whole(client, url, headers, model)
                                    for _ in range(max(8, 160 // c))]

                        await user()  # warm-up
                        started = time.perf_counter()
                        groups = await asyncio.gather(*(user() for _ in range(c)))
                        return groups, time.perf_counter() - started

                groups, seconds = asyncio.run(main())
                latencies = [ms_ for g in groups for ms_, err in g if not err]
                errors = sum(1 for g in groups for _, err in g if err)
                stats = summary(latencies)
                table.setdefault(str(c), {})[path] = {
                    "rps": round(len(latencies) / seconds, 1), "p50": stats["p50"],
                    "p99": stats["p99"], "errors": errors}
            row = table[str(c)]
            for path in row:
                if path != "direct" and row[path]["p99"] is not None:
                    row[path]["added_p99"] = round(row[path]["p99"] - row["direct"]["p99"], 1)
            print(f"throughput c={c}: " + ", ".join(f"{p} {v['rps']} rps p99 {v['p99']:.1f} ms"
                                                    for p, v in row.items()), flush=True)
        best = {}
        for path in targets:
            if path == "direct":
                continue
            ok = [table[str(c)][path]["rps"] for c in levels
                  if table[str(c)][path].get("added_p99") is not None
                  and table[str(c)][path]["added_p99"] <= 100
                  and not table[str(c)][path]["errors"]]
            best[path] = max(ok) if ok else None
        backend.stop()
        return {"levels": table, "best_rps_within_100ms": best}

    def overhead_agreement(self) -> dict:
        """Concurrency 1, direct and gateway alternating on the latency backend: the
        median gateway-minus-direct TTFT beside the median header value."""
        url = self.base + "/v1/chat/completions"
        direct = f"{self.backend_url}/v1/chat/completions"
        expected = self.args.tokens

        async def main():
            pairs = []
            async with httpx.AsyncClient(timeout=60) as client:
                for i in range(41):
                    d = await load.openai_stream(client, direct, {}, expected)
                    g = await load.openai_stream(client, url, self.api_headers, expected,
                                                 "bench/bench")
                    if i and d.tokens and g.tokens and g.overhead_ms is not None:
                        pairs.append((g.ttft_ms - d.ttft_ms, g.overhead_ms))
            return pairs

        pairs = asyncio.run(main())
        added = summary([a for a, _ in pairs])["p50"]
        header = summary([h for _, h in pairs])["p50"]
        return {"requests": len(pairs), "client_added_ttft_p50_ms": added,
                "header_p50_ms": header,
                "difference_ms": round(abs(added - header), 2)
                if added is not None and header is not None else None}

    # -- latency ---------------------------------------------------------------------
    def fast_target(self) -> dict:
        return {"direct": f"{self.backend_url}/v1/chat/completions", "model": "bench",
                "agent_id": self.agent_id, "sse": f"/api/agents/{self.agent_id}/chat/stream",
                "expected": self.args.tokens, "plain": False, "max_tokens": None,
                "gateway_model": "bench/bench"}

    def server_of(self, path: str) -> str | None:
        """The ASGI server a path goes through: `tanglaw_ws` is the default server's,
        `tanglaw_ws@uvicorn` uvicorn's; None for direct and LiteLLM."""
        kind, _, server = path.partition("@")
        if kind == GATEWAY:
            return self.default_server
        return (server or self.default_server) if kind in TANGLAW_PATHS else None

    async def one_path(self, path: str, concurrency: int, per_user: int,
                       target: dict | None = None) -> list[load.Sample]:
        t = target or self.fast_target()
        expected, plain = t["expected"], t["plain"]
        server = self.server_of(path)
        base = self.bases[server] if server else self.base
        path = path.partition("@")[0]
        limits = httpx.Limits(max_connections=concurrency + 8,
                              max_keepalive_connections=concurrency + 8)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            async def user() -> list[load.Sample]:
                out = []
                socket = (load.TanglawSocket(base, self.cookie, t["agent_id"])
                          if path == "tanglaw_ws" else None)
                try:
                    for _ in range(per_user):
                        if path == "direct":
                            out.append(await load.openai_stream(
                                client, t["direct"], {}, expected, t["model"],
                                t["max_tokens"], plain))
                        elif path == "litellm":
                            out.append(await load.openai_stream(
                                client, self.litellm_url,
                                {"Authorization": f"Bearer {MASTER_KEY}"}, expected,
                                t["model"], t["max_tokens"], plain))
                        elif path == GATEWAY:
                            out.append(await load.openai_stream(
                                client, base + "/v1/chat/completions", self.api_headers,
                                expected, t["gateway_model"], t["max_tokens"], plain))
                        elif path == "tanglaw_sse":
                            out.append(await load.tanglaw_sse(client, base + t["sse"],
                                                              self.api_headers, expected,
                                                              plain))
                        else:
                            out.append(await socket.turn(expected, plain=plain))
                finally:
                    if socket:
                        await socket.close()
                return out

            groups = await asyncio.gather(*(user() for _ in range(concurrency)))
        return [s for group in groups for s in group]

    def compare(self, label: str, paths: list[str], concurrency: int, per_user: int,
                rng: random.Random, *, metrics: tuple[str, ...], bad: str,
                target: dict | None = None) -> dict:
        """Every path once per round, in a shuffled order, each after one warm-up request
        per user; each statistic is the median over rounds, and `added_ttft` (when direct
        is among the paths) is this path minus direct in the same round. A Tanglaw path
        also gets its server's CPU time (process tree, user + system) over the kept
        requests per 1,000 tokens received."""
        values = {"ttft": lambda s: [s.ttft_ms] if s.tokens else [],
                  "transit": lambda s: s.transit_ms, "gap": lambda s: s.gaps_ms,
                  "total": lambda s: [s.total_ms]}
        rounds: dict[str, list[dict]] = {p: [] for p in paths}
        for _ in range(self.args.rounds):
            order = paths[:]
            rng.shuffle(order)
            for path in order:
                asyncio.run(self.one_path(path, concurrency, 1, target))  # warm-up, not kept
                server = self.server_of(path)
                cpu0 = self.instances[server].cpu_s() if server else 0.0
                samples = asyncio.run(self.one_path(path, concurrency, per_user, target))
                cpu = self.instances[server].cpu_s() - cpu0 if server else None
                tokens = sum(s.tokens for s in samples)
                rounds[path].append({
                    **{m: summary([v for s in samples for v in values[m](s)]) for m in metrics},
                    bad: sum(not s.ok for s in samples), "n": len(samples),
                    "errors": sorted({s.error for s in samples if s.error})[:3],
                    "cpu_ms_per_1000_tokens": cpu * 1e6 / tokens
                    if cpu is not None and tokens else None})
        row = {}
        for path in paths:
            row[path] = {m: rounds_summary([r[m] for r in rounds[path]]) for m in metrics}
            row[path][bad] = sum(r[bad] for r in rounds[path])
            row[path]["requests"] = sum(r["n"] for r in rounds[path])
            row[path]["errors"] = sorted({e for r in rounds[path] for e in r["errors"]})
            if self.server_of(path):
                row[path]["cpu_ms_per_1000_tokens"] = median_of(rounds[path],
                                                                "cpu_ms_per_1000_tokens")
            if path != "direct" and "direct" in rounds:
                row[path]["added_ttft"] = rounds_summary([
                    {k: (r["ttft"][k] - d["ttft"][k]) if r["ttft"][k] is not None
                     and d["ttft"][k] is not None else None
                     for k in ("p50", "p90", "p99", "max")}
                    for r, d in zip(rounds[path], rounds["direct"], strict=True)])
        print(f"{label} c={concurrency}: " + ", ".join(
            f"{p} ttft p50 {row[p]['ttft']['p50']:.1f} ms" for p in paths
            if row[p]["ttft"]["p50"] is not None), flush=True)
        return row

    def latency(self) -> None:
        a = self.args
        paths = [p for p in a.paths if p != "litellm" or self.litellm_url]
        if "direct" not in paths:
            paths.insert(0, "direct")  # every added number is against it
        paths += [f"{p}@{server}" for server in self.servers if server != self.default_server
                  for p in TANGLAW_PATHS if p in paths]
        rng = random.Random(7)
        latency, servers = {}, {}
        for c in a.concurrency:
            row = self.compare("latency", paths, c, max(1, a.requests // c), rng,
                               metrics=("ttft", "transit", "gap"), bad="lost")
            # the other servers' paths go in their own table; the report's keys stay
            servers[str(c)] = {server: {} for server in self.servers}
            for path in list(row):
                if server := self.server_of(path):
                    kind = path.partition("@")[0]
                    servers[str(c)][server][kind] = row.pop(path) if "@" in path else row[path]
            latency[str(c)] = row
        self.results["latency"] = latency
        self.results["servers"] = {"default": self.default_server, "servers": self.servers,
                                   "latency": servers, "table": server_table(servers)}

    # -- backend capacity --------------------------------------------------------------
    def capacity(self) -> None:
        """The backend's own token rate with no gaps, read by raw sockets (so the reader,
        which shares the cores, costs as little as it can), against the highest load
        the latency runs applied."""
        tokens = 2000
        body = json.dumps({"stream": True, "bench": {"ttft_ms": 0, "tokens": tokens,
                                                     "gap_ms": 0}}).encode()
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   f"Connection: close\r\n\r\n").encode() + body

        async def reader() -> int:
            stream_reader, writer = await asyncio.open_connection("127.0.0.1",
                                                                  self.backend_port)
            writer.write(request)
            count, tail = 0, b""
            while data := await stream_reader.read(1 << 16):
                # matches split across reads count once: the tail's own are taken off
                count += (tail + data).count(b'"content"') - tail.count(b'"content"')
                tail = data[-16:]
            writer.close()
            return count

        async def main() -> tuple[int, float]:
            started = time.perf_counter()
            counts = await asyncio.gather(*(reader() for _ in range(16)))
            return sum(counts), time.perf_counter() - started

        got, seconds = asyncio.run(main())
        rate = got / seconds
        a = self.args
        per_stream = a.tokens / (a.ttft_ms / 1000 + a.tokens * a.gap_ms / 1000)
        applied = max(a.concurrency) * per_stream
        self.results["backend_capacity"] = {
            "tokens_per_s": round(rate), "applied_tokens_per_s": round(applied),
            "ratio": round(rate / applied, 1), "ok": rate >= 10 * applied,
            "note": "a lower bound: the reader shares the 2 cores with the server"}
        print(f"backend capacity {rate:.0f} tok/s vs applied {applied:.0f} tok/s", flush=True)

    # -- the real llama.cpp server ----------------------------------------------------------
    def start_llama(self) -> None:
        from tests.support.llama_server import LlamaServer

        self.llama = LlamaServer(self.tmp).start()
        with httpx.Client(base_url=self.base, headers=self.api_headers, timeout=30) as api:
            backend = api.post("/api/backends", json={
                "name": "tiny-llama", "kind": "llamacpp", "base_url": self.llama.url})
            backend.raise_for_status()
            agent = api.post("/api/agents", json={
                "name": "bench-llama", "backend_id": backend.json()["id"], "model": "tiny",
                "max_tokens": LLAMA_TOKENS, "tool_ids": []})
            agent.raise_for_status()
        self.llama_target = {
            "direct": f"{self.llama.url}/v1/chat/completions", "model": "tiny",
            "agent_id": agent.json()["id"], "sse": f"/api/agents/{agent.json()['id']}/chat/stream",
            "expected": LLAMA_TOKENS, "plain": True, "max_tokens": LLAMA_TOKENS,
            "gateway_model": "tiny-llama/tiny"}

    def llamacpp(self) -> None:
        """The same comparison against the real llama-server (tiny random-weight model,
        32 tokens): what the added milliseconds weigh beside a real engine's own time."""
        paths = [p for p in PATHS if p != "litellm" or self.litellm_url]
        rng = random.Random(11)
        table = {str(c): self.compare("llama.cpp", paths, c, max(1, 12 // c), rng,
                                      metrics=("ttft", "total"), bad="failed",
                                      target=self.llama_target) for c in (1, 4)}
        self.results["llamacpp"] = {"tokens": LLAMA_TOKENS, "latency": table}

    # -- probing beside a chat -----------------------------------------------------------
    def added_ttft(self, requests: int) -> dict:
        """The WebSocket chat's added TTFT at concurrency 1 (p50, p99): Tanglaw minus
        direct, interleaved."""
        direct = asyncio.run(self.one_path("direct", 1, requests))
        relayed = asyncio.run(self.one_path("tanglaw_ws", 1, requests))
        d = summary([s.ttft_ms for s in direct])
        r = summary([s.ttft_ms for s in relayed])
        return {"added_ttft_p50_ms": r["p50"] - d["p50"],
                "added_ttft_p99_ms": r["p99"] - d["p99"]}

    def probe_effect(self) -> dict:
        """Tanglaw's WebSocket TTFT at concurrency 1 with and without a process probing
        200 backends back to back (a monitor does one such round per interval)."""
        requests = max(8, self.args.requests // 4)

        def measure() -> dict:
            return self.added_ttft(requests)

        quiet = measure()
        env = {**self.env, "TANGLAW_DATA_DIR": str(self.tmp / "data-probe-load"),
               "BENCH_BACKEND_URL": self.backend_url}
        env.pop("PORT", None)
        prober = self.spawn("probe-load", [sys.executable, str(ROOT / "bench" / "inproc.py"),
                                           "probe-load", "--out", str(self.tmp / "pl.json"),
                                           "--seconds", "600"], env=env, cwd=ROOT)
        time.sleep(8)  # migrate and first round
        busy = measure()
        prober.stop()
        print(f"chat beside probing: {quiet} -> {busy}", flush=True)
        return {"quiet": quiet, "probing": busy}

    # -- traces ---------------------------------------------------------------------------
    def stored_spans(self) -> int:
        """Spans in the console's SQLite file, read directly (a manage.py process would
        take seconds to start, and the count is what the writer committed)."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.tmp / 'data' / 'tanglaw.sqlite3'}?mode=ro", uri=True,
                             timeout=30)
        try:
            return db.execute("SELECT COUNT(*) FROM traces_span").fetchone()[0]
        finally:
            db.close()

    def ingest(self, seconds: float, rate: float) -> dict:
        """OTLP senders (bench/otlp_load.py, their own process) for `seconds`."""
        out_file = self.tmp / f"otlp-{rate:g}.json"
        before = self.stored_spans()
        sender = self.spawn("otlp-load", [
            sys.executable, str(ROOT / "bench" / "otlp_load.py"), self.base,
            self.api_headers["Authorization"].split()[1], "--seconds", str(seconds),
            "--rate", str(rate), "--out", str(out_file)], cwd=ROOT)
        return {"sender": sender, "out": out_file, "before": before}

    def ingested(self, run: dict) -> dict:
        """When the senders are done: how long until every accepted span was stored, and
        the spans stored per second over the senders' time plus that drain."""
        run["sender"].proc.wait(timeout=600)
        sent = json.loads(run["out"].read_text())
        ended, stored = time.monotonic(), 0
        while time.monotonic() < ended + 120:  # the writer drains its queue
            stored = self.stored_spans() - run["before"]
            if stored >= sent["sent"]:
                break
            time.sleep(0.1)
        drain = time.monotonic() - ended
        return {**sent, "stored": stored, "drain_s": round(drain, 2),
                "stored_per_s": round(stored / (sent["seconds"] + drain))}

    def traces(self) -> None:
        """OTLP ingest on SQLite beside chat: spans/s sent at the goal's pace (2,000/s)
        with the WebSocket chat's added TTFT measured before and while it runs, and the
        most the console takes when the senders go as fast as they can."""
        seconds = 10 if self.args.quick else 30
        requests = max(8, self.args.requests // 4)
        quiet = self.added_ttft(requests)
        paced = self.ingest(seconds, 2000)
        time.sleep(2)
        busy = self.added_ttft(requests)
        paced_result = self.ingested(paced)
        flat_out = self.ingested(self.ingest(seconds, 0))
        out = {"quiet": quiet, "ingesting": busy, "paced_2000": paced_result,
               "flat_out": flat_out,
               "ttft_p99_change_ms": round(busy["added_ttft_p99_ms"]
                                           - quiet["added_ttft_p99_ms"], 2)}
        print(f"traces: paced {paced_result['stored_per_s']} spans/s stored, flat out "
              f"{flat_out['stored_per_s']} spans/s; chat added TTFT p99 {quiet} -> {busy}",
              flush=True)
        self.results["traces"] = {**self.results.get("traces", {}), "ingest": out}

    # -- concurrent streams --------------------------------------------------------------
    def streams(self) -> None:
        a = self.args
        gap_limit = 10 * a.ramp_gap_ms
        levels, best, per_level = a.ramp, 0, []
        for level in levels:
            async def main(level=level):
                sockets = [load.TanglawSocket(self.base, self.cookie, self.agent_id)
                           for _ in range(level)]
                for i in range(0, level, 50):  # open in batches, as tabs would
                    await asyncio.gather(*(s.open() for s in sockets[i:i + 50]))
                cpu0 = self.tanglaw.cpu_s()
                samples = await asyncio.gather(*(self.ramp_turn(s) for s in sockets))
                cpu = self.tanglaw.cpu_s() - cpu0
                await asyncio.gather(*(s.close() for s in sockets))
                return samples, cpu

            samples, cpu = asyncio.run(main())
            lost = sum(not s.ok for s in samples)
            gaps = [g for s in samples for g in s.gaps_ms]
            tokens = sum(s.tokens for s in samples)
            worst = max(gaps) if gaps else None
            ok = lost == 0 and worst is not None and worst <= gap_limit
            per_level.append({"streams": level, "lost_or_reordered": lost,
                              "gap_ms": summary(gaps), "tokens": tokens,
                              "cpu_s": round(cpu, 2),
                              "cpu_ms_per_1000_tokens": round(cpu * 1e6 / tokens, 1)
                              if tokens else None, "ok": ok,
                              "errors": sorted({s.error for s in samples if s.error})[:3]})
            print(f"streams {level}: lost {lost}, max gap {worst} ms, ok={ok}", flush=True)
            if not ok:
                break
            best = level
        self.results["streams"] = {"max_sustained": best, "gap_limit_ms": gap_limit,
                                   "backend_gap_ms": a.ramp_gap_ms,
                                   "tokens_per_stream": a.ramp_tokens, "levels": per_level}

    async def ramp_turn(self, socket: load.TanglawSocket) -> load.Sample:
        return await socket.turn(self.args.ramp_tokens, timeout=300)

    # -- in-process parts ----------------------------------------------------------------
    def inproc(self, part: str, extra_env: dict | None = None, *args: str) -> dict:
        out = self.tmp / f"{part}.json"
        env = {**self.env, "TANGLAW_DATA_DIR": str(self.tmp / f"data-{part}"),
               **(extra_env or {})}
        env.pop("PORT", None)
        command = [sys.executable, str(ROOT / "bench" / "inproc.py"), part, "--out", str(out),
                   *(["--quick"] if self.args.quick else []), *args]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=3600)
        if done.returncode:
            raise RuntimeError(f"bench/inproc.py {part} failed:\n{done.stderr[-3000:]}")
        print(done.stdout.strip(), flush=True)
        return json.loads(out.read_text())


def server_table(servers: dict) -> list[dict]:
    """One row per server, concurrency and path: the goals' numbers side by side."""
    rows = []
    for c, by_server in servers.items():
        for server, paths in by_server.items():
            for kind, entry in paths.items():
                added = entry.get("added_ttft") or {}
                rows.append({"server": server, "concurrency": int(c), "path": kind,
                             "added_ttft_p50_ms": added.get("p50"),
                             "added_ttft_p99_ms": added.get("p99"),
                             "cpu_ms_per_1000_tokens": entry.get("cpu_ms_per_1000_tokens"),
                             "lost": entry.get("lost"), "requests": entry.get("requests")})
    return rows


def available_servers() -> list[str]:
    """The ASGI servers installed here (Daphne always is)."""
    return [name for name in SERVERS if importlib.util.find_spec(name) is not None]


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version()}
    for module in ("django", "channels", "daphne", "uvicorn", "granian", "uvloop", "httptools",
                   "httpx", "openai", "websockets"):
        with suppress(ImportError, AttributeError):
            versions[module] = __import__(module).__version__
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    return {"cpu": cpu, "cores": psutil.cpu_count(), "memory_gib":
            round(psutil.virtual_memory().total / 2**30, 1), "os": platform.platform(),
            "versions": versions}


def litellm_version(binary: str) -> str | None:
    python = Path(binary).parent / "python"
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "from importlib.metadata import version;"
                           "print(version('litellm'))"], capture_output=True, text=True)
    return done.stdout.strip() or None


def git_sha() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "nogit") + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, not for the record")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per path per round (split over the users)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--ramp", type=int, nargs="+", default=None)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--gap-ms", type=float, default=20)
    parser.add_argument("--ramp-gap-ms", type=float, default=100)
    parser.add_argument("--ramp-tokens", type=int, default=60)
    parser.add_argument("--litellm", default=str(ROOT / ".venv-litellm" / "bin" / "litellm"))
    parser.add_argument("--parts", nargs="+", default=[
        "latency", "relay", "gateway", "traces", "llamacpp", "streams", "persistence",
        "probing", "fleet", "dashboards", "audit"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS),
                        default=available_servers(),
                        help="ASGI servers whose Tanglaw paths are measured side by side "
                             "(default: every one installed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.requests = args.requests or (16 if args.quick else 24)
    args.ramp = args.ramp or ([25, 50] if args.quick else [50, 100, 200, 300, 400, 500, 750, 1000])

    bench = Bench(args)
    started = datetime.now(UTC)
    results = bench.results
    results.update({"started": started.isoformat(timespec="seconds"), "sha": git_sha(),
                    "machine": machine(), "quick": args.quick,
                    "backend": {"ttft_ms": args.ttft_ms, "tokens": args.tokens,
                                "gap_ms": args.gap_ms},
                    "command": "make bench" + (" (--quick)" if args.quick else "")})
    results["machine"]["versions"]["litellm"] = litellm_version(args.litellm)
    with ExitStack() as stack:
        bench.start(stack)
        if "latency" in args.parts:
            bench.capacity()
            bench.latency()
        if "relay" in args.parts:
            bench.relay()
        if "gateway" in args.parts:
            bench.gateway()
        if "traces" in args.parts:
            bench.traces()
            results["traces"]["pages"] = bench.inproc("traces")
        if bench.llama:
            bench.llamacpp()
        if "fleet" in args.parts:
            results["fleet"] = bench.inproc("fleet", {"BENCH_BACKEND_URL": bench.backend_url})
        if "probing" in args.parts:
            results["probing"] = bench.inproc("probing", {"BENCH_BACKEND_URL": bench.backend_url})
            results["probing"]["chat_beside_probing"] = bench.probe_effect()
        if "streams" in args.parts:
            # the ramp's backend is slower per stream (as an engine serving hundreds is):
            # it takes the latency backend's port, which the agent points at
            bench.backend.stop()
            ramp = bench.spawn("fastserver-ramp", [
                sys.executable, str(ROOT / "bench" / "fastserver.py"), "--port",
                str(bench.backend_port), "--ttft-ms", str(args.ttft_ms), "--tokens",
                str(args.ramp_tokens), "--gap-ms", str(args.ramp_gap_ms)])
            wait_http(f"{bench.backend_url}/health", ramp, "ramp backend")
            bench.streams()
        for part in ("persistence", "dashboards"):
            if part in args.parts:
                results[part] = bench.inproc(part)
        if "audit" in args.parts:
            results["audit"] = {"sqlite": bench.inproc("audit")}
            try:
                from console.cluster import Postgres

                server = Postgres().start()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                results["notes"].append(f"PostgreSQL audit run skipped: {exc}")
            else:
                try:
                    results["audit"]["postgresql"] = bench.inproc(
                        "audit", {"DATABASE_URL": server.url})
                finally:
                    server.stop()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    name = f"{started:%Y-%m-%d}-{results['sha']}{'-quick' if args.quick else ''}.json"
    (out_dir / name).write_text(json.dumps(results, indent=1))
    print(f"results: bench/results/{name}")
    if not args.no_docs and not args.quick:
        report.write(results, name)
        print("docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
