"""Datasets over the API: created with cases and checks, every change a new version
(old ones still readable), bad input named by path, roles, audit."""

import json

import pytest

from console.models import AuditEvent
from evals.models import Dataset, DatasetVersion

pytestmark = pytest.mark.django_db

CASES = [
    {"id": "weekday", "messages": [{"role": "user", "content": "What day is it?"}],
     "checks": [{"kind": "tool_called", "name": "current_time"}]},
    {"messages": "What is 19*21?", "expected": "399",
     "checks": [{"kind": "contains", "value": "399"}]},
]


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_create_read_and_version(operator_client, viewer_client):
    made = post(operator_client, "/api/datasets", {
        "name": "front-desk", "description": "what the desk agent gets asked",
        "cases": CASES, "checks": [{"kind": "max_latency_ms", "value": 5000}]})
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["version"] == body["shown_version"] == 1
    assert [c["id"] for c in body["cases"]] == ["weekday", "2"]  # position when unnamed
    assert body["cases"][1]["messages"] == [{"role": "user", "content": "What is 19*21?"}]
    assert body["checks"] == [{"kind": "max_latency_ms", "value": 5000}]
    pk = body["id"]
    # a new version with one more case; version 1 is still there as it was
    more = [*body["cases"], {"id": "json", "messages": "Give me the stock as JSON.",
                             "checks": [{"kind": "json_valid"}],
                             "source": {"conversation_id": 7, "message_id": 31}}]
    second = post(operator_client, f"/api/datasets/{pk}/versions",
                  {"cases": more, "note": "a JSON case from a real chat"})
    assert second.status_code == 201 and second.json()["version"] == 2
    assert len(second.json()["cases"]) == 3 and second.json()["checks"] == body["checks"]
    old = viewer_client.get(f"/api/datasets/{pk}?version=1").json()
    assert old["shown_version"] == 1 and len(old["cases"]) == 2 and old["version"] == 2
    versions = viewer_client.get(f"/api/datasets/{pk}/versions").json()
    assert [(v["number"], v["cases"]) for v in versions] == [(2, 3), (1, 2)]
    assert versions[0]["note"] == "a JSON case from a real chat"
    assert viewer_client.get(f"/api/datasets/{pk}?version=9").status_code == 404
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="dataset.")
            .order_by("seq")] == ["dataset.created", "dataset.updated"]


@pytest.mark.parametrize("body,path", [
    ({"cases": CASES}, "name"),
    ({"name": "x" * 101, "cases": CASES}, "name"),
    ({"name": "d", "cases": "nope"}, "cases"),
    ({"name": "d", "cases": [{"messages": []}]}, "cases[0].messages"),
    ({"name": "d", "cases": [{"messages": [{"role": "robot", "content": "x"}]}]},
     "cases[0].messages[0].role"),
    ({"name": "d", "cases": [{"messages": [{"role": "user", "content": ""}]}]},
     "cases[0].messages[0].content"),
    ({"name": "d", "cases": [{"messages": [{"role": "user", "content": "q"},
                                           {"role": "assistant", "content": "a"}]}]},
     "cases[0].messages"),
    ({"name": "d", "cases": [{"messages": "q", "expected": 5}]}, "cases[0].expected"),
    ({"name": "d", "cases": [{"messages": "q", "checks": [{"kind": "regex",
                                                           "pattern": "("}]}]},
     "cases[0].checks[0].pattern"),
    ({"name": "d", "cases": [{"id": "a", "messages": "q"}, {"id": "a", "messages": "r"}]},
     "cases[1].id"),
    ({"name": "d", "cases": [{"messages": "q", "colour": "red"}]}, "cases[0].colour"),
    ({"name": "d", "cases": CASES, "checks": [{"kind": "vibes"}]}, "checks[0].kind"),
    ({"name": "d", "description": 5}, "description"),
])
def test_bad_input_is_named_by_path_and_nothing_is_made(operator_client, body, path):
    answer = post(operator_client, "/api/datasets", body)
    assert answer.status_code == 422, answer.content
    assert path in answer.json()["errors"], answer.json()
    assert not Dataset.objects.exists()


def test_a_bad_version_changes_nothing(operator_client):
    pk = post(operator_client, "/api/datasets", {"name": "d", "cases": CASES}).json()["id"]
    bad = post(operator_client, f"/api/datasets/{pk}/versions",
               {"cases": [{"messages": "q", "checks": [{"kind": "max_tokens"}]}]})
    assert bad.status_code == 422 and "cases[0].checks[0].value" in bad.json()["errors"]
    assert DatasetVersion.objects.count() == 1 and Dataset.objects.get().version == 1


def test_roles_and_delete(operator_client, viewer_client):
    assert post(viewer_client, "/api/datasets", {"name": "d", "cases": CASES}
                ).status_code == 403
    pk = post(operator_client, "/api/datasets", {"name": "d", "cases": CASES}).json()["id"]
    assert viewer_client.get("/api/datasets").json()[0]["name"] == "d"
    assert viewer_client.delete(f"/api/datasets/{pk}").status_code == 403
    assert operator_client.delete(f"/api/datasets/{pk}").status_code == 204
    assert not DatasetVersion.objects.exists()
    assert AuditEvent.objects.get(action="dataset.deleted").before == {"name": "d",
                                                                       "versions": 1}
    assert post(operator_client, "/api/datasets", {"name": "d", "cases": CASES}
                ).status_code == 201  # the name is free again
