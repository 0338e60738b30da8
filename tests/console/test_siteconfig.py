"""The whole site as YAML: round trip into an empty database, dry run with creates, updates
and deletes, a broken file that changes nothing, the commands and the API."""

import pytest
import yaml
from django.core.management import call_command

from agents.models import Agent, Tool
from console import siteconfig
from console.actions import Invalid
from console.audit import Actor
from console.models import AuditEvent, Backend, DeploymentPlan
from monitoring.models import AlertRule

pytestmark = pytest.mark.django_db
KEY = "sk-site-config-7781"
GIB = 1024 ** 3


@pytest.fixture
def site(operator_client):
    edge = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:11434")
    cloud = operator_client.post("/api/backends", data={
        "name": "cloud", "kind": "openai_compatible", "base_url": "https://api.example.com/v1",
        "api_key": KEY}, content_type="application/json")
    assert cloud.status_code == 201
    helper = operator_client.post("/api/agents", data={
        "name": "helper", "backend_id": edge.pk, "model": "qwen2.5:0.5b",
        "tool_ids": [Tool.objects.get(name="calculator").pk],
        "escalation": {"backend_id": cloud.json()["id"], "model": "gpt-4o-mini"}},
        content_type="application/json").json()
    operator_client.post("/api/agents", data={
        "name": "desk", "kind": "router", "backend_id": edge.pk, "model": "qwen2.5:0.5b",
        "specialists": [{"specialist_id": helper["id"], "keywords": ["math"]}]},
        content_type="application/json")
    operator_client.post("/api/alert-rules", data={
        "name": "Slow TTFT", "metric": "ttft_ms", "threshold": 800, "scope": "backends"},
        content_type="application/json")
    operator_client.post("/api/plans", data={
        "name": "gpu-box", "model": "Qwen/Qwen2.5-7B-Instruct", "scenario": "staging",
        "gpus": [{"name": "L4", "memory_bytes": 24 * GIB}]}, content_type="application/json")
    return edge


def empty_the_site():
    Agent.objects.filter(kind="router").delete()
    Agent.objects.all().delete()
    DeploymentPlan.objects.all().delete()
    Backend.objects.all().delete()
    AlertRule.objects.all().delete()


def test_export_apply_to_an_empty_database_export_again(site, admin_client):
    exported = admin_client.get("/api/config/export").content.decode()
    data = yaml.safe_load(exported)
    assert set(data) == {"version", "prune", "backends", "mcp_servers", "tools", "agents",
                         "alert_rules", "plans", "engines", "deployment"}
    assert KEY not in exported
    assert next(b for b in data["backends"] if b["name"] == "cloud")["api_key"] == "secret"
    assert {r["name"] for r in data["alert_rules"]} >= {"Backend unhealthy", "Slow TTFT"}
    empty_the_site()
    missing = admin_client.post("/api/config/apply", data={"yaml": exported},
                                content_type="application/json")
    assert missing.status_code == 422
    # the key, and what could not be checked without that backend
    assert set(missing.json()["errors"]) == {"backends[0].api_key",
                                             "agents[1].escalation.backend"}
    assert not Backend.objects.exists()  # nothing changed
    secrets = {"backends.cloud.api_key": KEY}
    dry = admin_client.post("/api/config/apply?dry_run=1", data={
        "yaml": exported, "secrets": secrets}, content_type="application/json").json()
    assert dry["dry_run"] is True and not Backend.objects.exists()
    assert {(c["action"], c["kind"], c["name"]) for c in dry["changes"]} >= {
        ("create", "backend", "cloud"), ("create", "agent", "desk"),
        ("create", "alert_rule", "Slow TTFT"), ("create", "plan", "gpu-box")}
    applied = admin_client.post("/api/config/apply", data={"yaml": exported,
                                                           "secrets": secrets},
                                content_type="application/json")
    assert applied.status_code == 200, applied.json()
    assert admin_client.get("/api/config/export").content.decode() == exported
    assert Backend.objects.get(name="cloud").api_key == KEY
    event = AuditEvent.objects.filter(action="config.applied").latest("seq")
    assert ("create", "agent", "desk") in {(c["action"], c["kind"], c["name"])
                                           for c in event.after["changes"]}
    again = siteconfig.apply(Actor.system(), exported, secrets=secrets)
    assert {c["action"] for c in again} == {"unchanged"}


def test_a_broken_file_lists_every_error_and_changes_nothing(site, admin_client):
    data = yaml.safe_load(siteconfig.export_yaml())
    data["backends"][0]["base_url"] = "http://169.254.169.254/"
    data["backends"].append({"name": "edge", "kind": "ollama"})
    data["agents"][0]["backend"] = "nowhere"
    data["alert_rules"].append({"name": "bad", "metric": "moon", "threshold": "high"})
    data["plans"][0]["scenario"] = "galactic"
    before = (Backend.objects.count(), AuditEvent.objects.count(),
              list(Backend.objects.values_list("base_url", flat=True)))
    response = admin_client.post("/api/config/apply", data={"yaml": yaml.safe_dump(data)},
                                 content_type="application/json")
    assert response.status_code == 422
    errors = response.json()["errors"]
    n = len(data["alert_rules"]) - 1
    assert {"backends[0].base_url", "backends[2].name", "agents[0].backend",
            f"alert_rules[{n}].metric", f"alert_rules[{n}].threshold",
            "plans[0].scenario"} <= set(errors)
    assert (Backend.objects.count(), AuditEvent.objects.count(),
            list(Backend.objects.values_list("base_url", flat=True))) == before
    assert "not valid YAML" in str(admin_client.post(
        "/api/config/apply", data={"yaml": "a: [1,"}, content_type="application/json").json())


def test_prune_deletes_what_the_file_leaves_out(site):
    data = yaml.safe_load(siteconfig.export_yaml())
    data["prune"] = True
    data["plans"] = []
    data["alert_rules"] = [r for r in data["alert_rules"] if r["name"] != "Slow TTFT"]
    data["agents"] = [a for a in data["agents"] if a["name"] != "desk"]
    changes = siteconfig.apply(Actor.system(), yaml.safe_dump(data), dry_run=True,
                               secrets={"backends.cloud.api_key": KEY})
    deletes = {(c["kind"], c["name"]) for c in changes if c["action"] == "delete"}
    assert deletes == {("plan", "gpu-box"), ("alert_rule", "Slow TTFT"), ("agent", "desk")}
    assert DeploymentPlan.objects.exists() and Agent.objects.filter(name="desk").exists()
    siteconfig.apply(Actor.system(), yaml.safe_dump(data),
                     secrets={"backends.cloud.api_key": KEY})
    assert not DeploymentPlan.objects.exists() and not Agent.objects.filter(name="desk").exists()
    data["backends"] = []  # agents still use them
    with pytest.raises(Invalid) as failure:
        siteconfig.apply(Actor.system(), yaml.safe_dump(data))
    assert "agents still use it" in str(failure.value.errors)
    assert Backend.objects.count() == 2


def test_commands_and_permissions(site, tmp_path, capsys, operator_client, admin_client):
    out = tmp_path / "site.yaml"
    call_command("export_config", "-o", str(out))
    text = out.read_text()
    assert "gpu-box" in text and KEY not in text
    call_command("apply_config", str(out), "--dry-run",
                 "--secret", f"backends.cloud.api_key={KEY}")
    printed = capsys.readouterr().out
    assert "unchanged backend     cloud" in printed and "Dry run: nothing was changed." in printed
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    with pytest.raises(SystemExit) as exit_code:
        call_command("apply_config", str(bad))
    assert exit_code.value.code == 1 and "expected version: 1" in capsys.readouterr().err
    assert operator_client.post("/api/config/apply", data={"yaml": text},
                                content_type="application/json").status_code == 403
    assert operator_client.get("/config/").status_code == 403
    page = admin_client.post("/config/", {"yaml": text, "action": "check",
                                          "secrets": f"backends.cloud.api_key={KEY}"})
    assert "No changes:</strong> the file matches the site" in page.content.decode()


def test_the_deployment_section_sets_model_roles(site, operator_client, fake):
    engine = fake("ollama")
    Backend.objects.filter(name="edge").update(base_url=engine.url)
    data = yaml.safe_load(siteconfig.export_yaml())
    assert data["deployment"] == {"type": "edge", "description": "", "models": []}
    data["deployment"] = {"type": "hybrid", "description": "shop floor + cloud escalation",
                          "models": [
                              {"backend": "edge", "model": "qwen2.5:0.5b", "role": "primary",
                               "tasks": ["routing", "chat"]},
                              {"backend": "edge", "model": "llama3.2:3b", "role": "secondary",
                               "tasks": ["tools"]}]}
    changes = siteconfig.apply(Actor.system(), yaml.safe_dump(data),
                               secrets={"backends.cloud.api_key": KEY})
    assert {(c["kind"], c["action"]) for c in changes} >= {("deployment", "update"),
                                                           ("model_roles", "update")}
    assert yaml.safe_load(siteconfig.export_yaml())["deployment"] == data["deployment"]
    page = operator_client.get(f"/backends/{site.pk}/models/").content.decode()
    row = page.split("<code>qwen2.5:0.5b</code>")[1].split("</td>")[0]
    assert "primary" in row and "routing, chat" in row
    assert "secondary" in operator_client.get("/models/").content.decode()
    data["deployment"] = {"type": "moon", "models": [{"backend": "nowhere", "role": "boss"}]}
    with pytest.raises(Invalid) as failure:
        siteconfig.apply(Actor.system(), yaml.safe_dump(data))
    assert set(failure.value.errors) >= {"deployment.type", "deployment.models[0].backend",
                                         "deployment.models[0].model",
                                         "deployment.models[0].role"}


def test_a_dry_run_shows_each_changed_field_and_an_export_applied_back_changes_nothing(
        site, admin_client):
    exported = siteconfig.export_yaml()
    # applied back as it is (its key not given again): no changes, anywhere
    same = siteconfig.apply(Actor.system(), exported, dry_run=True)
    assert {c["action"] for c in same} == {"unchanged"}
    page = admin_client.post("/config/", {"yaml": exported, "action": "check"}
                             ).content.decode()
    assert "No changes:</strong> the file matches the site" in page
    applied = admin_client.post("/config/", {"yaml": exported, "action": "apply"},
                                follow=True).content.decode()
    assert "No changes: the file matches the site." in applied
    data = yaml.safe_load(exported)
    edge = next(b for b in data["backends"] if b["name"] == "edge")
    edge["base_url"] = "http://10.0.0.3:11434"
    helper = next(a for a in data["agents"] if a["name"] == "helper")
    helper["model"] = "llama3.2:3b"
    helper["system_prompt"] = "Answer in one line."
    rule = next(r for r in data["alert_rules"] if r["name"] == "Slow TTFT")
    rule["threshold"] = 1200
    changes = {(c["kind"], c["name"]): c for c in siteconfig.apply(
        Actor.system(), yaml.safe_dump(data), dry_run=True)}
    assert Backend.objects.get(name="edge").base_url == "http://10.0.0.2:11434"  # a dry run
    assert changes[("backend", "edge")]["fields"] == [
        {"field": "base_url", "before": "http://10.0.0.2:11434",
         "after": "http://10.0.0.3:11434"}]
    fields = {f["field"]: (f["before"], f["after"]) for f in changes[("agent", "helper")]
              ["fields"]}
    assert fields == {"model": ("qwen2.5:0.5b", "llama3.2:3b"),
                      "system_prompt": ("", "Answer in one line.")}
    assert changes[("alert_rule", "Slow TTFT")]["fields"] == [
        {"field": "threshold", "before": 800.0, "after": 1200.0}]
    assert changes[("agent", "desk")]["action"] == "unchanged"
    page = admin_client.post("/config/", {"yaml": yaml.safe_dump(data), "action": "check"}
                             ).content.decode()
    assert "Applying it would make 3 changes" in page
    assert "<code>base_url</code>" in page and "http://10.0.0.3:11434" in page
    assert "Answer in one line." in page


def test_the_command_prints_the_changed_fields(site, tmp_path, capsys):
    data = yaml.safe_load(siteconfig.export_yaml())
    next(b for b in data["backends"] if b["name"] == "edge")["base_url"] = "http://10.9.9.9:11434"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    call_command("apply_config", str(changed), "--dry-run")
    printed = capsys.readouterr().out
    assert "update    backend     edge" in printed
    assert "base_url: http://10.0.0.2:11434 → http://10.9.9.9:11434" in printed
