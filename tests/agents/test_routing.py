"""Router agents pick a specialist (model first, keyword rules when its answer is invalid);
agents escalate when their models fail or the router calls a request complex."""

import asyncio

import pytest

from agents.models import Agent, AgentVersion, Run
from agents.runtime import Candidate, RouterSettings, Specialist, TurnSettings, run_turn
from console.backends import adapter_class
from console.backends.base import Endpoint
from console.models import AuditEvent, Backend
from tests.support.llama_server import free_port
from tests.support.scripted_openai import (
    ScriptedOpenAI,
    completion,
    finish,
    route_choice,
    text,
    usage,
)


def candidate(url, label="scripted", escalation=False):
    return Candidate(adapter_class("openai_compatible")(Endpoint(url)), "scripted-1", 1, label,
                     escalation)


def specialist(agent_id, name, url, keywords=(), description=""):
    return Specialist(agent_id, name, description or f"{name} questions", list(keywords),
                      TurnSettings(candidates=[candidate(url, name)],
                                   system_prompt=f"You are the {name}."))


def router_settings(url, specialists, escalation=None):
    router = RouterSettings(candidate(url, "router"), "Route carefully.", specialists, 5.0,
                            escalation)
    return TurnSettings(candidates=[candidate(url, "router")], router=router)


def turn(settings, message):
    frames = []

    async def emit(frame):
        frames.append(frame)

    return asyncio.run(run_turn(settings, [], message, emit=emit)), frames


@pytest.fixture
def team(scripted):
    return [specialist(11, "coder", scripted.url, ["python", "bug"]),
            specialist(12, "writer", scripted.url, ["poem", "essay"])]


def test_the_router_model_picks_a_specialist_by_a_forced_tool_call(scripted, team):
    scripted.add(route_choice("coder", reason="a programming question"))
    scripted.add(text("Use a list comprehension."), finish(), usage(30, 5))
    state, frames = turn(router_settings(scripted.url, team), "how do I filter a list?")
    routing = scripted.requests[0]
    assert routing.get("stream") in (None, False)
    assert routing["tool_choice"] == {"type": "function",
                                      "function": {"name": "choose_specialist"}}
    assert routing["tools"][0]["function"]["parameters"]["properties"]["specialist"][
        "enum"] == ["coder", "writer"]
    assert scripted.requests[1]["messages"][0] == {"role": "system",
                                                   "content": "You are the coder."}
    route = [f for f in frames if f["type"] == "route"]
    assert route == [{"type": "route", "agent_id": 11, "agent": "coder", "method": "model",
                      "reason": "the router chose coder: a programming question",
                      "escalation": False}]
    assert state.text == "Use a list comprehension." and not state.error
    assert state.route[0]["method"] == "model" and state.route[0]["ms"] >= 0


def test_strict_json_in_the_text_is_accepted_too(scripted, team):
    scripted.add(route_choice("Writer", as_json_text=True))
    scripted.add(text("Roses are red."), finish())
    state, _ = turn(router_settings(scripted.url, team), "something lyrical")
    assert state.route[0]["agent"] == "writer" and state.route[0]["method"] == "model"
    assert scripted.requests[1]["messages"][0]["content"] == "You are the writer."


@pytest.mark.parametrize("answer, why", [
    (route_choice("poet"), "which is not one of coder, writer"),
    (completion("I think the writer should answer"), "is not JSON"),
    (completion(None), "gave no answer"),
    (("status", 500, {"error": "boom"}), "the router model failed: HTTP 500"),
])
def test_an_invalid_router_answer_falls_back_to_keyword_rules(scripted, team, answer, why):
    scripted.add(answer)
    scripted.add(text("Write me an essay? Sure."), finish())
    state, frames = turn(router_settings(scripted.url, team), "I need an ESSAY about tea")
    decision = state.route[0]
    assert decision["agent"] == "writer" and decision["method"] == "keywords"
    assert why in decision["reason"] and "keyword 'essay' matched" in decision["reason"]
    assert [f["agent"] for f in frames if f["type"] == "route"] == ["writer"]
    assert state.text == "Write me an essay? Sure."


def test_no_keyword_match_sends_the_message_to_the_first_specialist(scripted, team):
    scripted.add(route_choice("nobody"))
    scripted.add(text("ok"), finish())
    state, _ = turn(router_settings(scripted.url, team), "hello there")
    assert state.route[0]["agent"] == "coder"
    assert "no keyword matched" in state.route[0]["reason"]


def test_a_complex_request_is_escalated_to_the_router_escalation_target(scripted, team):
    big = ScriptedOpenAI(model="big").start()
    try:
        big.add(text("A careful, long answer."), finish())
        scripted.add(route_choice("coder", "complex", "needs deep reasoning"))
        settings = router_settings(scripted.url, team, candidate(big.url, "cloud/big", True))
        state, frames = turn(settings, "prove this algorithm terminates")
        assert state.text == "A careful, long answer."
        assert big.requests[0]["messages"][0]["content"] == "You are the coder."
        routes = [f for f in frames if f["type"] == "route"]
        assert [(f["agent"], f["escalation"]) for f in routes] == [("coder", False),
                                                                   ("cloud/big", True)]
        assert "labelled the request complex" in routes[1]["reason"]
        assert [d["type"] for d in state.route] == ["route", "escalation"]
        assert len(scripted.requests) == 1  # the specialist's own model was not asked
    finally:
        big.stop()


def test_an_assistant_escalates_when_its_own_model_fails(scripted):
    dead = candidate(f"http://127.0.0.1:{free_port()}/v1", "edge/small")
    scripted.add(text("Escalated answer"), finish())
    settings = TurnSettings(candidates=[dead, candidate(scripted.url, "cloud/big", True)])
    state, frames = turn(settings, "hi")
    assert state.text == "Escalated answer" and not state.error
    route = [f for f in frames if f["type"] == "route"][0]
    assert route["escalation"] is True and route["reason"].startswith("escalation: cannot reach")
    assert state.route[0]["type"] == "escalation"


# -- the API and the audit log ----------------------------------------------------

@pytest.fixture
def backends(db, scripted):
    small = Backend.objects.create(name="edge-small", kind="openai_compatible",
                                   base_url=scripted.url)
    return small


def _create(client, **data):
    return client.post("/api/agents", data=data, content_type="application/json")


@pytest.mark.django_db
def test_router_agents_through_the_api(operator_client, backends, scripted):
    coder = _create(operator_client, name="coder", backend_id=backends.pk, model="scripted-1",
                    system_prompt="You are the coder.").json()
    writer = _create(operator_client, name="writer", backend_id=backends.pk,
                     model="scripted-1").json()
    response = _create(operator_client, name="front-desk", kind="router",
                       backend_id=backends.pk, model="scripted-1",
                       specialist_ids=[coder["id"], writer["id"]],
                       escalation={"backend_id": backends.pk, "model": "bigger"})
    assert response.status_code == 201, response.json()
    router = response.json()
    assert router["kind"] == "router" and router["specialist_ids"] == [coder["id"], writer["id"]]
    assert router["escalation"] == {"backend_id": backends.pk, "model": "bigger"}
    patched = operator_client.patch(f"/api/agents/{router['id']}", data={"specialists": [
        {"specialist_id": writer["id"], "keywords": ["poem"]},
        {"specialist_id": coder["id"], "keywords": ["python", "bug"]}]},
        content_type="application/json").json()
    assert patched["specialist_ids"] == [writer["id"], coder["id"]] and patched["version"] == 2
    assert patched["specialists"][1]["keywords"] == ["python", "bug"]
    snapshot = AgentVersion.objects.get(agent_id=router["id"], version=2).snapshot
    assert snapshot["specialists"][0] == {"specialist_id": writer["id"], "keywords": ["poem"]}

    scripted.add(route_choice("nobody"))
    scripted.add(text("Here is the fix."), finish(), usage(10, 4))
    reply = operator_client.post(f"/api/agents/{router['id']}/chat",
                                 data={"message": "a python bug"},
                                 content_type="application/json").json()
    assert reply["reply"] == "Here is the fix."
    assert reply["route"][0]["agent"] == "coder" and reply["route"][0]["method"] == "keywords"
    run = Run.objects.get()
    assert run.route[0]["agent_id"] == coder["id"]
    routed = AuditEvent.objects.get(action="agent.routed")
    assert routed.after["agent"] == "coder" and "keyword 'python' matched" in routed.after[
        "reason"]


@pytest.mark.django_db
def test_routing_configuration_is_validated(operator_client, backends):
    helper = _create(operator_client, name="helper", backend_id=backends.pk,
                     model="m").json()
    no_team = _create(operator_client, name="r1", kind="router", backend_id=backends.pk,
                      model="m")
    assert no_team.status_code == 422
    assert "at least one specialist" in str(no_team.json())
    not_router = _create(operator_client, name="a1", backend_id=backends.pk, model="m",
                         specialist_ids=[helper["id"]])
    assert "Only router agents" in str(not_router.json())
    router = _create(operator_client, name="r2", kind="router", backend_id=backends.pk,
                     model="m", specialist_ids=[helper["id"]]).json()
    nested = _create(operator_client, name="r3", kind="router", backend_id=backends.pk,
                     model="m", specialist_ids=[router["id"], 999])
    errors = str(nested.json())
    assert "routers route to assistants only" in errors and "unknown specialist_id" in errors
    demote = operator_client.patch(f"/api/agents/{helper['id']}", data={"kind": "router"},
                                   content_type="application/json")
    assert demote.status_code == 422 and "is a specialist of a router" in str(demote.json())
    half = _create(operator_client, name="e1", backend_id=backends.pk, model="m",
                   escalation={"backend_id": backends.pk, "model": ""})
    assert half.status_code == 422 and "escalation" in half.json()["errors"]
    assert Agent.objects.count() == 2
