"""The Engines pages: empty states, the form (blank, from a plan, with errors), an
engine's page with its state, log and actions, and what each role sees."""

from __future__ import annotations

import pytest

from console.actions import plans as plan_actions
from console.audit import Actor
from console.choices import AuditAction
from console.models import AuditEvent
from engines import logs
from engines.choices import Desired
from engines.models import ManagedEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


def form(fake_command, model, **changes):
    return {"name": "page-llama", "kind": "llamacpp", "command": fake_command,
            "model_path": model, "host": "127.0.0.1", "port": "18111", "context": "",
            "threads": "", "extra_args": "--parallel 2 --jinja", "env": "",
            "auto_restart": "on", "ready_timeout_s": "300", "plan": "", **changes}


def test_the_empty_list_says_what_to_do(admin_client, viewer_client, fake_command, settings):
    page = admin_client.get("/engines/").content.decode()
    assert "No managed engines" in page and 'href="/engines/new/"' in page
    assert "Run an engine" not in viewer_client.get("/engines/").content.decode()
    settings.TANGLAW_ENGINE_COMMANDS = []
    page = admin_client.get("/engines/").content.decode()
    assert "No engine command is allowed" in page and "TANGLAW_ENGINE_COMMANDS" in page


def test_an_admin_saves_and_starts_one_from_the_form(admin_client, fake_command, model):
    response = admin_client.post("/engines/new/", form(fake_command, model, then="start"))
    engine = ManagedEngine.objects.get(name="page-llama")
    assert response.status_code == 302 and response["Location"] == f"/engines/{engine.pk}/"
    assert engine.extra_args == ["--parallel", "2", "--jinja"]
    assert engine.desired == Desired.RUNNING
    page = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    assert "Waiting for a monitor" in page and "--port 18111 --metrics" in page
    assert [e.action for e in AuditEvent.objects.order_by("seq")
            if e.action.startswith("engine.")] == [AuditAction.ENGINE_CREATED,
                                                   AuditAction.ENGINE_STARTED]


def test_form_errors_are_shown_beside_their_fields_and_keep_the_input(admin_client,
                                                                      fake_command, model):
    page = admin_client.post("/engines/new/", form(
        fake_command, model, extra_args="--api-key secret-value", env="HF_TOKEN=hf_x",
        port="80")).content.decode()
    assert "--api-key: not an allowed" in page and "secrets are not kept" in page
    assert "greater than or equal to 1024" in page
    assert 'value="page-llama"' in page  # nothing typed is lost
    assert not ManagedEngine.objects.exists()


def test_the_form_fills_itself_from_a_saved_plan(admin_client, settings, fake_command):
    settings.TANGLAW_ENGINE_COMMANDS = [fake_command, "/opt/v/bin/vllm serve"]
    plan = plan_actions.save(Actor.system(), {
        "name": "qwen-dev", "model": "Qwen/Qwen2.5-0.5B-Instruct", "scenario": "development",
        "gpus": [{"name": "GPU", "memory_bytes": 24 * 1024 ** 3}]})
    assert f"/engines/new/?plan={plan.pk}" in admin_client.get("/engines/").content.decode()
    page = admin_client.get(f"/engines/new/?plan={plan.pk}").content.decode()
    assert 'value="Qwen/Qwen2.5-0.5B-Instruct"' in page and 'value="4096"' in page
    assert "--enforce-eager" in page


def test_the_engine_page_shows_the_log_to_operators_and_actions_to_admins(
        admin_client, operator_client, viewer_client, fake_command, model):
    admin_client.post("/engines/new/", form(fake_command, model, then="save"))
    engine = ManagedEngine.objects.get()
    logs.workdir(engine.pk)
    logs.log_path(engine.pk).write_text("--- start\nmain: model loaded <b>bold</b>\n")
    operator_page = operator_client.get(f"/engines/{engine.pk}/").content.decode()
    assert "main: model loaded &lt;b&gt;bold&lt;/b&gt;" in operator_page
    assert f'action="/engines/{engine.pk}/start/"' not in operator_page
    viewer_page = viewer_client.get(f"/engines/{engine.pk}/").content.decode()
    assert "model loaded" not in viewer_page and "Download the whole log" not in viewer_page
    assert viewer_client.get(f"/engines/{engine.pk}/log/").status_code == 403
    admin_page = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    assert f'action="/engines/{engine.pk}/start/"' in admin_page
    assert admin_client.get(f"/engines/{engine.pk}/log/").status_code == 200
    part = admin_client.get(f"/engines/{engine.pk}/?part=state", HTTP_HX_REQUEST="true")
    assert b"<html" not in part.content and b"Restarts" in part.content


def test_start_stop_and_delete_from_the_page(admin_client, operator_client, fake_command,
                                            model):
    admin_client.post("/engines/new/", form(fake_command, model, then="save"))
    engine = ManagedEngine.objects.get()
    assert operator_client.post(f"/engines/{engine.pk}/start/").status_code == 403
    admin_client.post(f"/engines/{engine.pk}/start/")
    engine.refresh_from_db()
    assert engine.desired == Desired.RUNNING
    refused = admin_client.post(f"/engines/{engine.pk}/delete/", follow=True)
    assert "stop it first" in refused.content.decode()
    admin_client.post(f"/engines/{engine.pk}/stop/")
    admin_client.post(f"/engines/{engine.pk}/delete/")
    assert not ManagedEngine.objects.exists()
    assert admin_client.post(f"/engines/{engine.pk}/start/").status_code == 404


def test_the_list_costs_the_same_queries_for_many_engines(admin_client, fake_command, model,
                                                          django_assert_max_num_queries):
    for n in range(12):
        admin_client.post("/engines/new/", form(fake_command, model, name=f"e{n}",
                                                port=str(18200 + n), then="save"))
    with django_assert_max_num_queries(8):
        page = admin_client.get("/engines/", HTTP_HX_REQUEST="true")
    assert page.content.decode().count("<tr>") == 12
