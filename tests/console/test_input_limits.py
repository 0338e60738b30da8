"""Resource limits on every YAML and JSON input, and on what the path, the query and
uploads may carry: each refusal is a 400/413/422 naming the field, never a 500, and
nothing is changed."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import Agent, Tool
from console.models import AuditEvent
from console.safeinput import UnsafeInput, load_yaml, loads_json
from monitoring.models import AlertRule

pytestmark = pytest.mark.django_db


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" document of a few hundred bytes: each level repeats the last."""
    lines = ['version: 1', 'a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"agents: [*a{levels}]")
    return "\n".join(lines) + "\n"


BAD_YAML = {
    "alias bomb": (alias_bomb(), "expands to more than"),
    "5,000-deep nesting": ("version: 1\nagents: " + "[" * 5000 + "]" * 5000, "levels deep"),
    "deep mappings": ("version: 1\nagents:\n" + "".join(f"{'  ' * i}k{i}:\n"
                                                       for i in range(1, 80))
                      + "  " * 80 + "k: x\n", "deep"),
    "recursive alias": ("version: 1\nagents: &r [*r]\n", "refers to itself"),
    "impossible date": ("version: 1\nagents: [{name: x, created: 2026-99-99}]\n",
                        "cannot be read"),
    "NaN": ("version: 1\nagents: [{name: x, temperature: .nan}]\n", "not a number"),
    "Infinity": ("version: 1\nagents: [{name: x, temperature: -.inf}]\n", "not a number"),
    "huge integer": ("version: 1\nagents: [{name: x, max_tokens: " + "9" * 4000 + "}]\n",
                     "too large an integer"),
    "lone surrogate": ('version: 1\nagents: [{name: "\\ud800"}]\n', "surrogate"),
}


@pytest.mark.parametrize("name", list(BAD_YAML))
def test_yaml_limits_in_the_loader(name):
    text, message = BAD_YAML[name]
    with pytest.raises(UnsafeInput, match=message) as refused:
        load_yaml(text, "file")
    assert refused.value.field.startswith("file")


@pytest.mark.parametrize("name", list(BAD_YAML))
def test_yaml_imports_refuse_costly_documents_with_422(name, operator_client, admin_client):
    text, message = BAD_YAML[name]
    before = (Agent.objects.count(), AuditEvent.objects.count())
    agents = operator_client.post("/api/agents/import", {"yaml": text},
                                  content_type="application/json")
    assert agents.status_code == 422, agents.content
    assert any(message in m for ms in agents.json()["errors"].values() for m in ms)
    site = admin_client.post("/api/config/apply", {"yaml": text.replace("agents:", "backends:")},
                             content_type="application/json")
    assert site.status_code == 422, site.content
    page = operator_client.post("/agents/import/", {"yaml": text, "action": "check"})
    assert page.status_code == 200 and message in page.content.decode()
    assert (Agent.objects.count(), AuditEvent.objects.count()) == before


def nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


RAW_BODIES = {
    "NaN": '{"name": "r", "metric": "host_cpu_percent", "threshold": NaN}',
    "Infinity": '{"name": "r", "metric": "host_cpu_percent", "threshold": Infinity}',
    "-Infinity": '{"name": "r", "metric": "host_cpu_percent", "threshold": -Infinity}',
    "1e999": '{"name": "r", "metric": "host_cpu_percent", "threshold": 1e999}',
    "4,000 digits": '{"name": "r", "metric": "host_cpu_percent", "threshold": 1, '
                    '"for_s": ' + "9" * 4000 + "}",
    "lone surrogate": '{"name": "\\ud800", "metric": "host_cpu_percent", "threshold": 1}',
    "900 deep": '{"name": "r", "metric": "host_cpu_percent", "threshold": 1, "x": '
                + "[" * 900 + "]" * 900 + "}",
    "not JSON": '{"name": ',
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_json_bodies_are_bounded(name, operator_client):
    response = operator_client.post("/api/alert-rules", RAW_BODIES[name],
                                    content_type="application/json")
    assert response.status_code == 400, (name, response.content)
    body = response.json()
    assert body["detail"].startswith("body") and "errors" in body
    assert not AlertRule.objects.filter(name="r").exists()


def test_a_deep_tool_schema_is_refused_naming_parameters(operator_client):
    deep = ('{"name": "deep", "description": "d", "config": {"method": "GET", "url": '
            '"https://api.example.com/x"}, "parameters": '
            + '{"type": "object", "properties": {"x": ' * 900 + '{"type": "string"}'
            + "}}" * 900 + "}")
    response = operator_client.post("/api/tools", deep, content_type="application/json")
    assert response.status_code == 400
    shallow_but_too_deep = operator_client.post("/api/tools", {
        "name": "deep", "description": "d", "parameters": nested(30),
        "config": {"method": "GET", "url": "https://api.example.com/x"}},
        content_type="application/json")
    assert shallow_but_too_deep.status_code == 422
    assert "parameters" in json.dumps(shallow_but_too_deep.json()["errors"])
    page = operator_client.post("/tools/http/new/", {
        "name": "deep", "description": "d", "method": "GET",
        "url": "https://api.example.com/x", "parameters": deep.split('"parameters": ')[1][:-1],
        "timeout_s": "nan", "max_response_bytes": "9" * 4000})
    text = page.content.decode()
    assert page.status_code == 200 and "levels deep" in text and "enter a number" in text
    assert not Tool.objects.filter(name="deep").exists()


def test_a_nan_threshold_from_the_form_is_refused(operator_client):
    for value in ("nan", "inf", "-Infinity", "1e999"):
        page = operator_client.post("/alerts/", {
            "name": "r", "metric": "host_cpu_percent", "scope": "host", "comparator": ">",
            "threshold": value, "severity": "warning"})
        assert page.status_code == 200 and "Enter a number" in page.content.decode()
        assert not AlertRule.objects.filter(name="r").exists(), value
    for rule in ("abc", "9" * 4000):
        page = operator_client.post("/alerts/", {"rule": rule, "name": "r",
                                                 "threshold": "1"})
        assert page.status_code == 404


@pytest.mark.parametrize("path", ["/api/backends/" + "9" * 4000, "/api/backends/" + "9" * 25,
                                  "/backends/" + "9" * 4000 + "/",
                                  "/agents/" + "9" * 30 + "/"])
def test_ids_too_large_for_the_database_are_not_found(path, viewer_client):
    assert viewer_client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/api/alerts?limit=" + "9" * 4000,
                                  "/api/audit?limit=" + "9" * 25,
                                  "/playground/?c=" + "9" * 4000])
def test_numbers_too_large_in_the_query_are_400(path, admin_client):
    response = admin_client.get(path)
    assert response.status_code == 400
    assert "too large a number" in response.content.decode()


@pytest.mark.parametrize("since", ["2026-99-99", "2026-02-30", "2026-12-01T25:00",
                                   "9999999-01-01", "2026-13-01T10:00:00+99:00"])
def test_impossible_dates_name_the_field(since, admin_client):
    response = admin_client.get("/api/audit", {"since": since})
    assert response.status_code in (400, 422), response.content
    assert "since" in response.content.decode()
    page = admin_client.get("/audit/", {"since": since})
    assert page.status_code in (200, 400)


def test_uploads_are_bounded_as_they_arrive(operator_client, settings):
    settings.TANGLAW_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("agents.yaml", b"# " + b"x" * (2 * 1024 * 1024),
                             content_type="application/yaml")
    response = operator_client.post("/agents/import/", {"file": big, "action": "check"})
    assert response.status_code == 413
    assert "larger than 1 MB" in response.content.decode()
    knowledge = operator_client.post("/knowledge/", {
        "file": SimpleUploadedFile("k.txt", b"y" * (2 * 1024 * 1024))})
    assert knowledge.status_code == 413


def test_websocket_frames_are_bounded_too():
    for raw in ('{"type": "user_message", "text": "\\ud800"}',
                '{"type": "x", "a": ' + "[" * 50 + "]" * 50 + "}",
                '{"type": "x", "n": NaN}'):
        with pytest.raises(UnsafeInput):
            loads_json(raw, "frame", max_depth=8)


def test_a_good_document_still_loads():
    text = yaml.safe_dump({"version": 1, "agents": [{"name": "a", "temperature": 0.2,
                                                     "when": "2026-11-30"}]})
    assert load_yaml(text)["agents"][0]["temperature"] == 0.2
    anchors = "version: 1\nbase: &b {model: m}\nagents: [*b, *b]\n"
    assert load_yaml(anchors)["agents"] == [{"model": "m"}, {"model": "m"}]


def test_a_long_number_in_a_search_is_text_not_an_id(operator_client):
    assert operator_client.get("/api/knowledge/search", {"q": "9" * 30}).status_code == 200
    assert operator_client.get("/knowledge/", {"q": "9" * 30}).status_code == 200
