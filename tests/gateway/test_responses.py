"""/v1/responses through the openai SDK: text and function calls, streamed and not,
continued with previous_response_id or with the whole conversation, on a backend and
on an agent."""

from __future__ import annotations

import openai
import pytest

from console.models import Backend
from gateway.models import Request
from tests.gateway.conftest import make_key, run, sdk
from tests.support.scripted_openai import finish, text, tool_fragments, usage

pytestmark = pytest.mark.usefixtures("live_db")

TOOLS = [{"type": "function", "name": "get_weather", "description": "the weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}, "strict": False}]


@pytest.fixture
def backend(scripted):
    return Backend.objects.create(name="local", kind="openai_compatible", base_url=scripted.url)


def test_a_function_call_round_trip_streamed_with_previous_response_id(operator_user,
                                                                       backend, scripted):
    scripted.add(tool_fragments("call_1", "get_weather", '{"city": "Manila"}'),
                 finish("tool_calls"), usage(12, 6))
    scripted.add(text("It is ", "sunny."), finish(), usage(20, 3))
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        stream = await client.responses.create(
            model="local/scripted-1", instructions="Answer briefly.",
            input="Weather in Manila?", tools=TOOLS, stream=True)
        first = [event async for event in stream]
        done = first[-1].response
        call = next(item for item in done.output if item.type == "function_call")
        stream = await client.responses.create(
            model="local/scripted-1", instructions="Answer briefly.",
            previous_response_id=done.id, tools=TOOLS, stream=True,
            input=[{"type": "function_call_output", "call_id": call.call_id,
                    "output": '{"sky": "sunny"}'}])
        second = [event async for event in stream]
        return first, second

    first, second = run(main())
    kinds = [e.type for e in first]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    call = next(i for i in first[-1].response.output if i.type == "function_call")
    assert (call.call_id, call.name, call.arguments) == (
        "call_1", "get_weather", '{"city": "Manila"}')
    assert first[-1].response.usage.input_tokens == 12
    deltas = [e.delta for e in second if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "It is sunny."
    assert second[-1].response.output_text == "It is sunny."
    assert second[-1].response.usage.output_tokens == 3
    # what went upstream: instructions as the system message, the function tool, and the
    # remembered conversation with the call and its output
    first_sent, second_sent = scripted.requests
    assert first_sent["messages"] == [{"role": "system", "content": "Answer briefly."},
                                      {"role": "user", "content": "Weather in Manila?"}]
    assert first_sent["tools"][0]["function"]["name"] == "get_weather"
    roles = [m["role"] for m in second_sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert second_sent["messages"][2]["tool_calls"][0]["id"] == "call_1"
    assert second_sent["messages"][3] == {"role": "tool", "tool_call_id": "call_1",
                                          "content": '{"sky": "sunny"}'}
    rows = list(Request.objects.order_by("pk"))
    assert [(r.endpoint, r.stream, r.tokens_out) for r in rows] == [
        ("responses", True, 6), ("responses", True, 3)]


def test_a_whole_response_with_the_conversation_in_input(operator_user, backend, scripted):
    scripted.add(("completion", {"role": "assistant", "content": "Four."}))
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        return await client.responses.create(
            model="local/scripted-1", store=False, max_output_tokens=50, input=[
                {"role": "user", "content": [{"type": "input_text", "text": "2+2?"}]},
                {"type": "function_call", "call_id": "c1", "name": "calc",
                 "arguments": '{"e": "2+2"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "4"}])

    response = run(main())
    assert response.output_text == "Four." and response.status == "completed"
    assert response.usage.total_tokens == 25
    sent = scripted.requests[0]
    assert sent["max_tokens"] == 50
    assert sent["messages"][0] == {"role": "user", "content": "2+2?"}
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "calc",
                                                                "arguments": '{"e": "2+2"}'}


def test_an_agent_answers_over_responses(operator_user, agent, scripted):
    scripted.add(text("Hello ", "from the agent."), finish(), usage(9, 4))
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        stream = await client.responses.create(model="agent/helper", input="hi", stream=True)
        return [e async for e in stream]

    events = run(main())
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello from the agent."
    assert events[-1].response.usage.input_tokens == 9
    assert Request.objects.get().agent == agent


def test_unsupported_responses_input_is_a_400_naming_the_field(operator_user, backend):
    raw = make_key(operator_user)

    async def main():
        client = sdk(raw)
        caught = {}
        for name, kwargs in {
            "tools": {"input": "hi", "tools": [{"type": "web_search"}]},
            "input": {"input": [{"type": "item_reference", "id": "x"}]},
            "previous": {"input": "hi", "previous_response_id": "resp_nowhere"},
        }.items():
            try:
                await client.responses.create(model="local/scripted-1", **kwargs)
            except openai.APIStatusError as exc:
                caught[name] = exc
        return caught

    caught = run(main())
    assert isinstance(caught["tools"], openai.BadRequestError)
    assert caught["tools"].body["param"] == "tools[0]"
    assert caught["input"].body["param"] == "input[0].type"
    assert isinstance(caught["previous"], openai.NotFoundError)
    assert caught["previous"].body["param"] == "previous_response_id"
