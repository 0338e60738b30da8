"""Pull with live progress, cancel, load, unload and delete on every engine that can. Pulls
are queued by the request and run by the monitor (console.jobs): claimed once, leased,
failed with the reason when their monitor dies, and retried."""

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from console import jobs
from console.actions import Refused
from console.actions import models as lifecycle
from console.models import AuditEvent, Backend, Job
from monitoring.collectors.gpu import GpuCollector
from monitoring.worker import Monitor
from tests.support.fake_engine import FakeEngine
from tests.support.fake_nvml import FakeNvml


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Frames:
    """Stands in for the channel layer: records what the jobs group would receive."""

    def __init__(self):
        self.frames = []

    async def group_send(self, group, message):
        assert group == "jobs" and message["type"] == "job.update"
        self.frames.append(message["frame"])


@pytest.fixture
def frames(monkeypatch):
    layer = Frames()
    monkeypatch.setattr(jobs, "get_channel_layer", lambda: layer)
    return layer


def done(job):
    job.refresh_from_db()
    return not job.active


def in_background(target, *args):
    """Run a monitor's job step in a thread (closing its connection), as a monitor would."""
    def body():
        from django.db import connection

        try:
            target(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def test_a_pull_streams_progress_in_order_and_lists_the_model(live_db, actor, frames, fake):
    engine = fake("ollama", pull_gap_s=0.02)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:1b")
    monitor = Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="monitor-1")
    assert monitor.run_jobs() == {"expired": 0, "ran": 1}
    job.refresh_from_db()
    assert job.state == "succeeded" and job.percent == 100 and not job.error
    assert job.owner == "monitor-1"
    assert job.total_bytes == 397807936 + 68 + 1482
    assert job.completed_bytes == job.total_bytes
    assert [layer["digest"] for layer in job.layers] == [
        "sha256:6f96e01a3f55", "sha256:66b9ea09bd5b", "sha256:eb4402837c78"]
    percents = [f["percent"] for f in frames.frames]
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) >= 3
    assert [f["state"] for f in frames.frames][0] == "queued"
    assert [f["state"] for f in frames.frames][-1] == "succeeded"
    assert json.loads(engine.requests[0]["body"]) == {"model": "llama3.2:1b", "stream": True}
    assert "llama3.2:1b" in engine.pulled
    actions = list(AuditEvent.objects.filter(action__startswith="model.").order_by("seq")
                   .values_list("action", flat=True))
    assert actions == ["model.pull_started", "model.pulled"]


def test_an_error_line_fails_the_pull_even_with_http_200(live_db, actor, frames, fake):
    engine = fake("ollama", pull_error_at=4)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:3b")
    jobs.step("monitor-1")
    job.refresh_from_db()
    assert job.state == "failed" and "no space left on device" in job.error
    assert frames.frames[-1]["state"] == "failed"
    failed = AuditEvent.objects.get(action="model.pull_failed")
    assert failed.outcome == "failure" and "no space left" in failed.detail


def test_cancel_closes_the_upstream_request(live_db, actor, frames, fake):
    engine = fake("ollama", pull_gap_s=0.4)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "phi3.5")
    with pytest.raises(Refused, match="already being pulled"):
        lifecycle.start_pull(actor, backend, "phi3.5")  # one pull per model at a time
    monitor = in_background(jobs.step, "monitor-1")
    assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "running")
    lifecycle.cancel(actor, job)
    started = time.monotonic()
    assert wait_for(lambda: done(job), timeout=5)
    assert job.state == "cancelled" and time.monotonic() - started < 2, job.error
    assert wait_for(lambda: engine.pull_disconnects == 1, timeout=5)  # the engine saw it close
    assert "phi3.5" not in engine.pulled
    with pytest.raises(Refused, match="already cancelled"):
        lifecycle.cancel(actor, job)
    monitor.join(5)
    assert AuditEvent.objects.filter(action="model.pull_cancelled").exists()


def test_the_request_only_queues_the_pull_and_one_monitor_claims_it(live_db, actor, fake):
    engine = fake("ollama", pull_gap_s=0.02)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:1b")
    time.sleep(0.3)
    job.refresh_from_db()
    assert (job.state, job.owner) == ("queued", None)
    assert not [r for r in engine.requests if r["path"] == "/api/pull"]
    claims = {}
    start = threading.Barrier(4)

    def claim(worker):
        start.wait()
        claims[worker] = jobs.claim(worker)

    threads = [in_background(claim, f"monitor-{i}") for i in range(4)]
    for thread in threads:
        thread.join(10)
    assert sorted(len(mine) for mine in claims.values()) == [0, 0, 0, 1]
    winner = next(worker for worker, mine in claims.items() if mine)
    job.refresh_from_db()
    assert job.owner == winner and job.lease_until > timezone.now()


def test_a_queued_pull_cancelled_before_any_monitor_claims_it_never_starts(live_db, actor,
                                                                         frames, fake):
    engine = fake("ollama")
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "phi3.5")
    lifecycle.cancel(actor, job)
    assert job.state == "cancelled" and frames.frames[-1]["state"] == "cancelled"
    assert jobs.step("monitor-1") == {"expired": 0, "ran": 0}
    assert not [r for r in engine.requests if r["path"] == "/api/pull"]
    assert AuditEvent.objects.get(action="model.pull_cancelled").actor == "oscar"


def test_a_pull_whose_monitor_died_fails_with_the_reason_and_can_be_retried(
        live_db, actor, frames, fake, operator_client):
    engine = fake("ollama", pull_gap_s=0.02)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:1b")
    assert jobs.claim("monitor-that-dies") == [job.pk]
    Job.objects.filter(pk=job.pk).update(state="running", percent=40)
    assert jobs.step("monitor-2") == {"expired": 0, "ran": 0}  # its lease still holds
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert jobs.step("monitor-2") == {"expired": 1, "ran": 0}
    job.refresh_from_db()
    assert job.state == "failed" and job.error == "the worker running this pull stopped"
    assert job.finished_at is not None and frames.frames[-1]["state"] == "failed"
    failed = AuditEvent.objects.get(action="model.pull_failed")
    assert failed.detail == jobs.OWNER_DIED and failed.after["job"] == job.pk

    page = operator_client.get(f"/backends/{backend.pk}/models/").content.decode()
    assert f'action="/jobs/{job.pk}/retry/"' in page and jobs.OWNER_DIED in page
    again = operator_client.post(f"/api/jobs/{job.pk}/retry")
    assert again.status_code == 202, again.json()
    assert again.json()["state"] == "queued" and again.json()["retry_of_id"] == job.pk
    assert operator_client.post(f"/api/jobs/{job.pk}/retry").status_code == 409  # one active
    jobs.step("monitor-2")
    retried = Job.objects.get(pk=again.json()["id"])
    assert retried.state == "succeeded" and "llama3.2:1b" in engine.pulled
    assert operator_client.post(f"/api/jobs/{retried.pk}/retry").status_code == 409
    started = AuditEvent.objects.filter(action="model.pull_started").order_by("seq").last()
    assert started.after == {"model": "llama3.2:1b", "job": retried.pk, "retry_of": job.pk}

    response = operator_client.post(f"/jobs/{retried.retry_of_id}/retry/")  # the page button
    assert response.status_code == 302
    assert Job.objects.filter(retry_of=job, state="queued").count() == 1


def test_a_running_pull_left_by_a_restarted_web_process_is_failed(live_db, actor, fake):
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=fake("ollama").url)
    job = Job.objects.create(kind="pull", backend=backend, model="phi3.5", state="running",
                             percent=12)  # a thread's job: no owner, no lease
    assert jobs.expire() == 1
    job.refresh_from_db()
    assert job.state == "failed" and job.error == jobs.OWNER_DIED


def test_a_monitor_that_lost_its_lease_stops_without_overwriting(live_db, actor, frames,
                                                                 fake):
    engine = fake("ollama", pull_gap_s=0.3)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "phi3.5")
    assert jobs.claim("paused") == [job.pk]
    runner = in_background(lambda: asyncio.run(jobs.run(job.pk, "paused")))
    assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "running")
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert jobs.expire() == 1  # another monitor: "its owner died"
    runner.join(5)
    assert not runner.is_alive()
    assert wait_for(lambda: engine.pull_disconnects == 1, timeout=5)
    job.refresh_from_db()
    assert job.state == "failed" and job.error == jobs.OWNER_DIED
    assert AuditEvent.objects.filter(action__startswith="model.pull_").exclude(
        action="model.pull_started").count() == 1


def test_a_stopped_monitor_puts_its_pull_back_for_the_next(live_db, actor, frames, fake):
    engine = fake("ollama", pull_gap_s=0.3)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "phi3.5")
    runner = jobs.JobRunner("monitor-1").start()
    assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "running")
    runner.stop()
    job.refresh_from_db()
    assert (job.state, job.owner, job.lease_until) == ("queued", None, None)
    assert wait_for(lambda: engine.pull_disconnects == 1, timeout=5)
    engine.pull_gap_s = 0.01
    assert jobs.step("monitor-2")["ran"] == 1
    job.refresh_from_db()
    assert job.state == "succeeded" and job.owner == "monitor-2"


def test_the_jobs_socket_relays_progress_written_by_another_process(live_db, operator_user):
    """The in-memory layer cannot hear the monitor's process: the socket still sees the
    rows move."""
    from channels.db import database_sync_to_async
    from django.test import Client

    from console.asgi import application
    from tests.support.sockets import WebsocketCommunicator

    backend = Backend.objects.create(name="ollama", kind="ollama", base_url="http://10.0.0.9")
    job = Job.objects.create(kind="pull", backend=backend, model="phi3.5")
    client = Client()
    client.force_login(operator_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    def progress(percent, state="running"):
        Job.objects.filter(pk=job.pk).update(
            percent=percent, state=state,
            finished_at=None if state == "running" else timezone.now())

    async def main():
        ws = WebsocketCommunicator(application, "/ws/jobs/", headers=[
            (b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)])
        assert (await ws.connect())[0]
        seen = [await ws.receive_json_from(timeout=5)]  # the snapshot
        for percent in (10, 55):
            await database_sync_to_async(progress)(percent)
            while seen[-1]["percent"] != percent:
                seen.append(await ws.receive_json_from(timeout=5))
        await database_sync_to_async(progress)(100, "succeeded")
        while seen[-1]["state"] != "succeeded":
            seen.append(await ws.receive_json_from(timeout=5))
        await ws.disconnect()
        return seen

    seen = asyncio.run(main())
    assert seen[0]["state"] == "queued"
    assert [f["percent"] for f in seen] == sorted(f["percent"] for f in seen)
    assert seen[-1]["percent"] == 100


@pytest.mark.django_db
@pytest.mark.parametrize("kind, options, sent", [
    ("ollama", {}, [("POST", "/api/generate", {"model": "qwen2.5:0.5b", "keep_alive": "30m"}),
                    ("POST", "/api/generate", {"model": "qwen2.5:0.5b", "keep_alive": 0})]),
    ("foundry_local", {"models": ["phi-4-mini"]}, [("GET", "/models/load/phi-4-mini", None),
                                                  ("GET", "/models/unload/phi-4-mini", None)]),
    # an older service: the new path answers 404, then the legacy one
    ("foundry_local", {"models": ["phi-4-mini"], "foundry_legacy": True},
     [("GET", "/models/load/phi-4-mini", None), ("GET", "/openai/load/phi-4-mini", None),
      ("GET", "/models/unload/phi-4-mini", None), ("GET", "/openai/unload/phi-4-mini", None)]),
    ("llamacpp", {"router": True, "models": ["tiny", "small"]},
     [("POST", "/models/load", {"model": "small"}),
      ("POST", "/models/unload", {"model": "small"})]),
])
def test_load_and_unload_send_each_engines_documented_request(actor, kind, options, sent):
    with FakeEngine(kind, **options) as engine:
        backend = Backend.objects.create(name=kind, kind=kind, base_url=engine.url)
        model = (sent[0][2] or {}).get("model") or sent[0][1].rsplit("/", 1)[1]
        assert lifecycle.model_actions(backend)["load"] == ""
        lifecycle.load(actor, backend, model, "30m" if kind == "ollama" else None)
        lifecycle.unload(actor, backend, model)
        seen = [(r["method"], r["path"], json.loads(r["body"]) if r["body"] else None)
                for r in engine.requests if "load" in r["path"] or r["path"] == "/api/generate"]
        assert seen == sent
    assert list(AuditEvent.objects.order_by("seq").values_list("action", flat=True)) == [
        "model.loaded", "model.unloaded"]


@pytest.mark.django_db
def test_delete_on_ollama_and_a_clear_error_for_an_unknown_model(actor, fake):
    engine = fake("ollama")
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    lifecycle.delete(actor, backend, "qwen2.5:0.5b")
    assert json.loads(engine.requests[-1]["body"]) == {"model": "qwen2.5:0.5b"}
    assert engine.requests[-1]["method"] == "DELETE"
    with pytest.raises(Refused, match="Ollama has no model named nope:1b"):
        lifecycle.delete(actor, backend, "nope:1b")
    assert AuditEvent.objects.filter(action="model.deleted", outcome="failure").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind, options, why", [
    ("vllm", {}, "vLLM serves the model it was started with"),
    ("openai_compatible", {}, "no API to pull, load or unload"),
    ("llamacpp", {}, "start it in router mode"),
    ("foundry_local", {}, "foundry model download"),
])
def test_engines_that_cannot_say_why(actor, kind, options, why):
    with FakeEngine(kind, **options) as engine:
        backend = Backend.objects.create(name=kind, kind=kind, base_url=engine.url)
        actions = lifecycle.model_actions(backend)
        assert why in actions["pull"]
        with pytest.raises(Refused, match=why.split(" (")[0][:20]):
            lifecycle.start_pull(actor, backend, "anything")
        if kind != "foundry_local":
            assert why in actions["load"]
            with pytest.raises(Refused):
                lifecycle.load(actor, backend, "anything")
        requests_before = len(engine.requests)
    assert not Job.objects.exists()
    assert requests_before == len(engine.requests)


@pytest.mark.django_db
def test_models_api_and_pages(operator_client, viewer_client, fake):
    engine = fake("ollama")
    vllm = fake("vllm")
    ollama = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    Backend.objects.create(name="vllm", kind="vllm", base_url=vllm.url)
    listing = {b["backend"]: b for b in operator_client.get("/api/models").json()}
    assert listing["ollama"]["actions"]["pull"] == ""
    assert "vLLM serves" in listing["vllm"]["actions"]["load"]
    assert [m["id"] for m in listing["ollama"]["models"]] == ["qwen2.5:0.5b", "llama3.2:3b"]
    assert viewer_client.post(f"/api/backends/{ollama.pk}/pull", data={"model": "x"},
                              content_type="application/json").status_code == 403
    bad = operator_client.post(f"/api/backends/{ollama.pk}/pull", data={"model": "two words"},
                               content_type="application/json")
    assert bad.status_code == 422 and "without spaces" in str(bad.json())
    loaded = operator_client.post(f"/api/backends/{ollama.pk}/models/qwen2.5:0.5b/load",
                                  data={"keep_alive": "1h"}, content_type="application/json")
    assert loaded.status_code == 200, loaded.json()
    assert operator_client.post(f"/api/backends/{ollama.pk}/models/qwen2.5:0.5b/load",
                                data={"keep_alive": "forever"},
                                content_type="application/json").status_code == 422
    assert operator_client.delete(
        f"/api/backends/{ollama.pk}/models/qwen2.5:0.5b").status_code == 204
    page = operator_client.get(f"/backends/{ollama.pk}/models/").content.decode()
    assert "qwen2.5:0.5b" in page and "Unload" in page and "Pull a model" in page
    assert "phi4-mini" in page  # the curated list
    vllm_page = operator_client.get(f"/backends/{Backend.objects.get(name='vllm').pk}"
                                    f"/models/").content.decode()
    assert "vLLM serves the model it was started with" in vllm_page and ">Load<" not in vllm_page
    fleet = viewer_client.get("/models/").content.decode()
    assert "llama3.2:3b" in fleet and "Qwen/Qwen2.5-1.5B-Instruct" in fleet
    assert "Pull a model" not in viewer_client.get(
        f"/backends/{ollama.pk}/models/").content.decode().split("<h2>Pull a model</h2>")[1][:300]


@pytest.mark.django_db
def test_tool_support_and_the_foundry_catalog(operator_client, fake):
    ollama = Backend.objects.create(name="ollama", kind="ollama", base_url=fake("ollama").url)
    page = operator_client.get(f"/backends/{ollama.pk}/models/").content.decode()
    row = page.split("<code>llama3.2:3b</code>")[1].split("</tr>")[0]
    assert "<td>yes</td>" in row  # /api/show lists "tools" among its capabilities
    # the catalog comes from the 0.x CLI service's /foundry/list (the 2.x runtime has none)
    engine = fake("foundry_local", models=["phi-4-mini"], foundry_legacy=True)
    foundry = Backend.objects.create(name="foundry", kind="foundry_local", base_url=engine.url)
    page = operator_client.get(f"/backends/{foundry.pk}/models/").content.decode()
    assert "foundry model download phi-4-mini" in page and "4.7 GB" in page
    assert "Phi-4-mini-instruct-generic-cpu" in page
    row = page.split("<code>phi-4-mini</code>")[1].split("</tr>")[0]
    assert "loaded" in row and ">Unload<" in row and ">Delete<" not in row
