"""*Add to dataset*: a conversation turn becomes a case of the dataset's next version,
remembering the conversation, message, run and trace it came from."""

import json

import pytest
from django.utils import timezone

from agents.models import Agent, Conversation, Message, Run
from console.models import AuditEvent, Backend
from evals.models import Dataset

pytestmark = pytest.mark.django_db


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def chat(operator_user):
    backend = Backend.objects.create(name="b", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    agent = Agent.objects.create(name="desk", backend=backend, model="m")
    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="t")
    first = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(conversation=conversation, role="assistant", content="Hello!")
    second = Message.objects.create(conversation=conversation, role="user",
                                    content="What is 2+2?")
    run = Run.objects.create(conversation=conversation, agent=agent, model="m",
                             started_at=timezone.now(),
                             trace_id="ab" * 16)
    Message.objects.create(conversation=conversation, role="assistant", content="4", run=run)
    return conversation, first, second, run


@pytest.fixture
def dataset(operator_client):
    made = post(operator_client, "/api/datasets", {"name": "desk", "cases": [
        {"id": "one", "messages": "x"}]})
    return Dataset.objects.get(pk=made.json()["id"])


def test_the_last_turn_becomes_a_case_with_its_source(operator_client, chat, dataset):
    conversation, _, second, run = chat
    added = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                 {"conversation_id": conversation.pk,
                  "checks": [{"kind": "contains", "value": "4"}]})
    assert added.status_code == 201, added.content
    body = added.json()
    assert body["version"] == 2 and len(body["cases"]) == 2
    case = body["cases"][1]
    assert case["id"] == f"turn-{second.pk}" and case["expected"] == "4"
    assert case["messages"] == [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "What is 2+2?"}]
    assert case["source"] == {"conversation_id": conversation.pk, "message_id": second.pk,
                              "run_id": run.pk, "trace_id": "ab" * 16}
    assert case["checks"] == [{"kind": "contains", "value": "4"}]
    # the same turn again gets an id of its own; version 2 stays as it was
    again = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                 {"conversation_id": conversation.pk, "expected": False})
    assert again.json()["cases"][2]["id"] == f"turn-{second.pk}-2"
    assert "expected" not in again.json()["cases"][2]
    assert AuditEvent.objects.filter(action="dataset.updated").count() == 2


def test_an_earlier_question_by_its_message(operator_client, chat, dataset):
    conversation, first, _, _ = chat
    added = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                 {"conversation_id": conversation.pk, "message_id": first.pk})
    case = added.json()["cases"][1]
    assert case["messages"] == [{"role": "user", "content": "Hi"}]
    assert case["expected"] == "Hello!"


@pytest.mark.parametrize("payload,field", [
    ({}, "conversation_id"), ({"conversation_id": "1"}, "conversation_id"),
    ({"conversation_id": 99999}, "conversation_id"),
    ({"conversation_id": "CONV", "message_id": 99999}, "message_id"),
    ({"conversation_id": "CONV", "expected": "yes"}, "expected"),
    ({"conversation_id": "CONV", "checks": [{"kind": "nope"}]}, "cases[1].checks[0].kind"),
])
def test_bad_input_names_the_field_and_adds_nothing(operator_client, chat, dataset, payload,
                                                    field):
    payload = {k: chat[0].pk if v == "CONV" else v for k, v in payload.items()}
    response = post(operator_client, f"/api/datasets/{dataset.pk}/cases", payload)
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    dataset.refresh_from_db()
    assert dataset.version == 1


def test_someone_elses_conversation_is_not_found(viewer_user, operator_client, dataset,
                                                 chat):
    conversation = chat[0]
    conversation.owner = viewer_user
    conversation.save()
    response = post(operator_client, f"/api/datasets/{dataset.pk}/cases",
                    {"conversation_id": conversation.pk})
    assert response.status_code == 422 and "conversation_id" in response.json()["errors"]


def test_add_to_dataset_from_the_playground(operator_client, chat, dataset):
    conversation = chat[0]
    page = operator_client.get(f"/playground/?c={conversation.pk}")
    assert b"Add to dataset" in page.content
    form = operator_client.get(f"/datasets/add-turn/?c={conversation.pk}")
    assert b"Add the last turn" in form.content and b"desk (v1)" in form.content
    done = operator_client.post("/datasets/add-turn/", {
        "conversation": conversation.pk, "dataset": dataset.pk, "expected": "1"},
        follow=True)
    assert b"Added the last turn to desk (version 2, 2 cases)" in done.content
    refused = operator_client.post("/datasets/add-turn/", {"conversation": conversation.pk},
                                   follow=True)
    assert b"choose a dataset" in refused.content
