"""Experiment pages: start one from the form (errors named, nothing lost), watch its
progress, read the verdict and the cases failures first, export, cancel and resume."""

import csv
import io
import json

import pytest

from console.models import Backend
from evals import runner
from evals.models import Dataset, Experiment
from tests.evals.test_experiments import answers, twenty_cases

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def box(scripted):
    scripted.responder = answers
    return Backend.objects.create(name="edge-box", kind="openai_compatible",
                                  base_url=scripted.url)


@pytest.fixture
def dataset(operator_client, box):
    made = operator_client.post("/api/datasets", data=json.dumps(
        {"name": "desk", "cases": twenty_cases()}), content_type="application/json")
    return Dataset.objects.get(pk=made.json()["id"])


def test_start_watch_and_read_an_experiment(operator_client, dataset, box):
    empty = operator_client.get("/experiments/")
    assert b"No experiments yet" in empty.content and b"Start experiment" in empty.content
    bad = operator_client.post("/experiments/", {
        "dataset": dataset.pk, "target-0": f"backend:{box.pk}", "model-0": "",
        "target-1": f"backend:{box.pk}", "model-1": "scripted-1", "temperature-1": "hot"})
    assert bad.status_code == 200 and not Experiment.objects.exists()
    assert b"targets[0].model" in bad.content and b"targets[1].params.temperature" in bad.content
    started = operator_client.post("/experiments/", {
        "dataset": dataset.pk, "target-0": f"backend:{box.pk}", "model-0": "scripted-1",
        "temperature-0": "0", "target-1": f"backend:{box.pk}", "model-1": "scripted-1",
        "temperature-1": "1.2", "concurrency": "2", "seed": "3", "name": "cold or hot"})
    experiment = Experiment.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/experiments/{experiment.pk}/"
    queued = operator_client.get(started["Location"])
    assert b"Queued" in queued.content and b'hx-trigger="every 1s"' in queued.content
    assert b"0 of 40 runs" in queued.content
    runner.step("monitor-1")
    page = operator_client.get(started["Location"]).content.decode()
    assert "Succeeded" in page and "40 of 40 runs" in page and 'hx-trigger' not in page
    # the verdict: the second target against the first
    assert "scripted-1 on edge-box (temperature 1.2) is as good as scripted-1 on edge-box " \
        "(temperature 0.0)" in page
    assert "within the 95 % intervals (80% against 80%; 20 cases)" in page
    # failures first: the unknown questions fail max_tokens
    assert page.index("unknown-0") < page.index("add-0")
    assert "90 tokens (at most 20)" in page
    progress = operator_client.get(started["Location"] + "?part=progress")
    assert b"40 of 40" in progress.content and b"<html" not in progress.content
    # exports
    exported = operator_client.get(f"/experiments/{experiment.pk}/export.csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert len(rows) == 40 and {r["passed"] for r in rows} == {"yes", "no"}
    as_json = json.loads(operator_client.get(f"/experiments/{experiment.pk}/export.json").content)
    assert as_json["done"] == 40 and len(as_json["results"]) == 40
    assert operator_client.get(f"/experiments/{experiment.pk}/export.xml").status_code == 404


def test_cancel_resume_and_compare_with_an_earlier_run(operator_client, viewer_client,
                                                       dataset, box, scripted):
    target = {"dataset": dataset.pk, "target-0": f"backend:{box.pk}", "model-0": "scripted-1"}
    operator_client.post("/experiments/", target)
    first = Experiment.objects.get()
    runner.step("monitor-1")
    # the second run: the json cases now fail
    scripted.responder = lambda body: (answers({"messages": [{"role": "user",
                                                              "content": "nothing"}]})
                                       if "json" in json.dumps(body) else answers(body))
    operator_client.post("/experiments/", target)
    second = Experiment.objects.exclude(pk=first.pk).get()
    viewer_page = viewer_client.get(f"/experiments/{second.pk}/")
    assert b"Cancel</button>" not in viewer_page.content
    assert viewer_client.post(f"/experiments/{second.pk}/cancel/").status_code == 403
    cancelled = operator_client.post(f"/experiments/{second.pk}/cancel/", follow=True)
    assert b"Cancelling" in cancelled.content and b"Resume" in cancelled.content
    operator_client.post(f"/experiments/{second.pk}/resume/")
    second.refresh_from_db()
    assert second.state == "queued"
    runner.step("monitor-1")
    diff = operator_client.get(f"/experiments/{second.pk}/?against={first.pk}").content.decode()
    assert "4 regressed · 0 fixed" in diff and "json-bolt</code> passed before" in diff
    api = operator_client.get(f"/api/experiments/{second.pk}/regressions?against={first.pk}")
    assert [c["case_id"] for c in api.json()["targets"][0]["regressed"]] == [
        "json-bolt", "json-nut", "json-gear", "json-cog"]


def test_a_viewer_reads_but_does_not_start(viewer_client, dataset):
    page = viewer_client.get("/experiments/")
    assert page.status_code == 200 and b"Start experiment" not in page.content
    assert viewer_client.post("/experiments/", {"dataset": dataset.pk}).status_code == 403
    assert not Experiment.objects.exists()
