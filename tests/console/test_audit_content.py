"""The audit log records who did what to which object, not what people wrote: no
message text in targets or diffs (unless the agent logs content), and secret-bearing
URLs only masked."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from agents.models import Agent, Tool
from agents.tools.builtin import SPECS
from console.models import AuditEvent, Backend
from monitoring.models import Channel
from tests.support.scripted_openai import finish, text, tool_whole

pytestmark = pytest.mark.django_db
QUESTION = "my salary is 91234 and my manager is Zed Quill"
HOOK = "https://hooks.slack.example/services/T000/B000/s3cr3tT0kenValueXYZ"


def agent_with_calculator(scripted, log_content=False) -> Agent:
    backend = Backend.objects.create(name="s", kind="openai_compatible", base_url=scripted.url)
    agent = Agent.objects.create(name="helper", backend=backend, model="scripted-1",
                                 log_content=log_content)
    spec = SPECS["calculator"]
    tool, _ = Tool.objects.get_or_create(name="calculator", defaults={
        "kind": "builtin", "description": spec["description"], "parameters": spec["parameters"]})
    agent.tools.add(tool)
    return agent


def everything_a_viewer_can_read(viewer_client) -> str:
    parts = [viewer_client.get("/audit/").content.decode(),
             viewer_client.get("/").content.decode(),
             json.dumps(viewer_client.get("/api/audit").json())]
    for fmt in ("csv", "jsonl"):
        response = viewer_client.get(f"/audit/export.{fmt}")
        if response.status_code == 200:
            parts.append(b"".join(response.streaming_content).decode())
    return "\n".join(parts)


def test_no_message_text_or_tool_arguments_in_the_audit_log(scripted, operator_client,
                                                            viewer_client):
    agent = agent_with_calculator(scripted)
    scripted.add(tool_whole("c1", "calculator", '{"expression": "91234*12"}'), finish())
    scripted.add(text("That is 1094808 a year, Zed Quill notwithstanding."), finish())
    answer = operator_client.post(f"/api/agents/{agent.pk}/chat", {"message": QUESTION},
                                  content_type="application/json")
    assert answer.status_code == 200, answer.content
    events = AuditEvent.objects.filter(action__in=["agent.turn", "tool.called"])
    assert {e.action for e in events} == {"agent.turn", "tool.called"}
    stored = " ".join(json.dumps([e.target_repr, e.before, e.after, e.detail]) for e in events)
    for secret in ("salary", "Zed Quill", "91234", "1094808"):
        assert secret not in stored, secret
    called = events.get(action="tool.called")
    assert called.after["arguments"] == {"names": ["expression"], "chars": 26}
    assert events.get(action="agent.turn").target_repr.startswith("conversation ")
    seen = everything_a_viewer_can_read(viewer_client)
    assert "salary" not in seen and "Zed Quill" not in seen


def test_an_agent_that_logs_content_still_keeps_it_out_of_the_target(scripted,
                                                                     operator_client):
    agent = agent_with_calculator(scripted, log_content=True)
    scripted.add(text("ok"), finish())
    operator_client.post(f"/api/agents/{agent.pk}/chat", {"message": QUESTION},
                         content_type="application/json")
    turn = AuditEvent.objects.get(action="agent.turn")
    assert "salary" not in turn.target_repr and turn.after["message"] == QUESTION


def test_webhook_urls_are_encrypted_and_shown_masked(admin_client, viewer_client):
    created = admin_client.post("/api/channels", {"name": "ops", "kind": "webhook",
                                                  "target": HOOK},
                                content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["target"] == "https://hooks.slack.example/…eXYZ"
    listed = json.dumps(admin_client.get("/api/channels").json())
    page = admin_client.get("/alerts/").content.decode()
    event = AuditEvent.objects.get(action="channel.created")
    for shown in (listed, page, json.dumps(event.after), everything_a_viewer_can_read(
            viewer_client)):
        assert "s3cr3tT0ken" not in shown
    with connection.cursor() as cursor:
        cursor.execute("SELECT target FROM monitoring_channel")
        (raw,) = cursor.fetchone()
    assert "s3cr3t" not in raw and "hooks.slack" not in raw  # a Fernet token at rest
    assert Channel.objects.get().target == HOOK  # the notifier still gets the real URL


@pytest.mark.parametrize("url,shown", [
    ("https://hooks.example.com/T1/B2/abcdefghijkl", "https://hooks.example.com/…ijkl"),
    ("http://10.0.0.5:8080/hook?token=abcdef123456", "http://10.0.0.5:8080/…3456"),
    ("https://example.com", "https://example.com"),
    ("https://example.com/", "https://example.com"),
    ("https://example.com/abc", "https://example.com/…"),
])
def test_mask_url(url, shown):
    from console.redact import mask_url

    assert mask_url(url) == shown
