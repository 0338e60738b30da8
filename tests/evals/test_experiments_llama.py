"""Experiments against the real llama-server: the seed reaches the engine, so a rerun with
the same seed gives the same replies and another seed does not; what each target ran on
is recorded from the engine itself."""

import json

import pytest

from console.models import Backend
from evals import runner

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("live_db")]


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def run(client, dataset_id, target, seed):
    made = post(client, "/api/experiments", {"dataset_id": dataset_id, "targets": [target],
                                             "seed": seed, "concurrency": 1})
    assert made.status_code == 201, made.content
    runner.step("monitor-1")
    body = client.get(f"/api/experiments/{made.json()['id']}").json()
    assert body["state"] == "succeeded", body
    return body


def test_a_rerun_with_the_same_seed_gives_the_same_replies(operator_client, llama_server):
    backend = Backend.objects.create(name="llama", kind="llamacpp", base_url=llama_server.url)
    dataset = post(operator_client, "/api/datasets", {"name": "pump", "cases": [
        {"id": f"q{i}", "messages": f"Describe part {i} of the pump.",
         "checks": [{"kind": "max_tokens", "value": 12}]} for i in range(4)]}).json()
    # a hot temperature: without the seed the sampling would differ from run to run
    target = {"backend_id": backend.pk, "model": llama_server.alias,
              "params": {"temperature": 1.5, "max_tokens": 12}}
    first = run(operator_client, dataset["id"], target, 42)
    again = run(operator_client, dataset["id"], target, 42)
    other = run(operator_client, dataset["id"], target, 7)

    def replies(body):
        return {r["case_id"]: r["text"] for r in body["results"]}

    assert all(replies(first).values()) and len(replies(first)) == 4
    assert replies(again) == replies(first)
    assert replies(other) != replies(first)  # the seed is what made them equal
    assert [r["passed"] for r in first["results"]] == [r["passed"] for r in again["results"]]
    environment = first["targets"][0]["environment"]
    assert environment["engine"] == "llamacpp" and environment["host"] == "127.0.0.1"
    assert environment["model"] == llama_server.alias and "model_error" not in environment
