"""The managed-engine API: create (blank or from a plan), every kind of bad input as a 422
naming its field, roles, start/stop/restart as audited requests, delete, log, config."""

from __future__ import annotations

import json

import pytest

from console.actions import plans as plan_actions
from console.audit import Actor
from console.choices import AuditAction
from console.models import AuditEvent, Backend
from engines import logs
from engines.choices import Desired, EngineState
from engines.models import ManagedEngine

pytestmark = pytest.mark.django_db
VLLM = "/opt/vllm/bin/vllm serve"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


@pytest.fixture
def allowed(settings, fake_command):
    settings.TANGLAW_ENGINE_COMMANDS = [fake_command, VLLM]
    return fake_command


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def body(allowed, model, **changes):
    return {"name": "local-llama", "kind": "llamacpp", "binary": allowed, "model_path": model,
            "port": 18080, "context": 512, "threads": 1,
            "extra_args": ["--parallel", "2", "--jinja"], **changes}


def test_an_admin_creates_an_engine_and_it_is_audited(admin_client, admin_user, allowed,
                                                      model):
    response = post(admin_client, "/api/engines", body(allowed, model))
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["state"] == "stopped" and data["desired"] == "stopped"
    assert data["binary"] == allowed and data["backend_id"] is None and data["pid"] is None
    assert data["base_url"] == "http://127.0.0.1:18080"
    engine = ManagedEngine.objects.get(pk=data["id"])
    assert engine.extra_args == ["--parallel", "2", "--jinja"]
    event = AuditEvent.objects.get(action=AuditAction.ENGINE_CREATED)
    assert event.actor == admin_user.username and event.after["port"] == 18080
    assert admin_client.get(f"/api/engines/{engine.pk}").json()["name"] == "local-llama"


def test_start_stop_restart_are_requests_the_supervisor_carries_out(admin_client, allowed,
                                                                    model):
    pk = post(admin_client, "/api/engines", body(allowed, model, start=True)).json()["id"]
    engine = ManagedEngine.objects.get(pk=pk)
    assert (engine.desired, engine.state) == (Desired.RUNNING, EngineState.QUEUED)
    restarted = admin_client.post(f"/api/engines/{pk}/restart").json()
    assert restarted["desired"] == "running"
    assert ManagedEngine.objects.get(pk=pk).generation == 1
    stopped = admin_client.post(f"/api/engines/{pk}/stop").json()
    assert (stopped["desired"], stopped["state"]) == ("stopped", "stopped")
    actions = list(AuditEvent.objects.filter(action__startswith="engine.")
                   .order_by("seq").values_list("action", flat=True))
    assert actions == ["engine.created", "engine.start", "engine.restart", "engine.stop"]
    assert admin_client.post(f"/api/engines/{pk}/reboot").status_code == 422
    assert admin_client.post("/api/engines/999/start").status_code == 404


@pytest.mark.parametrize("changes, field, says", [
    ({"binary": "/bin/sh -c id"}, "binary", "Not an allowed command"),
    ({"binary": VLLM}, "binary", "starts vLLM, not llama.cpp"),
    ({"model_path": "tiny.gguf"}, "model_path", "absolute path"),
    ({"model_path": "/no/such/model.gguf"}, "model_path", "No such file"),
    ({"port": 80}, "port", "1024"),
    ({"port": 70000}, "port", "65535"),
    ({"host": "10.0.0.5"}, "host", "valid choice"),
    ({"context": 1}, "context", "64"),
    ({"threads": 0}, "threads", "1"),
    ({"extra_args": ["--api-key", "s3cret"]}, "extra_args", "--api-key: not an allowed"),
    ({"extra_args": ["--path", "/etc"]}, "extra_args", "--path: not an allowed"),
    ({"extra_args": ["-hf", "org/model"]}, "extra_args", "-hf: not an allowed"),
    ({"extra_args": ["--port", "9000"]}, "extra_args", "Tanglaw sets it; use the port"),
    ({"extra_args": ["-m", "/x.gguf"]}, "extra_args", "use the model_path field"),
    ({"extra_args": ["--host=0.0.0.0"]}, "extra_args", "use the host field"),
    ({"extra_args": ["2"]}, "extra_args", "a value with no flag"),
    ({"extra_args": ["--parallel"]}, "extra_args", "--parallel: needs a value"),
    ({"extra_args": ["--jinja=yes"]}, "extra_args", "takes no value"),
    ({"extra_args": ["--seed", "1\x002"]}, "extra_args", "non-empty string"),
    ({"env": {"HF_TOKEN": "hf_abc"}}, "env", "secrets are not kept"),
    ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, "env", "only variables starting with"),
    ({"env": {"DATABASE_URL": "postgres://"}}, "env", "only variables starting with"),
    ({"name": "  "}, "name", "required"),
    ({"plan_id": 999}, "plan_id", "no such plan"),
])
def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(admin_client, allowed, model,
                                                                 changes, field, says):
    response = post(admin_client, "/api/engines", body(allowed, model, **changes))
    assert response.status_code == 422, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert says in " ".join(errors[field]), errors
    assert not ManagedEngine.objects.exists()
    assert "hf_abc" not in response.content.decode() and "s3cret" not in str(
        list(AuditEvent.objects.values_list("after", flat=True)))


def test_a_wrongly_typed_field_is_a_422_too(admin_client, allowed, model):
    response = post(admin_client, "/api/engines", body(allowed, model, port="eighty"))
    assert response.status_code == 422 and "port" in response.content.decode()
    response = post(admin_client, "/api/engines", body(allowed, model, extra_args="--jinja"))
    assert response.status_code == 422 and "extra_args" in response.content.decode()


def test_ports_and_names_already_taken_are_refused(admin_client, allowed, model):
    assert post(admin_client, "/api/engines", body(allowed, model)).status_code == 201
    again = post(admin_client, "/api/engines", body(allowed, model, name="other"))
    assert "Another managed engine uses port 18080" in again.json()["errors"]["port"][0]
    Backend.objects.create(name="ollama", kind="ollama", base_url="http://127.0.0.1:11434")
    taken = post(admin_client, "/api/engines", body(allowed, model, name="b", port=11434))
    assert "'ollama' is on port 11434" in taken.json()["errors"]["port"][0]
    named = post(admin_client, "/api/engines", body(allowed, model, name="ollama", port=9100))
    assert "A backend named 'ollama' exists" in named.json()["errors"]["name"][0]


def test_vllm_takes_no_thread_count_and_needs_a_directory_or_an_id(admin_client, allowed,
                                                                   tmp_path):
    vllm = {"name": "v", "kind": "vllm", "binary": VLLM, "port": 18000}
    bad = post(admin_client, "/api/engines", {**vllm, "model_path": "not an id", "threads": 2})
    errors = bad.json()["errors"]
    assert "thread count" in errors["threads"][0] and "Hugging Face id" in errors["model_path"][0]
    ok = post(admin_client, "/api/engines", {**vllm, "model_path": str(tmp_path),
                                             "extra_args": ["--dtype", "float32"]})
    assert ok.status_code == 201, ok.content


def test_an_engine_from_a_saved_vllm_plan_takes_its_model_and_flags(admin_client, allowed):
    plan = plan_actions.save(Actor.system(), {
        "name": "qwen-dev", "model": "Qwen/Qwen2.5-0.5B-Instruct", "scenario": "development",
        "gpus": [{"name": "GPU", "memory_bytes": 24 * 1024 ** 3}]})
    response = post(admin_client, "/api/engines", {"name": "qwen", "kind": "vllm",
                                                   "port": 18001, "plan_id": plan.pk})
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["model_path"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["context"] == 4096
    assert data["binary"] == VLLM and data["plan_id"] == plan.pk
    assert "--enforce-eager" in data["extra_args"]
    assert data["extra_args"][data["extra_args"].index("--tool-call-parser") + 1] == "hermes"


def test_roles_admins_run_engines_operators_read_logs_viewers_look(
        admin_client, operator_client, viewer_client, allowed, model):
    assert post(operator_client, "/api/engines", body(allowed, model)).status_code == 403
    pk = post(admin_client, "/api/engines", body(allowed, model)).json()["id"]
    assert operator_client.post(f"/api/engines/{pk}/start").status_code == 403
    assert viewer_client.patch(f"/api/engines/{pk}", "{}",
                               content_type="application/json").status_code == 403
    assert viewer_client.get("/api/engines").json()[0]["id"] == pk
    assert viewer_client.get(f"/api/engines/{pk}/log").status_code == 403
    logs.workdir(pk)
    logs.log_path(pk).write_text("--- start\nmain: server is listening on 127.0.0.1\n")
    assert operator_client.get(f"/api/engines/{pk}/log").json()["lines"][-1].startswith(
        "main: server is listening")
    download = operator_client.get(f"/api/engines/{pk}/log/download")
    assert download.status_code == 200 and b"server is listening" in b"".join(
        download.streaming_content)
    assert AuditEvent.objects.filter(action=AuditAction.PERMISSION_DENIED).count() >= 3


def test_a_running_engine_cannot_be_deleted(admin_client, allowed, model):
    pk = post(admin_client, "/api/engines", body(allowed, model, start=True)).json()["id"]
    refused = admin_client.delete(f"/api/engines/{pk}")
    assert refused.status_code == 409 and "stop it first" in refused.json()["detail"]
    admin_client.post(f"/api/engines/{pk}/stop")
    assert admin_client.delete(f"/api/engines/{pk}").status_code == 204
    assert not ManagedEngine.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.ENGINE_DELETED).count() == 1


def test_a_patch_changes_only_what_it_names(admin_client, allowed, model):
    pk = post(admin_client, "/api/engines", body(allowed, model)).json()["id"]
    response = admin_client.patch(f"/api/engines/{pk}", json.dumps({"context": 1024}),
                                  content_type="application/json")
    assert response.status_code == 200 and response.json()["context"] == 1024
    assert response.json()["extra_args"] == ["--parallel", "2", "--jinja"]
    bad = admin_client.patch(f"/api/engines/{pk}", json.dumps({"extra_args": ["--path", "/"]}),
                             content_type="application/json")
    assert bad.status_code == 422 and ManagedEngine.objects.get(pk=pk).extra_args == [
        "--parallel", "2", "--jinja"]


def test_the_commands_this_machine_allows(viewer_client, allowed):
    commands = viewer_client.get("/api/engines/commands").json()
    assert {(c["binary"], c["kind"]) for c in commands} == {(allowed, "llamacpp"),
                                                            (VLLM, "vllm")}


def test_without_the_setting_the_engines_installed_here_are_allowed(settings, monkeypatch):
    from engines import commands

    settings.TANGLAW_ENGINE_COMMANDS = None
    monkeypatch.setattr(commands.shutil, "which",
                        lambda name: {"llama-server": "/usr/local/bin/llama-server",
                                      "vllm": "/opt/v/bin/vllm"}.get(name))
    found = [(c.text, c.kind) for c in commands.allowed()]
    assert ("/usr/local/bin/llama-server", "llamacpp") in found
    assert ("/opt/v/bin/vllm serve", "vllm") in found
    settings.TANGLAW_ENGINE_COMMANDS = []
    assert commands.allowed() == []


def test_site_config_exports_and_applies_engines(admin_client, allowed, model):
    from console import siteconfig

    text = f"""version: 1
engines:
  - name: cfg-llama
    kind: llamacpp
    binary: {json.dumps(allowed)}
    model_path: {model}
    port: 18090
    extra_args: [--parallel, "2"]
    desired: running
"""
    dry = siteconfig.apply(Actor.system(), text, dry_run=True)
    created = next(c for c in dry if (c["kind"], c["name"]) == ("engine", "cfg-llama"))
    assert created["action"] == "create"
    assert {"field": "port", "before": None, "after": 18090} in created["fields"]
    assert not ManagedEngine.objects.exists()
    siteconfig.apply(Actor.system(), text)
    engine = ManagedEngine.objects.get(name="cfg-llama")
    assert (engine.desired, engine.state) == (Desired.RUNNING, EngineState.QUEUED)
    exported = siteconfig.export_data()["engines"]
    assert exported[0]["binary"] == allowed and exported[0]["desired"] == "running"
    again = siteconfig.apply(Actor.system(), siteconfig.export_yaml())
    assert ("unchanged", "engine", "cfg-llama") in {(c["action"], c["kind"], c["name"])
                                                     for c in again}
    from console.actions import Invalid

    with pytest.raises(Invalid) as bad:
        siteconfig.apply(Actor.system(), text.replace('"2"]', '"2", --path, /]'))
    assert any(k.startswith("engines[0].extra_args") for k in bad.value.errors)
