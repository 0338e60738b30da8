"""Regression sets: an agent names a dataset; a new version is offered a run of it, and
its results are shown beside the version before, with what regressed."""

import json

import pytest

from agents.models import Agent
from console.models import AuditEvent, Backend
from evals import runner
from evals.models import Dataset, Experiment, RegressionSet
from tests.support.scripted_openai import finish, text, usage

pytestmark = pytest.mark.usefixtures("live_db")


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}),
                                   content_type="application/json")


def sums(body):
    """Right at the agent's old temperature; a cooler one gets odd sums wrong."""
    asked = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    a, b = (int(x) for x in asked.removeprefix("add ").split("+"))
    answer = a + b if body.get("temperature") == 0.7 or (a + b) % 2 == 0 else a + b + 1
    return text(str(answer)) + finish() + usage(8, 2)


@pytest.fixture
def desk(scripted):
    scripted.responder = sums
    box = Backend.objects.create(name="box", kind="openai_compatible", base_url=scripted.url)
    return Agent.objects.create(name="desk", backend=box, model="scripted-1", temperature=0.7)


@pytest.fixture
def dataset(operator_client, desk):
    made = send(operator_client, "post", "/api/datasets", {"name": "sums", "cases": [
        {"id": f"s{i}", "messages": f"add {i}+1", "expected": str(i + 1),
         "checks": [{"kind": "exact", "value": str(i + 1)}]} for i in range(6)]})
    return Dataset.objects.get(pk=made.json()["id"])


def test_a_new_version_is_checked_beside_the_one_before(operator_client, desk, dataset):
    url = f"/api/agents/{desk.pk}/regression-set"
    assert operator_client.get(url).json()["regression_set"] is None
    chosen = send(operator_client, "put", url, {"dataset_id": dataset.pk})
    assert chosen.status_code == 200, chosen.content
    assert chosen.json()["regression_set"]["name"] == "sums"
    event = AuditEvent.objects.get(action="agent.regression_set")
    assert event.after == {"dataset": "sums", "dataset_id": dataset.pk}
    # the panel offers the run on the version as it is
    panel = operator_client.get(f"/agents/{desk.pk}/regression-set/")
    assert b"Version 1 has not been run on sums yet." in panel.content
    assert b"Run it on version 1" in panel.content
    started = send(operator_client, "post", f"{url}/run")
    assert started.status_code == 201, started.content
    assert started.json()["targets"][0]["agent_version"] == 1
    again = send(operator_client, "post", f"{url}/run")
    assert again.status_code == 409 and "already being checked" in again.json()["detail"]
    runner.step("monitor-1")
    first = operator_client.get(url).json()
    assert first["this"]["passed"] == 6 and first["previous"] is None
    # a new version (a cooler temperature), run from the panel's button
    patched = send(operator_client, "patch", f"/api/agents/{desk.pk}", {"temperature": 0.1})
    assert patched.json()["version"] == 2
    offered = operator_client.get(f"/agents/{desk.pk}/regression-set/")
    assert b"Version 2 has not been run on sums yet." in offered.content
    assert b"The version before: v1" in offered.content and b"6/6 passed" in offered.content
    ran = operator_client.post(f"/agents/{desk.pk}/regression-set/", {"action": "run"},
                               follow=True)
    assert b"Started desk v2 on sums" in ran.content
    assert ran.redirect_chain[-1][0].startswith("/experiments/")
    runner.step("monitor-1")
    body = operator_client.get(url).json()
    assert body["this"]["agent_version"] == 2 and body["this"]["passed"] == 3
    assert body["previous"]["agent_version"] == 1 and body["previous"]["passed"] == 6
    assert [c["case_id"] for c in body["diff"]["regressed"]] == ["s0", "s2", "s4"]
    assert [r["agent_version"] for r in body["runs"]] == [2, 1]
    panel = operator_client.get(f"/agents/{desk.pk}/regression-set/").content.decode()
    assert "3 cases regressed" in panel and "<code>s0</code>" in panel
    assert f"?against={body['previous']['experiment_id']}" in panel
    # version 1's page shows version 1's run, and no run offered (it is not the agent now)
    old = operator_client.get(f"/agents/{desk.pk}/regression-set/?version=1").content
    assert b"This version: v1" in old and b"Run it on" not in old
    assert Experiment.objects.count() == 2
    # the agent's pages load the panel; agents knows evals only by the URL's name
    page = operator_client.get(f"/agents/{desk.pk}/").content.decode()
    assert f'hx-get="/agents/{desk.pk}/regression-set/"' in page
    version_page = operator_client.get(f"/agents/{desk.pk}/versions/2/").content.decode()
    assert f'hx-get="/agents/{desk.pk}/regression-set/?version=2"' in version_page
    assert "<section" not in version_page.split("</title>")[0]
    # and none again
    cleared = send(operator_client, "put", url, {"dataset_id": None})
    assert cleared.json()["regression_set"] is None and not RegressionSet.objects.exists()
    assert send(operator_client, "post", f"{url}/run").status_code == 409


@pytest.mark.parametrize("body,field", [
    ({"dataset_id": "sums"}, "dataset_id"), ({"dataset_id": 99999}, "dataset_id"),
    ({"dataset_id": True}, "dataset_id"), ({"dataset": 1}, "dataset"),
])
def test_bad_input_names_the_field(operator_client, desk, dataset, body, field):
    answer = send(operator_client, "put", f"/api/agents/{desk.pk}/regression-set", body)
    assert answer.status_code == 422 and field in answer.json()["errors"], answer.content
    assert not RegressionSet.objects.exists()
    assert not AuditEvent.objects.filter(action="agent.regression_set").exists()


def test_roles_and_unknown_agents(operator_client, viewer_client, desk, dataset):
    url = f"/api/agents/{desk.pk}/regression-set"
    assert send(viewer_client, "put", url, {"dataset_id": dataset.pk}).status_code == 403
    send(operator_client, "put", url, {"dataset_id": dataset.pk})
    assert viewer_client.get(url).json()["regression_set"]["name"] == "sums"
    assert send(viewer_client, "post", f"{url}/run").status_code == 403
    panel = viewer_client.get(f"/agents/{desk.pk}/regression-set/")
    assert b"Run it on" not in panel.content and b"Change the regression set" not in \
        panel.content
    refused = viewer_client.post(f"/agents/{desk.pk}/regression-set/", {"action": "run"})
    assert refused.status_code == 403 and not Experiment.objects.exists()
    assert operator_client.get("/api/agents/99999/regression-set").status_code == 404
    assert operator_client.get("/agents/99999/regression-set/").status_code == 404
    # the form on the panel
    made = operator_client.post(f"/agents/{desk.pk}/regression-set/",
                                {"action": "choose", "dataset": ""}, follow=True)
    assert b"desk has no regression set now." in made.content
    send(operator_client, "put", url, {"dataset_id": dataset.pk})
    for junk in ("sums", "²", "-1x", "99999"):
        kept = operator_client.post(f"/agents/{desk.pk}/regression-set/",
                                    {"action": "choose", "dataset": junk}, follow=True)
        assert b"Not done:" in kept.content, junk
        assert RegressionSet.objects.get().dataset == dataset
