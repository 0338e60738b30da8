"""The runtime against a scripted OpenAI-compatible server: tools, faults, fallback, metrics."""

import asyncio
import json
import time

import pytest

from agents.runtime import Candidate, ToolSpec, TurnSettings, TurnState, run_turn
from agents.tools.builtin import SPECS
from console.backends import adapter_class
from console.backends.base import Endpoint
from tests.support.llama_server import free_port
from tests.support.scripted_openai import (
    ScriptedOpenAI,
    finish,
    text,
    tool_fragments,
    tool_whole,
    usage,
)


def candidate(url, label="scripted", model="scripted-1"):
    return Candidate(adapter_class("openai_compatible")(Endpoint(url)), model, 1, label)


def builtin(name, **overrides):
    spec = SPECS[name]
    return ToolSpec(name, "builtin", spec["description"], spec["parameters"], **overrides)


def settings_for(*candidates, tools=(), **overrides):
    return TurnSettings(candidates=list(candidates), system_prompt="You are terse.",
                        tools={t.name: t for t in tools}, **overrides)


def turn(settings, text_in="hi", **kwargs):
    frames = []

    async def emit(frame):
        frames.append(frame)

    state = asyncio.run(run_turn(settings, [], text_in, emit=emit, **kwargs))
    return state, frames


def test_plain_reply_streams_deltas_and_uses_reported_usage(scripted):
    scripted.add(text("Hello", ", edge", " world"), finish("stop"), usage(12, 3))
    state, frames = turn(settings_for(candidate(scripted.url)))
    assert [f["text"] for f in frames if f["type"] == "delta"] == ["Hello", ", edge", " world"]
    assert state.text == "Hello, edge world" and not state.incomplete and not state.error
    assert (state.tokens_in, state.tokens_out, state.usage_reported) == (12, 3, True)
    assert state.ttft_ms is not None and state.total_ms >= state.ttft_ms
    request = scripted.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["messages"][0] == {"role": "system", "content": "You are terse."}


def test_without_a_usage_chunk_tokens_are_counted(scripted):
    scripted.add(text("a", "b", "c", "d"), finish("stop"))
    state, _ = turn(settings_for(candidate(scripted.url)))
    assert state.usage_reported is False and state.tokens_out == 4 and state.tokens_in > 0


def test_two_tool_turn_with_fragmented_calls(scripted):
    scripted.add(tool_fragments("c1", "calculator", '{"expression": "6*7"}', index=0),
                 tool_fragments("c2", "current_time", '{"timezone": "Asia/Manila"}', index=1),
                 finish("tool_calls"), usage(30, 20))
    scripted.add(text("It is 42."), finish("stop"), usage(80, 4))
    state, frames = turn(settings_for(candidate(scripted.url),
                                      tools=[builtin("calculator"), builtin("current_time")]))
    assert state.text == "It is 42." and not state.error
    assert [(c.name, c.ok) for c in state.tool_calls] == [("calculator", True),
                                                          ("current_time", True)]
    assert state.tool_calls[0].arguments == {"expression": "6*7"}
    assert '"result": 42' in state.tool_calls[0].result_summary
    types = [f["type"] for f in frames]
    assert types == ["tool_call", "tool_result", "tool_call", "tool_result", "delta"]
    second = scripted.requests[1]["messages"]
    tool_messages = [m for m in second if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["c1", "c2"]
    fed = json.loads(tool_messages[0]["content"])
    assert fed["type"] == "tool_output" and fed["output"]["result"] == 42
    assert "not instructions" in fed["note"]
    assert (state.tokens_in, state.tokens_out) == (110, 24)
    assert [t["function"]["name"] for t in scripted.requests[0]["tools"]] == [
        "calculator", "current_time"]


def test_whole_call_deltas_like_ollama(scripted):
    scripted.add(tool_whole("a", "calculator", '{"expression": "1+1"}', index=0),
                 tool_whole("b", "calculator", '{"expression": "2+2"}', index=0),
                 finish("tool_calls"))
    scripted.add(text("2 and 4"), finish())
    state, _ = turn(settings_for(candidate(scripted.url), tools=[builtin("calculator")]))
    assert [c.arguments for c in state.tool_calls] == [{"expression": "1+1"},
                                                       {"expression": "2+2"}]
    assert state.text == "2 and 4"


@pytest.mark.parametrize("call,expected", [
    (tool_whole("x", "shell", '{"cmd": "rm -rf /"}'), "unknown tool 'shell'; the tools you may "
                                                       "call are: calculator"),
    (tool_whole("x", "calculator", '{"expression": '), "invalid arguments for calculator"),
    (tool_whole("x", "calculator", '{"expr": "1"}'), "'expression' is a required property"),
    # Python's json takes these; JSON does not, and no tool can use them (a random model
    # under vLLM's constrained decoding wrote `Infinity`)
    (tool_whole("x", "calculator", '{"expression": "1", "n": NaN}'), "NaN is not a number"),
    (tool_whole("x", "calculator", '{"expression": -Infinity}'), "-Infinity is not a number"),
    (tool_whole("x", "calculator", '{"expression": 1e999}'), "1e999 is out of range"),
])
def test_bad_calls_are_fed_back_and_the_model_recovers(scripted, call, expected):
    scripted.add(call, finish("tool_calls"))
    scripted.add(text("Sorry."), finish())
    state, _ = turn(settings_for(candidate(scripted.url), tools=[builtin("calculator")]))
    fed = json.loads([m for m in scripted.requests[1]["messages"] if m["role"] == "tool"][0][
        "content"])
    assert fed["ok"] is False and expected in fed["error"]
    if "invalid arguments" in expected or "required" in expected:
        assert "JSON Schema" in fed["error"]  # the schema goes back with the error
    assert state.text == "Sorry." and not state.error


def test_repeated_call_stops_the_turn(scripted):
    same = tool_whole("x", "calculator", '{"expression": "1+1"}')
    scripted.add(same, finish("tool_calls"))
    scripted.add(tool_whole("y", "calculator", '{"expression": "1+1"}'), finish("tool_calls"))
    state, frames = turn(settings_for(candidate(scripted.url), tools=[builtin("calculator")]))
    assert state.error_code == "repeated_tool_call" and state.incomplete
    assert frames[-1]["type"] == "error" and "repeated" in frames[-1]["message"]


def test_iteration_limit(scripted):
    for i in range(3):
        scripted.add(tool_whole(f"c{i}", "calculator", f'{{"expression": "{i}+1"}}'),
                     finish("tool_calls"))
    state, _ = turn(settings_for(candidate(scripted.url), tools=[builtin("calculator")],
                                 max_tool_iterations=2))
    assert state.error_code == "tool_iterations" and len(state.tool_calls) == 2
    assert len(scripted.requests) == 3


def test_three_consecutive_tool_errors_end_the_turn(scripted):
    for i in range(3):
        scripted.add(tool_whole(f"c{i}", "calculator", f'{{"expression": "{i}/0"}}'),
                     finish("tool_calls"))
    state, _ = turn(settings_for(candidate(scripted.url), tools=[builtin("calculator")]))
    assert state.error_code == "tool_errors" and "division by zero" in state.error


@pytest.mark.parametrize("answer,ok,approved_by", [
    ((True, "oscar"), True, "oscar"), ((False, "denied by oscar"), False, ""),
])
def test_approval(scripted, answer, ok, approved_by):
    scripted.add(tool_whole("c", "calculator", '{"expression": "2*3"}'), finish("tool_calls"))
    scripted.add(text("done"), finish())
    asked = []

    async def approve(call):
        asked.append(call)
        return answer

    state, frames = turn(settings_for(candidate(scripted.url),
                                      tools=[builtin("calculator", requires_approval=True)]),
                         approve=approve)
    assert asked[0]["arguments"] == {"expression": "2*3"}
    assert any(f["type"] == "approval_required" for f in frames)
    record = state.tool_calls[0]
    assert (record.ok, record.approved_by) == (ok, approved_by)
    if not ok:
        assert "denied by oscar" in record.result_summary


def test_approval_without_an_approver_is_denied(scripted):
    scripted.add(tool_whole("c", "calculator", '{"expression": "2*3"}'), finish("tool_calls"))
    scripted.add(text("ok"), finish())
    state, _ = turn(settings_for(candidate(scripted.url),
                                 tools=[builtin("calculator", requires_approval=True)]))
    assert state.tool_calls[0].ok is False and "approval" in state.tool_calls[0].result_summary


def test_fallback_before_the_first_token(scripted):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    scripted.add(text("from the fallback"), finish())
    state, frames = turn(settings_for(candidate(dead, "primary"),
                                      candidate(scripted.url, "fallback")))
    assert state.text == "from the fallback" and not state.error
    assert frames[0]["type"] == "route" and "fallback: cannot reach primary" in frames[0]["reason"]
    assert state.route[0]["from"] == "primary" and state.route[0]["to"] == "fallback"


def test_http_error_before_the_first_token_falls_back(scripted):
    other = ScriptedOpenAI().start()
    try:
        scripted.add(("status", 502, "<html><body>Bad Gateway</body></html>"))
        other.add(text("ok"), finish())
        state, frames = turn(settings_for(candidate(scripted.url, "a"), candidate(other.url, "b")))
        assert state.text == "ok"
        assert "HTTP 502 from a: an HTML error page" in frames[0]["reason"]
    finally:
        other.stop()


def test_failure_after_the_first_token_keeps_the_partial_reply(scripted):
    other = ScriptedOpenAI().start()
    try:
        scripted.add(text("Partial ", "answer"), ("reset",))
        state, frames = turn(settings_for(candidate(scripted.url), candidate(other.url)))
        assert state.text == "Partial answer" and state.incomplete
        assert state.error_code == "upstream_closed" and "mid-reply" in state.error
        assert other.requests == []  # no fallback after text reached the user
        assert frames[-1]["type"] == "error"
    finally:
        other.stop()


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_stream_closed_before_any_token_falls_back(scripted, framing):
    """An empty answer whose stream just ends is a backend that gave up, not a reply:
    nothing reached the user yet, so the next backend answers."""
    other = ScriptedOpenAI().start()
    try:
        scripted.framing = framing
        scripted.add(("no_done",))
        other.add(text("from the fallback"), finish())
        state, frames = turn(settings_for(candidate(scripted.url, "a"), candidate(other.url, "b")))
        assert state.text == "from the fallback" and not state.error
        assert frames[0]["type"] == "route"
        assert "closed the stream before replying" in frames[0]["reason"]
        assert state.attempts == [(1, False), (1, True)]  # the breaker hears of it
    finally:
        other.stop()


def test_stream_ending_without_done_still_completes(scripted):
    scripted.add(text("fine"), finish(), ("no_done",))
    state, _ = turn(settings_for(candidate(scripted.url)))
    assert state.text == "fine" and not state.error


def test_first_token_deadline(scripted):
    scripted.add(("sleep", 2), text("late"), finish())
    state, _ = turn(settings_for(candidate(scripted.url), first_token_timeout_s=0.3))
    assert state.error_code == "first_token_timeout" and state.text == ""


def test_idle_gap_deadline(scripted):
    scripted.add(text("first"), ("sleep", 2), text("never"), finish())
    state, _ = turn(settings_for(candidate(scripted.url), idle_timeout_s=0.3))
    assert state.error_code == "idle_timeout" and state.text == "first" and state.incomplete


def test_whole_turn_deadline_fires_on_a_drip_feed(scripted):
    scripted.add(*[[("sleep", 0.2)] + text(".") for _ in range(30)], finish())
    state, _ = turn(settings_for(candidate(scripted.url), idle_timeout_s=1, turn_timeout_s=1))
    assert state.error_code == "turn_timeout" and state.incomplete and state.text.startswith(".")


def test_cancel_closes_the_upstream_stream_within_a_second(scripted):
    scripted.add(*[[("sleep", 0.05)] + text("x") for _ in range(200)], finish())
    state = TurnState()

    async def main():
        seen = asyncio.Event()

        async def emit(frame):
            if frame["type"] == "delta":
                seen.set()

        task = asyncio.create_task(run_turn(settings_for(candidate(scripted.url)), [], "go",
                                            emit=emit, state=state))
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    cancelled_at = time.monotonic()
    while scripted.disconnects == 0 and time.monotonic() - cancelled_at < 1.0:
        time.sleep(0.02)
    assert scripted.disconnects == 1
    assert state.text.startswith("x") and len(state.text) < 200  # the partial is readable


def test_calculator_refuses_code():
    from agents.tools import ToolError
    from agents.tools.builtin import calculate

    assert calculate("2**10 + sqrt(16)") == 1028
    for bad in ["__import__('os')", "().__class__", "9**9**9", "a+1", "open('x')"]:
        with pytest.raises(ToolError):
            calculate(bad)
