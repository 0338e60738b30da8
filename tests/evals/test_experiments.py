"""Experiments: a dataset version against targets, run by the monitor through the turn
service. Every check kind on a 20-case dataset, cancel midway and resume, a judge that
answers badly, a target that fails every call, the API and its errors, the stats."""

import json
import threading
import time

import pytest

from agents.models import Agent, Conversation, Run
from console.models import AuditEvent, Backend
from evals import runner, stats
from evals.models import CaseResult, Dataset, Experiment
from tests.support.scripted_openai import finish, text, tool_whole, usage

pytestmark = pytest.mark.usefixtures("live_db")


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def in_background(target, *args):
    def body():
        from django.db import connection

        try:
            target(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def question(body):
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def answers(body, delay=0.0):
    """A model that knows arithmetic, JSON and the weather tool, by the question."""
    asked = question(body)
    items = [("sleep", delay)] if delay else []
    if asked.startswith("You grade"):  # never: the judge's rubric is the system message
        return items + text("?") + finish()
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    if system.startswith("You grade one answer"):
        return items + text('{"score": 4, "reason": "close enough"}') + finish() + usage(30, 9)
    if asked.startswith("add "):
        a, b = (int(x) for x in asked[4:].split("+"))
        return items + text(str(a + b)) + finish() + usage(10, 2)
    if asked.startswith("json "):
        return items + text('```json\n{"name": "' + asked[5:] + '", "stock": 3}\n```') \
            + finish() + usage(10, 12)
    if asked.startswith("weather in "):
        return items + tool_whole("c1", "get_weather",
                                  json.dumps({"city": asked[11:]})) + finish("tool_calls") \
            + usage(20, 8)
    return items + text("I do not know " * 30) + finish() + usage(10, 90)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}}}


def twenty_cases():
    cases = []
    for i in range(8):
        cases.append({"id": f"add-{i}", "messages": f"add {i}+{i * 3}", "expected": str(i * 4),
                      "checks": [{"kind": "exact", "value": str(i * 4)},
                                 {"kind": "regex", "pattern": r"^\d+$"},
                                 {"kind": "max_tokens", "value": 10}]})
    for name in ("bolt", "nut", "gear", "cog"):
        cases.append({"id": f"json-{name}", "messages": f"json {name}", "checks": [
            {"kind": "json_valid"},
            {"kind": "json_schema", "schema": {"type": "object", "required": ["name", "stock"],
                                               "properties": {"stock": {"type": "integer"}}}},
            {"kind": "contains", "value": name.upper(), "ignore_case": True}]})
    for city in ("Manila", "Cebu", "Davao", "Iloilo"):
        cases.append({"id": f"weather-{city}", "messages": f"weather in {city}",
                      "tools": [WEATHER], "checks": [
                          {"kind": "tool_called", "name": "get_weather", "arguments": {
                              "type": "object", "properties": {"city": {"const": city}}}}]})
    for i in range(4):
        cases.append({"id": f"unknown-{i}", "messages": f"what is the colour of {i}?",
                      "checks": [{"kind": "max_latency_ms", "value": 60_000},
                                 {"kind": "max_tokens", "value": 20}]})
    return cases


@pytest.fixture
def box(scripted):
    scripted.responder = answers
    return Backend.objects.create(name="edge-box", kind="openai_compatible",
                                  base_url=scripted.url)


@pytest.fixture
def dataset(operator_client, box):
    made = post(operator_client, "/api/datasets", {"name": "desk", "cases": twenty_cases()})
    assert made.status_code == 201, made.content
    return Dataset.objects.get(pk=made.json()["id"])


def start(client, dataset, targets, **more):
    response = post(client, "/api/experiments", {"dataset_id": dataset.pk,
                                                 "targets": targets, **more})
    assert response.status_code == 201, response.content
    return response.json()


def test_a_20_case_dataset_with_every_check_kind_runs_to_the_end(operator_client, dataset,
                                                                 box, scripted):
    body = start(operator_client, dataset, [
        {"backend_id": box.pk, "model": "scripted-1", "params": {"temperature": 0}},
        {"backend_id": box.pk, "model": "scripted-1", "params": {"temperature": 1,
                                                                 "seed": 7}}],
        concurrency=3, seed=42)
    assert body["state"] == "queued" and body["total"] == 40 and body["done"] == 0
    assert runner.step("monitor-1") == {"expired": 0, "ran": 1}
    got = operator_client.get(f"/api/experiments/{body['id']}").json()
    assert got["state"] == "succeeded" and got["done"] == 40, got
    by_case = {(r["target"], r["case_id"]): r for r in got["results"]}
    assert len(by_case) == 40
    # what passes and fails is decided by each kind on the real reply
    for target in (0, 1):
        assert all(by_case[(target, f"add-{i}")]["passed"] for i in range(8))
        assert all(by_case[(target, f"json-{n}")]["passed"] for n in ("bolt", "nut", "gear",
                                                                      "cog"))
        assert all(by_case[(target, f"weather-{c}")]["passed"]
                   for c in ("Manila", "Cebu", "Davao", "Iloilo"))
        unknown = by_case[(target, "unknown-0")]
        assert not unknown["passed"]
        assert [c["kind"] for c in unknown["checks"] if not c["passed"]] == ["max_tokens"]
        assert "90 tokens (at most 20)" in unknown["checks"][1]["detail"]
    weather = by_case[(0, "weather-Cebu")]
    assert weather["tool_calls"] == [{"name": "get_weather", "arguments": '{"city": "Cebu"}'}]
    # the summary: 16 of 20 per target, an interval around it, latency percentiles
    summary = {s["label"]: s for s in got["summary"]}
    assert len(summary) == 2
    for row in summary.values():
        assert row["runs"] == 20 and row["passed"] == 16 and row["errors"] == 0
        low, high = row["pass_rate_ci95"]
        assert low < 0.8 < high and row["pass_rate"] == 0.8
        assert row["total_ms_p50"] is not None and row["ttft_ms_p95"] >= row["ttft_ms_p50"]
    # each target's parameters and the experiment's seed reached the engine
    sent = [r for r in scripted.requests if question(r).startswith("add 1+")]
    assert sorted((r.get("temperature"), r.get("seed")) for r in sent) == [(0, 42), (1, 7)]
    # through the turn service: runs, conversations (hidden from the playground), audit
    assert Run.objects.count() == 40
    assert Conversation.objects.filter(origin="experiment").count() == 40
    assert operator_client.get("/api/conversations").json() == []
    # one quick agent for the two parameter sets, each target recorded what it ran on
    assert Agent.objects.filter(quick=True).count() == 1
    environment = got["targets"][0]["environment"]
    assert environment["engine"] == "openai_compatible" and environment["host"] == "127.0.0.1"
    assert environment["model"] == "scripted-1" and environment["backend"] == "edge-box"
    assert got["targets"][1]["label"] != got["targets"][0]["label"]
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "experiment.started" in actions and "experiment.finished" in actions


def test_cancel_midway_then_resume_runs_each_case_once(operator_client, dataset, box,
                                                       scripted):
    scripted.responder = lambda body: answers(body, delay=0.15)
    body = start(operator_client, dataset, [{"backend_id": box.pk, "model": "scripted-1"}],
                 concurrency=2)
    pk = body["id"]
    monitor = in_background(runner.step, "monitor-1")
    deadline = time.monotonic() + 30
    while CaseResult.objects.filter(experiment_id=pk).count() < 4:
        assert time.monotonic() < deadline, "no results came"
        time.sleep(0.05)
    cancelled = post(operator_client, f"/api/experiments/{pk}/cancel", {})
    assert cancelled.status_code == 200, cancelled.content
    monitor.join(30)
    experiment = Experiment.objects.get(pk=pk)
    assert experiment.state == "cancelled"
    partial = CaseResult.objects.filter(experiment_id=pk).count()
    assert 4 <= partial < 20 and experiment.done == partial
    # resumed: only the cases without a result run, each once
    asked_before = len(scripted.requests)
    resumed = post(operator_client, f"/api/experiments/{pk}/resume", {})
    assert resumed.status_code == 200 and resumed.json()["state"] == "queued"
    runner.step("monitor-2")
    experiment.refresh_from_db()
    assert experiment.state == "succeeded" and experiment.done == 20
    ids = list(CaseResult.objects.filter(experiment_id=pk).values_list("case_id", flat=True))
    assert sorted(ids) == sorted(c["id"] for c in dataset.versions.get().cases)
    assert len(scripted.requests) - asked_before == 20 - partial
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("experiment.cancelled") == 1
    assert actions.count("experiment.resumed") == 1


def test_a_target_that_fails_every_call_does_not_stop_the_others(operator_client, dataset,
                                                                  box):
    dead = Backend.objects.create(name="dead-box", kind="openai_compatible",
                                  base_url="http://127.0.0.1:9/v1")
    body = start(operator_client, dataset, [
        {"backend_id": box.pk, "model": "scripted-1"},
        {"backend_id": dead.pk, "model": "gone", "label": "the dead one"}], concurrency=4)
    runner.step("monitor-1")
    got = operator_client.get(f"/api/experiments/{body['id']}").json()
    assert got["state"] == "succeeded" and got["done"] == 40
    summary = {s["label"]: s for s in got["summary"]}
    assert summary["the dead one"]["all_failed"] is True
    assert summary["the dead one"]["errors"] == 20 and summary["the dead one"]["passed"] == 0
    assert summary["the dead one"]["first_error"]
    assert summary["scripted-1 on edge-box"]["passed"] == 16
    assert got["targets"][1]["environment"]["model_error"]


@pytest.mark.parametrize("reply,error", [
    ("I think it deserves a four.", "did not answer with a JSON object"),
    ('{"score": "four"}', "no numeric score"),
    ('{"score": 11, "reason": "great"}', "outside 1–5"),
    ('{"grade": 4}', "no numeric score"),
    ("", "did not answer"),
])
def test_a_judge_with_a_malformed_score_is_a_judge_error_not_a_pass(operator_client, box,
                                                                    scripted, reply, error):
    def replies(body):
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        if system.startswith("You grade one answer"):
            return text(reply) + finish() if reply else [("status", 500, {"error": "boom"})]
        return answers(body)

    scripted.responder = replies
    judge = post(operator_client, "/api/agents/quick", {"backend_id": box.pk,
                                                        "model": "scripted-1"}).json()
    made = post(operator_client, "/api/datasets", {"name": "judged", "cases": [
        {"id": "a", "messages": "add 2+2"}],
        "checks": [{"kind": "judge", "agent": judge["id"], "rubric": "Is the sum right?",
                    "pass_at": 3}]}).json()
    body = start(operator_client, Dataset.objects.get(pk=made["id"]),
                 [{"agent_id": judge["id"]}])
    runner.step("monitor-1")
    result = operator_client.get(f"/api/experiments/{body['id']}").json()["results"][0]
    assert result["passed"] is False
    assert result["judge"]["score"] is None and error in result["judge"]["error"]
    assert result["checks"] == [{"kind": "judge", "passed": False,
                                 "detail": result["judge"]["error"]}]
    assert result["judge"]["prompt"][0]["content"].startswith("You grade one answer")
    assert "Is the sum right?" in result["judge"]["prompt"][0]["content"]


def test_a_judge_score_is_kept_with_its_prompt_and_reply(operator_client, box, scripted):
    scripted.responder = answers
    judge = post(operator_client, "/api/agents/quick", {"backend_id": box.pk,
                                                        "model": "scripted-1"}).json()
    made = post(operator_client, "/api/datasets", {"name": "judged", "cases": [
        {"id": "a", "messages": "add 2+2", "expected": "4"}],
        "checks": [{"kind": "judge", "agent": judge["id"], "rubric": "Is the sum right?",
                    "min": 1, "max": 5, "pass_at": 4}]}).json()
    body = start(operator_client, Dataset.objects.get(pk=made["id"]),
                 [{"agent_id": judge["id"]}])
    runner.step("monitor-1")
    got = operator_client.get(f"/api/experiments/{body['id']}").json()
    result = got["results"][0]
    assert result["passed"] is True and result["judge"]["score"] == 4
    assert result["judge"]["reason"] == "close enough"
    assert result["judge"]["reply"] == '{"score": 4, "reason": "close enough"}'
    assert "Expected answer (may be empty):\n4" in result["judge"]["prompt"][1]["content"]
    assert got["summary"][0]["judge_mean"] == 4


@pytest.mark.parametrize("payload,field", [
    ({}, "dataset_id"),
    ({"dataset_id": "DATASET"}, "targets"),
    ({"dataset_id": "DATASET", "targets": []}, "targets"),
    ({"dataset_id": 99999, "targets": [{"agent_id": 1}]}, "dataset_id"),
    ({"dataset_id": "DATASET", "version": 9, "targets": "BOX"}, "version"),
    ({"dataset_id": "DATASET", "targets": [{"agent_id": 99999}]}, "targets[0].agent_id"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": 99999, "model": "m"}]},
     "targets[0].backend_id"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID"}]}, "targets[0].model"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID", "model": "m",
                                            "params": {"temperature": 9}}]},
     "targets[0].params.temperature"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID", "model": "m",
                                            "params": {"seed": -1}}]},
     "targets[0].params.seed"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID", "model": "m",
                                            "params": {"top_k": 3}}]},
     "targets[0].params.top_k"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID", "model": "m",
                                            "params": {"tool_choice": "always"}}]},
     "targets[0].params.tool_choice"),
    ({"dataset_id": "DATASET", "targets": [{"backend_id": "BOXID", "model": "m",
                                            "colour": 1}]}, "targets[0].colour"),
    ({"dataset_id": "DATASET", "targets": "BOX", "concurrency": 0}, "concurrency"),
    ({"dataset_id": "DATASET", "targets": "BOX", "concurrency": 99}, "concurrency"),
    ({"dataset_id": "DATASET", "targets": "BOX", "concurrency": "2"}, "concurrency"),
    ({"dataset_id": "DATASET", "targets": "BOX", "seed": 1.5}, "seed"),
    ({"dataset_id": "DATASET", "targets": "BOX", "name": ["x"]}, "name"),
    ({"dataset_id": "DATASET", "targets": "BOX", "colour": "red"}, "colour"),
    ({"dataset_id": "DATASET", "targets": ["BOX"] * 9}, "targets"),
])
def test_bad_input_names_the_field_and_starts_nothing(operator_client, dataset, box,
                                                      payload, field):
    target = {"backend_id": box.pk, "model": "scripted-1"}

    def fill(value):
        if value == "DATASET":
            return dataset.pk
        if value == "BOXID":
            return box.pk
        if value == "BOX":
            return [target]
        if isinstance(value, list):
            return [target if v == "BOX" else fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    response = post(operator_client, "/api/experiments", fill(payload))
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"], response.json()
    assert not Experiment.objects.exists()


def test_roles_and_who_may_cancel(viewer_client, operator_client, admin_client, dataset, box,
                                  django_user_model):
    target = [{"backend_id": box.pk, "model": "scripted-1"}]
    refused = post(viewer_client, "/api/experiments", {"dataset_id": dataset.pk,
                                                       "targets": target})
    assert refused.status_code == 403
    body = start(operator_client, dataset, target)
    assert viewer_client.get(f"/api/experiments/{body['id']}").status_code == 200
    assert post(viewer_client, f"/api/experiments/{body['id']}/cancel", {}).status_code == 403
    # the admin may cancel anyone's; a queued experiment stops at once, and again is a 409
    cancelled = post(admin_client, f"/api/experiments/{body['id']}/cancel", {})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = post(admin_client, f"/api/experiments/{body['id']}/cancel", {})
    assert again.status_code == 409 and "nothing to cancel" in again.json()["detail"]
    assert runner.step("monitor-1") == {"expired": 0, "ran": 0}
    deleted = operator_client.delete(f"/api/experiments/{body['id']}")
    assert deleted.status_code == 204 and not Experiment.objects.exists()


def test_a_monitor_that_stops_puts_its_experiment_back(operator_client, dataset, box, scripted):
    scripted.responder = lambda body: answers(body, delay=0.2)
    body = start(operator_client, dataset, [{"backend_id": box.pk, "model": "scripted-1"}])
    stopping = threading.Event()

    def run_then_stop():
        import asyncio

        (pk,) = runner.claim("monitor-1")

        async def go():
            task = asyncio.create_task(runner.run(pk, "monitor-1", stopping))
            while not await asyncio.to_thread(
                    CaseResult.objects.filter(experiment_id=pk).count) >= 2:
                await asyncio.sleep(0.05)
            stopping.set()
            await task

        asyncio.run(go())

    in_background(run_then_stop).join(30)
    experiment = Experiment.objects.get(pk=body["id"])
    assert experiment.state == "queued" and experiment.owner is None
    assert "monitor running it was stopped" in experiment.detail
    runner.step("monitor-2")
    experiment.refresh_from_db()
    assert experiment.state == "succeeded" and experiment.done == 20
    assert CaseResult.objects.filter(experiment=experiment).count() == 20


def test_the_wilson_interval_and_percentiles():
    assert stats.wilson(0, 0) == (0.0, 0.0)
    low, high = stats.wilson(0, 10)
    assert low == 0.0 and 0.27 < high < 0.31  # no passes still leaves room above 0
    low, high = stats.wilson(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73
    low, high = stats.wilson(16, 20)
    assert round(low, 3) == 0.584 and round(high, 3) == 0.919
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert stats.percentile([10.0, 20.0], 0.95) == pytest.approx(19.5)


def test_a_tool_that_needs_approval_is_refused_not_waited_for(operator_client, box,
                                                             scripted):
    from agents.models import Approval, Tool
    from agents.tools.builtin import SPECS

    spec = SPECS["calculator"]  # live_db's flush emptied the seeded tools
    tool, _ = Tool.objects.get_or_create(name="calculator", defaults={
        "kind": "builtin", "description": spec["description"],
        "parameters": spec["parameters"]})
    Tool.objects.filter(pk=tool.pk).update(requires_approval=True)
    agent = Agent.objects.create(name="counter", backend=box, model="scripted-1")
    agent.tools.add(tool)
    scripted.add(tool_whole("c1", "calculator", '{"expression": "2+2"}'), finish("tool_calls"))
    scripted.add(text("I could not count"), finish())
    made = post(operator_client, "/api/datasets", {"name": "sums", "cases": [
        {"id": "a", "messages": "what is 2+2?"}]}).json()
    body = start(operator_client, Dataset.objects.get(pk=made["id"]), [{"agent_id": agent.pk}])
    began = time.monotonic()
    runner.step("monitor-1")
    assert time.monotonic() - began < 20  # never the approval's minutes-long wait
    result = operator_client.get(f"/api/experiments/{body['id']}").json()["results"][0]
    assert result["text"] == "I could not count"
    assert not Approval.objects.exists()
    tool_message = json.loads(scripted.requests[1]["messages"][-1]["content"]) \
        if scripted.requests[1]["messages"][-1]["content"].startswith("{") else \
        scripted.requests[1]["messages"][-1]["content"]
    assert "no one approves tools" in str(tool_message)


def test_the_monitors_runner_thread_picks_up_a_queued_experiment(operator_client, dataset,
                                                                 box):
    """As `manage.py monitor` runs them: its ExperimentRunner thread claims the queued
    experiment within a second and runs it to the end, without a step being called."""
    thread = runner.ExperimentRunner("monitor-1").start()
    try:
        body = start(operator_client, dataset, [{"backend_id": box.pk, "model": "scripted-1"}])
        deadline = time.monotonic() + 60
        while Experiment.objects.get(pk=body["id"]).state != "succeeded":
            assert time.monotonic() < deadline, Experiment.objects.get(pk=body["id"]).state
            time.sleep(0.1)
    finally:
        thread.stop()
    assert CaseResult.objects.filter(experiment_id=body["id"]).count() == 20
    assert not thread._thread.is_alive()
