"""Tanglaw's own turns are traces: a turn whose first backend is down, whose fallback
is down too, that escalates and calls a tool an operator approves, is one trace with
every step (invoke_agent, one chat span per attempt, execute_tool with its approval
wait), linked from its run, its conversation and its audit event; the gateway joins a
caller's traceparent and sends one on to the backend."""

from __future__ import annotations

import asyncio

import pytest
from django.test import AsyncClient, Client

from agents.models import AgentFallback, Run
from console.models import AuditEvent, Backend
from tests.agents.test_consumer import agent  # noqa: F401 - a fixture
from tests.agents.test_turn_session import approval_script, waiting_approval
from tests.support.llama_server import free_port
from traces.models import Span, Trace

pytestmark = pytest.mark.usefixtures("live_db")


def dead_backend(name: str) -> Backend:
    return Backend.objects.create(name=name, kind="openai_compatible",
                                  base_url=f"http://127.0.0.1:{free_port()}/v1")


def chat_with_approval(user, agent_id: int) -> dict:
    result: dict = {}
    approver = Client()
    approver.force_login(user)

    async def main():
        async def chat():
            client = AsyncClient()
            await client.aforce_login(user)
            response = await client.post(f"/api/agents/{agent_id}/chat", {"message": "2+2?"},
                                         content_type="application/json")
            result["status"], result["body"] = response.status_code, response.json()

        task = asyncio.create_task(chat())
        pending = await asyncio.to_thread(waiting_approval, approver)
        await asyncio.sleep(0.05)  # the wait is a step of its own, with a length
        await asyncio.to_thread(approver.post, f"/api/approvals/{pending['id']}",
                                {"decision": "approve"}, content_type="application/json")
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    return result


def test_a_turn_with_fallback_escalation_and_an_approved_tool_is_one_trace(
        operator_user, agent, scripted):  # noqa: F811
    scripted_backend = agent.backend
    agent.backend = dead_backend("edge-primary")
    agent.escalation_backend, agent.escalation_model = scripted_backend, "scripted-1"
    agent.save()
    AgentFallback.objects.create(agent=agent, position=0, backend=dead_backend("edge-spare"),
                                 model="small")
    approval_script(scripted)

    result = chat_with_approval(operator_user, agent.pk)
    assert result["status"] == 200, result["body"]
    assert result["body"]["reply"] == "it is 4"

    run = Run.objects.get()
    trace = Trace.objects.get(trace_id=run.trace_id)
    assert trace.conversation_id == run.conversation_id and trace.agent == "helper"
    assert trace.agent_id == agent.pk and not trace.external
    spans = {s.span_id: s for s in Span.objects.filter(trace_id=trace.trace_id)}
    by_start = sorted(spans.values(), key=lambda s: s.start_ns)
    names = [s.name for s in by_start]
    assert names == ["invoke_agent helper", "chat scripted-1", "chat small",
                     "chat scripted-1", "execute_tool calculator",
                     "await_approval calculator", "chat scripted-1"]
    root = by_start[0]
    assert root.parent_id == "" and root.operation == "invoke_agent"
    assert all(s.parent_id == root.span_id for s in by_start[1:5] + by_start[6:])
    first, spare, escalated = by_start[1], by_start[2], by_start[3]
    assert first.status == "error" and "cannot reach" in first.status_message
    assert first.attributes["error.type"] == "backend_error"
    assert first.attributes["server.address"] == "127.0.0.1"  # the host, not the URL
    assert isinstance(first.attributes["server.port"], int)
    assert spare.status == "error" and spare.attributes["tanglaw.fallback"] is True
    assert escalated.status == "unset" and escalated.attributes["tanglaw.escalation"] is True
    assert escalated.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert "calculator" in escalated.attributes["gen_ai.tool.definitions"]
    tool, wait = by_start[4], by_start[5]
    assert tool.attributes["gen_ai.tool.name"] == "calculator"
    assert wait.parent_id == tool.span_id
    assert wait.attributes["tanglaw.approval.approved"] is True
    assert wait.attributes["tanglaw.approval.by"] == "oscar"
    assert wait.duration_ms >= 40
    # the agent does not log content: no arguments, results or messages were kept
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    assert not any("gen_ai.input.messages" in s.attributes for s in by_start)
    assert trace.span_count == 7 and trace.error_count == 2 and trace.status == "error"
    # the backend got the chat span's traceparent
    sent = scripted.headers[0].get("traceparent", "")
    assert sent == f"00-{trace.trace_id}-{escalated.span_id}-01"
    event = AuditEvent.objects.get(action="agent.turn")
    assert event.after["trace_id"] == trace.trace_id


def test_content_is_recorded_when_the_agent_logs_content(operator_user, agent,  # noqa: F811
                                                         scripted):
    agent.log_content = True
    agent.save()
    approval_script(scripted)
    chat_with_approval(operator_user, agent.pk)
    tool = Span.objects.get(operation="execute_tool")
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"expression": "2+2"}'
    assert tool.attributes["gen_ai.tool.call.result"] == '{"expression": "2+2", "result": 4}'
    chat = Span.objects.filter(operation="chat").order_by("start_ns").last()
    assert "it is 4" in chat.attributes["gen_ai.output.messages"]
    assert "2+2?" in chat.attributes["gen_ai.input.messages"]


def test_a_gateway_turn_joins_the_callers_trace(operator_user, agent, scripted):  # noqa: F811
    from tests.gateway.conftest import make_key, run, sdk
    from tests.support.scripted_openai import completion, finish, text, usage

    scripted.add(completion("hello"))  # the pass-through asks for a whole answer
    scripted.add(text("hi again"), finish(), usage(3, 2))
    key = make_key(operator_user)
    caller_trace, caller_span = "ab" * 16, "cd" * 8
    header = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}

    async def both():
        client = sdk(key)
        through = await client.chat.completions.with_raw_response.create(
            model="s/scripted-1", messages=[{"role": "user", "content": "hi"}],
            extra_headers=header)
        agent_run = await client.chat.completions.with_raw_response.create(
            model="agent/helper", messages=[{"role": "user", "content": "hi"}],
            extra_headers=header)
        return through, agent_run

    through, agent_run = run(both())
    assert through.headers["x-tanglaw-trace-id"] == caller_trace
    assert agent_run.headers["x-tanglaw-trace-id"] == caller_trace
    trace = Trace.objects.get(trace_id=caller_trace)
    spans = list(Span.objects.filter(trace_id=caller_trace).order_by("start_ns"))
    servers = [s for s in spans if s.kind == "server"]
    assert len(servers) == 2 and all(s.parent_id == caller_span for s in servers)
    assert not trace.has_root  # the caller's own span is its root: it was not sent here
    # each model call once: not again on the request's own span
    assert (trace.tokens_in, trace.tokens_out) == (20 + 3, 5 + 2)
    pass_through = [s for s in spans if s.parent_id == servers[0].span_id]
    assert [s.name for s in pass_through] == ["chat scripted-1"]
    assert pass_through[0].kind == "client"
    assert pass_through[0].attributes["gen_ai.usage.output_tokens"] == 5
    invoke = [s for s in spans if s.operation == "invoke_agent"]
    assert invoke and invoke[0].parent_id == servers[1].span_id
    # the backend saw traceparents of this trace, each naming the span that called it
    sent = [h.get("traceparent", "") for h in scripted.headers]
    assert sent[0] == f"00-{caller_trace}-{pass_through[0].span_id}-01"
    assert sent[1].startswith(f"00-{caller_trace}-")
    from gateway.models import Request

    assert set(Request.objects.values_list("trace_id", flat=True)) == {caller_trace}


def test_an_invalid_traceparent_starts_a_new_trace(operator_user, agent, scripted):  # noqa: F811
    from tests.gateway.conftest import make_key, run, sdk
    from tests.support.scripted_openai import finish, text

    scripted.add(text("hello"), finish())
    key = make_key(operator_user)
    answer = run(sdk(key).chat.completions.with_raw_response.create(
        model="s/scripted-1", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}))
    trace_id = answer.headers["x-tanglaw-trace-id"]
    assert len(trace_id) == 32 and trace_id != "0" * 32
    assert Trace.objects.get(trace_id=trace_id).has_root
