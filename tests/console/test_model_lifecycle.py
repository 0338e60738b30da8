"""Pull with live progress, cancel, load, unload and delete on every engine that can."""

import json
import time

import pytest

from console.actions import Refused
from console.actions import models as lifecycle
from console.models import AuditEvent, Backend, Job
from tests.support.fake_engine import FakeEngine


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
    monkeypatch.setattr(lifecycle, "get_channel_layer", lambda: layer)
    return layer


def done(job):
    job.refresh_from_db()
    return not job.active


def test_a_pull_streams_progress_in_order_and_lists_the_model(live_db, actor, frames, fake):
    engine = fake("ollama", pull_gap_s=0.02)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:1b")
    assert wait_for(lambda: done(job))
    assert job.state == "succeeded" and job.percent == 100 and not job.error
    assert job.total_bytes == 397807936 + 68 + 1482
    assert job.completed_bytes == job.total_bytes
    assert [layer["digest"] for layer in job.layers] == [
        "sha256:6f96e01a3f55", "sha256:66b9ea09bd5b", "sha256:eb4402837c78"]
    percents = [f["percent"] for f in frames.frames]
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) >= 3
    assert [f["state"] for f in frames.frames][-1] == "succeeded"
    assert json.loads(engine.requests[0]["body"]) == {"model": "llama3.2:1b", "stream": True}
    assert "llama3.2:1b" in engine.pulled
    # the thread records how it ended just after saving the final state
    assert wait_for(lambda: AuditEvent.objects.filter(action="model.pulled").exists())
    actions = list(AuditEvent.objects.filter(action__startswith="model.").order_by("seq")
                   .values_list("action", flat=True))
    assert actions == ["model.pull_started", "model.pulled"]


def test_an_error_line_fails_the_pull_even_with_http_200(live_db, actor, frames, fake):
    engine = fake("ollama", pull_error_at=4)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "llama3.2:3b")
    assert wait_for(lambda: done(job))
    assert job.state == "failed" and "no space left on device" in job.error
    assert frames.frames[-1]["state"] == "failed"
    assert wait_for(lambda: AuditEvent.objects.filter(action="model.pull_failed").exists())
    failed = AuditEvent.objects.get(action="model.pull_failed")
    assert failed.outcome == "failure" and "no space left" in failed.detail


def test_cancel_closes_the_upstream_request(live_db, actor, frames, fake):
    engine = fake("ollama", pull_gap_s=0.4)
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    job = lifecycle.start_pull(actor, backend, "phi3.5")
    with pytest.raises(Refused, match="already being pulled"):
        lifecycle.start_pull(actor, backend, "phi3.5")  # one pull per model at a time
    assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "running")
    lifecycle.cancel(actor, job)
    started = time.monotonic()
    assert wait_for(lambda: done(job), timeout=5)
    assert job.state == "cancelled" and time.monotonic() - started < 2, job.error
    assert wait_for(lambda: engine.pull_disconnects == 1, timeout=5)  # the engine saw it close
    assert "phi3.5" not in engine.pulled
    with pytest.raises(Refused, match="already cancelled"):
        lifecycle.cancel(actor, job)
    assert wait_for(lambda: AuditEvent.objects.filter(action="model.pull_cancelled").exists())


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
    listing = {b["backend"]: b for b in viewer_client.get("/api/models").json()}
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
    engine = fake("foundry_local", models=["phi-4-mini"])
    foundry = Backend.objects.create(name="foundry", kind="foundry_local", base_url=engine.url)
    page = operator_client.get(f"/backends/{foundry.pk}/models/").content.decode()
    assert "foundry model download phi-4-mini" in page and "4.7 GB" in page
    assert "Phi-4-mini-instruct-generic-cpu" in page
    row = page.split("<code>phi-4-mini</code>")[1].split("</tr>")[0]
    assert "loaded" in row and ">Unload<" in row and ">Delete<" not in row
