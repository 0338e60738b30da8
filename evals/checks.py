"""Checks of one reply, all computed offline: exact, contains, regex, valid JSON, JSON
Schema, a tool called (with arguments matching a schema), latency and token limits,
and a judge (another agent scoring with a rubric: evals.judge runs it).

A check is a mapping with a `kind` and its own fields; `validate` says what is wrong
with one (by path, so a dataset's errors name their case and check), `run` decides it
on a `Reply`. A check never raises on a model's output: a reply that is not JSON fails
`json_valid`, it does not break the experiment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from console.safeinput import UnsafeInput, loads_json

MAX_PATTERN = 500
MAX_TEXT = 20_000


@dataclass
class Reply:
    """What a target answered to one case."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{name, arguments}]
    total_ms: float | None = None
    ttft_ms: float | None = None
    tokens_out: int | None = None
    error: str = ""


@dataclass(frozen=True)
class Outcome:
    kind: str
    passed: bool
    detail: str


def _text(spec: dict, key: str, path: str, errors: dict[str, list[str]],
          limit: int = MAX_TEXT) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        errors[f"{path}.{key}"] = ["a non-empty string"]
        return ""
    if len(value) > limit:
        errors[f"{path}.{key}"] = [f"at most {limit} characters"]
    return value


def _schema(spec: dict, key: str, path: str, errors: dict[str, list[str]],
            required: bool) -> None:
    schema = spec.get(key)
    if schema is None and not required:
        return
    if not isinstance(schema, dict):
        errors[f"{path}.{key}"] = ["a JSON Schema (an object)"]
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        errors[f"{path}.{key}"] = [f"not a valid JSON Schema: {exc.message}"]


def _limit(spec: dict, key: str, path: str, errors: dict[str, list[str]]) -> None:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e9:
        errors[f"{path}.{key}"] = ["a number above 0"]


def _validate_exact(spec, path, errors):
    _text(spec, "value", path, errors)
    if "ignore_case" in spec and not isinstance(spec["ignore_case"], bool):
        errors[f"{path}.ignore_case"] = ["true or false"]


def _validate_regex(spec, path, errors):
    pattern = _text(spec, "pattern", path, errors, MAX_PATTERN)
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            errors[f"{path}.pattern"] = [f"not a regular expression: {exc}"]


def _validate_judge(spec, path, errors):
    agent = spec.get("agent")
    if isinstance(agent, bool) or not isinstance(agent, int) or agent < 1:
        errors[f"{path}.agent"] = ["the id of the agent that judges"]
    _text(spec, "rubric", path, errors, 4000)
    low, high = spec.get("min", 1), spec.get("max", 5)
    for key, value in (("min", low), ("max", high)):
        if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
            errors[f"{path}.{key}"] = ["a whole number"]
    if f"{path}.min" not in errors and f"{path}.max" not in errors and low >= high:
        errors[f"{path}.max"] = ["more than min"]
    pass_at = spec.get("pass_at", high)
    if isinstance(pass_at, bool) or not isinstance(pass_at, int | float) or (
            isinstance(low, int) and isinstance(high, int) and not low <= pass_at <= high):
        errors[f"{path}.pass_at"] = ["a score between min and max"]


def _validate_tool(spec, path, errors):
    _text(spec, "name", path, errors, 64)
    _schema(spec, "arguments", path, errors, required=False)


VALIDATORS = {
    "exact": _validate_exact,
    "contains": _validate_exact,
    "regex": _validate_regex,
    "json_valid": lambda spec, path, errors: None,
    "json_schema": lambda spec, path, errors: _schema(spec, "schema", path, errors, True),
    "tool_called": _validate_tool,
    "max_latency_ms": lambda spec, path, errors: _limit(spec, "value", path, errors),
    "max_tokens": lambda spec, path, errors: _limit(spec, "value", path, errors),
    "judge": _validate_judge,
}
FIELDS = {"exact": {"value", "ignore_case"}, "contains": {"value", "ignore_case"},
          "regex": {"pattern"}, "json_valid": set(), "json_schema": {"schema"},
          "tool_called": {"name", "arguments"}, "max_latency_ms": {"value"},
          "max_tokens": {"value"}, "judge": {"agent", "rubric", "min", "max", "pass_at"}}
KINDS = tuple(VALIDATORS)


def validate(checks: Any, path: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """(the checks, errors by path) for a list of check specs."""
    errors: dict[str, list[str]] = {}
    if checks is None:
        return [], errors
    if not isinstance(checks, list):
        return [], {path: ["a list of checks"]}
    for i, spec in enumerate(checks):
        where = f"{path}[{i}]"
        if not isinstance(spec, dict) or spec.get("kind") not in VALIDATORS:
            errors[f"{where}.kind"] = [f"one of {', '.join(KINDS)}"]
            continue
        for key in sorted(set(spec) - FIELDS[spec["kind"]] - {"kind"}):
            errors[f"{where}.{key}"] = ["unknown field"]
        VALIDATORS[spec["kind"]](spec, where, errors)
    return checks, errors


def json_of(text: str) -> tuple[bool, Any, str]:
    """(parsed, the value, why not): a reply as JSON, a ```json fence accepted."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fence:  # a model's usual wrapping
        body = fence.group(1)
    try:
        return True, loads_json(body, "reply"), ""
    except (UnsafeInput, ValueError) as exc:
        return False, None, str(exc)[:200]


def run(spec: dict[str, Any], reply: Reply) -> Outcome:
    """One check on one reply (validated specs only)."""
    kind = spec["kind"]
    if reply.error and kind not in ("max_latency_ms", "max_tokens"):
        return Outcome(kind, False, f"no reply: {reply.error[:200]}")
    if kind in ("exact", "contains"):
        value, text = spec["value"], reply.text.strip()
        if spec.get("ignore_case"):
            value, text = value.casefold(), text.casefold()
        passed = text == value.strip() if kind == "exact" else value in text
        return Outcome(kind, passed, "" if passed else
                       f"expected {'exactly' if kind == 'exact' else 'to contain'} "
                       f"{spec['value'][:80]!r}")
    if kind == "regex":
        passed = re.search(spec["pattern"], reply.text) is not None
        return Outcome(kind, passed, "" if passed else f"no match for /{spec['pattern'][:80]}/")
    if kind in ("json_valid", "json_schema"):
        ok, value, why = json_of(reply.text)
        if not ok:
            return Outcome(kind, False, f"not JSON: {why}")
        if kind == "json_valid":
            return Outcome(kind, True, "")
        try:
            jsonschema.validate(value, spec["schema"])
        except jsonschema.ValidationError as exc:
            return Outcome(kind, False, f"does not match the schema: {exc.message[:200]}")
        return Outcome(kind, True, "")
    if kind == "tool_called":
        calls = [c for c in reply.tool_calls if c.get("name") == spec["name"]]
        if not calls:
            called = ", ".join(c.get("name", "?") for c in reply.tool_calls) or "none"
            return Outcome(kind, False, f"{spec['name']} was not called (called: {called})")
        if spec.get("arguments") is None:
            return Outcome(kind, True, "")
        last = ""
        for call in calls:
            arguments = call.get("arguments")
            if isinstance(arguments, str):
                ok, arguments, last = json_of(arguments)
                if not ok:
                    continue
            try:
                jsonschema.validate(arguments, spec["arguments"])
                return Outcome(kind, True, "")
            except jsonschema.ValidationError as exc:
                last = exc.message[:200]
        return Outcome(kind, False, f"{spec['name']} was called with other arguments: {last}")
    if kind == "max_latency_ms":
        if reply.total_ms is None:
            return Outcome(kind, False, "no time was measured")
        passed = reply.total_ms <= spec["value"]
        return Outcome(kind, passed, "" if passed else
                       f"took {reply.total_ms:.0f} ms (at most {spec['value']:g})")
    if kind == "max_tokens":
        if reply.tokens_out is None:
            return Outcome(kind, False, "no token count")
        passed = reply.tokens_out <= spec["value"]
        return Outcome(kind, passed, "" if passed else
                       f"{reply.tokens_out} tokens (at most {spec['value']:g})")
    raise ValueError(f"unknown check kind {kind!r}")


def run_all(specs: list[dict[str, Any]], reply: Reply) -> list[Outcome]:
    """Every offline check (a judge is asked by evals.judge, not here)."""
    return [run(spec, reply) for spec in specs if spec["kind"] != "judge"]


def describe(spec: dict[str, Any]) -> str:
    """A check in a few words, for pages."""
    kind = spec.get("kind", "")
    if kind in ("exact", "contains", "max_latency_ms", "max_tokens"):
        return f"{kind.replace('_', ' ')} {json.dumps(spec.get('value'), ensure_ascii=False)}"
    if kind == "regex":
        return f"matches /{spec.get('pattern')}/"
    if kind == "judge":
        return (f"judged by agent {spec.get('agent')} on {spec.get('min', 1)}–"
                f"{spec.get('max', 5)}, passes at {spec.get('pass_at', spec.get('max', 5))}")
    if kind == "tool_called":
        return f"calls {spec.get('name')}" + (" with matching arguments"
                                               if spec.get("arguments") else "")
    return kind.replace("_", " ")
