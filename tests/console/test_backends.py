"""Backends through the pages and the API: create, edit, test, delete, discover, no key leaks."""

import json
import logging

import pytest
from django.core.management import call_command

from console.models import AuditEvent, Backend, BackendStatusChange
from tests.support.llama_server import free_port

pytestmark = pytest.mark.django_db
KEY = "sk-test-9f8e7d6c5b4a3210"


def form(**overrides):
    data = {"name": "edge-ollama", "kind": "ollama", "base_url": "http://127.0.0.1:11434",
            "connect_timeout_s": "3", "read_timeout_s": "60", "enabled": "on", "notes": ""}
    data.update(overrides)
    return data


def test_add_edit_and_delete_through_the_pages(operator_client, fake):
    engine = fake("vllm", api_key=KEY)
    response = operator_client.post("/backends/new/", form(
        name="gpu-box", kind="vllm", base_url=engine.url + "/v1/", api_key=KEY))
    backend = Backend.objects.get(name="gpu-box")
    assert response.status_code == 302 and response["Location"] == f"/backends/{backend.pk}/"
    assert backend.base_url == engine.url  # /v1 stripped for a native engine
    assert backend.api_key == KEY and backend.api_key_last4 == "3210"
    # editing without a key keeps it; an unchecked "enabled" box (absent) disables
    unchecked = form(name="gpu-box", kind="vllm", base_url=engine.url, notes="rack 3")
    del unchecked["enabled"]
    edit = operator_client.post(f"/backends/{backend.pk}/edit/", unchecked)
    assert edit.status_code == 302
    backend.refresh_from_db()
    assert backend.api_key == KEY and backend.notes == "rack 3" and backend.enabled is False
    operator_client.post(f"/backends/{backend.pk}/edit/", {**form(
        name="gpu-box", kind="vllm", base_url=engine.url), "clear_api_key": "on"})
    backend.refresh_from_db()
    assert backend.api_key == "" and not backend.api_key_set
    operator_client.post(f"/backends/{backend.pk}/delete/")
    assert not Backend.objects.exists()


def test_invalid_form_keeps_what_was_typed_and_names_the_field(operator_client):
    response = operator_client.post("/backends/new/", form(
        name="keep-me", read_timeout_s="0", base_url="gopher://x", notes="my notes"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "only http:// and https://" in body
    assert "greater than or equal to 1" in body
    assert 'value="keep-me"' in body and "my notes" in body
    assert not Backend.objects.exists()


def test_duplicate_name_is_refused(operator_client):
    operator_client.post("/backends/new/", form())
    response = operator_client.post("/backends/new/", form(base_url="http://127.0.0.1:11435"))
    assert "already exists" in response.content.decode()
    assert Backend.objects.count() == 1


def test_test_connection_page_shows_models_and_records_status(operator_client, fake):
    engine = fake("ollama")
    backend = Backend.objects.create(name="o", kind="ollama", base_url=engine.url)
    response = operator_client.post(f"/backends/{backend.pk}/test/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "Healthy" in body and "0.12.3" in body and "qwen2.5:0.5b" in body
    assert "Q4_K_M" in body and "loaded" in body
    backend.refresh_from_db()
    assert backend.status == "healthy" and backend.model_count == 2
    change = BackendStatusChange.objects.get(backend=backend)
    assert (change.previous, change.status) == ("unknown", "healthy")


def test_stopped_backend_turns_unhealthy_with_the_reason(operator_client, fake):
    engine = fake("ollama")
    backend = Backend.objects.create(name="o", kind="ollama", base_url=engine.url)
    operator_client.post(f"/api/backends/{backend.pk}/test")
    port = engine.port
    engine.stop()
    body = operator_client.post(f"/api/backends/{backend.pk}/test").json()
    assert body["status"] == "unhealthy"
    assert body["error"] == f"connection refused at 127.0.0.1:{port} — is Ollama running?"
    assert list(BackendStatusChange.objects.values_list("status", flat=True)) == [
        "unhealthy", "healthy"]


def test_list_badges_refresh_by_htmx(operator_client, fake, settings):
    engine = fake("llamacpp")
    Backend.objects.create(name="l", kind="llamacpp", base_url=engine.url)
    Backend.objects.create(name="gone", kind="ollama", base_url=f"http://127.0.0.1:{free_port()}")
    full = operator_client.get("/backends/").content.decode()
    assert 'hx-trigger="load, every 10s"' in full and "Not checked yet" in full
    rows = operator_client.get("/backends/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in rows
    assert "Healthy" in rows and "Unhealthy" in rows and "is Ollama running?" in rows


def test_list_page_query_count_does_not_grow(operator_client, django_assert_max_num_queries):
    for i in range(30):
        Backend.objects.create(name=f"b{i}", kind="ollama", base_url=f"http://10.0.0.{i}:11434")
    with django_assert_max_num_queries(6):
        operator_client.get("/backends/")


def test_api_crud_never_returns_the_key(operator_client, fake):
    engine = fake("openai_compatible", api_key=KEY)
    created = operator_client.post("/api/backends", data={
        "name": "lm", "kind": "openai_compatible", "base_url": engine.url, "api_key": KEY},
        content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert body["api_key_set"] is True and body["api_key_last4"] == "3210"
    assert "api_key" not in body
    pk = body["id"]
    patched = operator_client.patch(f"/api/backends/{pk}", data={"notes": "lab"},
                                    content_type="application/json").json()
    assert patched["notes"] == "lab" and patched["api_key_set"] is True
    tested = operator_client.post(f"/api/backends/{pk}/test").json()
    assert tested["status"] == "healthy" and tested["models"][0]["id"] == "qwen2.5-7b-instruct"
    bad = operator_client.patch(f"/api/backends/{pk}", data={"read_timeout_s": -1},
                                content_type="application/json")
    assert bad.status_code == 422 and "read_timeout_s" in bad.json()["errors"]
    wrong_type = operator_client.post("/api/backends", data={"name": "x", "kind": "teapot",
                                                              "base_url": "http://127.0.0.1"},
                                      content_type="application/json")
    assert wrong_type.status_code == 422
    cleared = operator_client.patch(f"/api/backends/{pk}", data={"clear_api_key": True},
                                    content_type="application/json").json()
    assert cleared["api_key_set"] is False
    assert operator_client.delete(f"/api/backends/{pk}").status_code == 204
    assert operator_client.get(f"/api/backends/{pk}").status_code == 404


def test_no_page_api_log_or_audit_event_contains_the_key(operator_client, admin_client, fake,
                                                        caplog):
    caplog.set_level(logging.DEBUG)
    engine = fake("vllm", fault="401")
    operator_client.post("/backends/new/", form(name="v", kind="vllm", base_url=engine.url,
                                                api_key=KEY))
    pk = Backend.objects.get(name="v").pk
    seen = []
    for url in ["/", "/backends/", f"/backends/{pk}/", f"/backends/{pk}/edit/", "/audit/",
                "/api/backends", f"/api/backends/{pk}", "/api/audit",
                "/admin/console/backend/", f"/admin/console/backend/{pk}/change/",
                "/admin/console/auditevent/"]:
        client = admin_client if url.startswith("/admin") else operator_client
        seen.append(client.get(url).content.decode())
    seen.append(operator_client.post(f"/backends/{pk}/test/").content.decode())
    seen.append(json.dumps(operator_client.post(f"/api/backends/{pk}/test").json()))
    seen.append(b"".join(operator_client.get("/audit/export.jsonl").streaming_content).decode())
    seen.append(caplog.text)
    seen.append(json.dumps(list(AuditEvent.objects.values()), default=str))
    for text in seen:
        assert KEY not in text and KEY[:-4] not in text
    # the key did reach the backend, as a bearer header
    assert any(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in engine.requests)


def test_discovery_identifies_engines_and_registers_on_click(operator_client, fake, settings):
    engines = {k: fake(k) for k in ("ollama", "llamacpp", "vllm", "openai_compatible")}
    closed = free_port()
    settings.TANGLAW_DISCOVERY_PORTS = [e.port for e in engines.values()] + [closed]
    settings.TANGLAW_FOUNDRY_CLI = "no-such-foundry-cli"
    found = operator_client.post("/api/backends/discover").json()
    by_kind = {c["kind"]: c for c in found}
    assert set(by_kind) == {"ollama", "llamacpp", "vllm", "openai_compatible"}
    assert by_kind["ollama"]["version"] == "0.12.3" and by_kind["ollama"]["models"] == 2
    assert by_kind["openai_compatible"]["base_url"].endswith("/v1")
    assert not Backend.objects.exists()  # nothing without the operator's click
    page = operator_client.post("/backends/discover/").content.decode()
    assert page.count(">Register</button>") == 4
    candidate = by_kind["llamacpp"]
    operator_client.post("/backends/new/", form(name=candidate["name"], kind="llamacpp",
                                                base_url=candidate["base_url"]))
    again = operator_client.post("/api/backends/discover").json()
    assert {c["kind"]: c["registered_id"] for c in again}["llamacpp"] == \
        Backend.objects.get().pk


def test_discovery_uses_the_foundry_cli(operator_client, fake, settings, tmp_path):
    engine = fake("foundry_local")
    cli = tmp_path / "foundry"
    cli.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = server ]; then echo 'unknown command' >&2; exit 1; fi\n"
                   f"echo 'Model management service is running on {engine.url}/openai/status'\n")
    cli.chmod(0o755)
    settings.TANGLAW_DISCOVERY_PORTS = []
    settings.TANGLAW_FOUNDRY_CLI = str(cli)
    found = operator_client.post("/api/backends/discover").json()
    assert found == [{"kind": "foundry_local", "base_url": engine.url, "name": "foundry-local",
                      "version": "", "models": 0, "registered_id": None}]


def test_discover_backends_command(fake, settings, capsys):
    engine = fake("ollama")
    settings.TANGLAW_FOUNDRY_CLI = "no-such-foundry-cli"
    call_command("discover_backends", "--ports", str(engine.port))
    assert "ollama" in capsys.readouterr().out and not Backend.objects.exists()
    call_command("discover_backends", "--ports", str(engine.port), "--register")
    assert Backend.objects.get().base_url == engine.url
    assert AuditEvent.objects.filter(action="backend.created", actor="discover_backends").exists()


@pytest.mark.parametrize("wrong,engine_kind,says", [
    ("ollama", "llamacpp", "this answers like llama-server, not Ollama — change the kind?"),
    ("llamacpp", "ollama", "this answers like Ollama, not llama-server — change the kind?"),
    ("ollama", "vllm", "this answers like vLLM, not Ollama — change the kind?"),
])
def test_the_wrong_kind_is_named_when_the_test_fails(operator_client, fake, wrong,
                                                     engine_kind, says):
    engine = fake(engine_kind)
    backend = Backend.objects.create(name="mixed-up", kind=wrong, base_url=engine.url)
    body = operator_client.post(f"/api/backends/{backend.pk}/test").json()
    assert body["status"] == "unhealthy"
    assert body["error"].startswith(says)
    backend.refresh_from_db()
    assert backend.status_reason.startswith(says)  # the list and the detail page show it


def test_a_stopped_engine_gets_no_kind_hint(operator_client, fake):
    engine = fake("ollama")
    backend = Backend.objects.create(name="o", kind="llamacpp", base_url=engine.url)
    engine.stop()
    body = operator_client.post(f"/api/backends/{backend.pk}/test").json()
    assert body["status"] == "unhealthy" and "answers like" not in body["error"]


def test_the_form_says_what_the_key_field_does_and_knows_each_default_address(
        operator_client):
    new = operator_client.get("/backends/new/").content.decode()
    assert "keep the current key" not in new
    assert "Leave blank if the engine needs none" in new
    assert "data-default-urls=" in new and "http://127.0.0.1:8080" in new
    backend = Backend.objects.create(name="keyed", kind="vllm", base_url="http://10.0.0.5:8000",
                                     api_key="sk-abcdefgh12345678", api_key_last4="5678")
    edit = operator_client.get(f"/backends/{backend.pk}/edit/").content.decode()
    assert "Leave blank to keep the current key." in edit and "…5678" in edit
    plain = Backend.objects.create(name="plain", kind="ollama", base_url="http://10.0.0.6:11434")
    assert "keep the current key" not in operator_client.get(
        f"/backends/{plain.pk}/edit/").content.decode()
