"""Every check kind, passing and failing, on replies a small model really gives (fenced
JSON, a tool call with string arguments, no reply at all), and bad specs named by path."""

import pytest

from evals.checks import Reply, describe, run, validate

REPLY = Reply(text='```json\n{"city": "Ōsaka", "crates": 12}\n```', total_ms=840.0,
              ttft_ms=120.0, tokens_out=18,
              tool_calls=[{"name": "lookup", "arguments": '{"city": "Ōsaka", "limit": 3}'}])


@pytest.mark.parametrize("spec,passed", [
    ({"kind": "contains", "value": "Ōsaka"}, True),
    ({"kind": "contains", "value": "ōsaka"}, False),
    ({"kind": "contains", "value": "ōsaka", "ignore_case": True}, True),
    ({"kind": "exact", "value": "12"}, False),
    ({"kind": "regex", "pattern": r'"crates":\s*\d+'}, True),
    ({"kind": "regex", "pattern": r"^Tokyo"}, False),
    ({"kind": "json_valid"}, True),  # inside a ```json fence, as models write it
    ({"kind": "json_schema", "schema": {"type": "object", "required": ["crates"],
                                        "properties": {"crates": {"type": "integer"}}}}, True),
    ({"kind": "json_schema", "schema": {"type": "object", "required": ["pallets"]}}, False),
    ({"kind": "tool_called", "name": "lookup"}, True),
    ({"kind": "tool_called", "name": "lookup", "arguments": {
        "type": "object", "properties": {"limit": {"maximum": 5}}}}, True),
    ({"kind": "tool_called", "name": "lookup", "arguments": {
        "type": "object", "required": ["country"]}}, False),
    ({"kind": "tool_called", "name": "calculator"}, False),
    ({"kind": "max_latency_ms", "value": 1000}, True),
    ({"kind": "max_latency_ms", "value": 500}, False),
    ({"kind": "max_tokens", "value": 18}, True),
    ({"kind": "max_tokens", "value": 10}, False),
])
def test_each_kind_passes_and_fails(spec, passed):
    _, errors = validate([spec], "checks")
    assert errors == {}
    outcome = run(spec, REPLY)
    assert outcome.passed is passed, outcome
    assert bool(outcome.detail) is not passed  # a failure says why
    assert describe(spec)


def test_a_reply_that_is_not_json_fails_the_json_checks_without_raising():
    for text in ("Sure! Here it is: {crates: 12}", "", '{"a": NaN}', "[" * 500):
        for spec in ({"kind": "json_valid"}, {"kind": "json_schema", "schema": {}}):
            outcome = run(spec, Reply(text=text))
            assert not outcome.passed and outcome.detail.startswith("not JSON")


def test_no_reply_fails_every_content_check():
    failed = Reply(error="connection refused at 127.0.0.1:11434")
    assert not run({"kind": "contains", "value": "x"}, failed).passed
    assert "connection refused" in run({"kind": "json_valid"}, failed).detail
    assert not run({"kind": "max_latency_ms", "value": 10}, failed).passed  # no time


@pytest.mark.parametrize("spec,path", [
    ({"kind": "sounds_right"}, "checks[0].kind"),
    ({"kind": "contains"}, "checks[0].value"),
    ({"kind": "contains", "value": ""}, "checks[0].value"),
    ({"kind": "contains", "value": "x", "ignore_case": "yes"}, "checks[0].ignore_case"),
    ({"kind": "regex", "pattern": "(unclosed"}, "checks[0].pattern"),
    ({"kind": "regex", "pattern": "x" * 501}, "checks[0].pattern"),
    ({"kind": "json_schema"}, "checks[0].schema"),
    ({"kind": "json_schema", "schema": {"type": "nonsense"}}, "checks[0].schema"),
    ({"kind": "tool_called", "name": "t", "arguments": []}, "checks[0].arguments"),
    ({"kind": "max_latency_ms", "value": 0}, "checks[0].value"),
    ({"kind": "max_tokens", "value": True}, "checks[0].value"),
    ({"kind": "max_tokens", "value": 5, "extra": 1}, "checks[0].extra"),
    ("contains", "checks[0].kind"),
])
def test_bad_specs_are_named_by_path(spec, path):
    _, errors = validate([spec], "checks")
    assert path in errors, errors


def test_not_a_list():
    assert validate({"kind": "json_valid"}, "cases[2].checks")[1] == {
        "cases[2].checks": ["a list of checks"]}
