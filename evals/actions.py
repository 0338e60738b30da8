"""Dataset changes: validated (every error with its path), versioned and audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from evals import checks as check_kinds
from evals.models import Dataset, DatasetVersion
from gateway.errors import GatewayError
from gateway.wire import check_tools

MAX_CASES = 2000
MAX_MESSAGES = 50
MAX_CONTENT = 64 * 1024
ROLES = ("system", "user", "assistant")


def clean_cases(cases: Any) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Cases as stored, each with an id (its position when none is given), or the errors
    by path (`cases[3].messages[0].role`)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(cases, list):
        return [], {"cases": ["a list of cases"]}
    if len(cases) > MAX_CASES:
        return [], {"cases": [f"at most {MAX_CASES} cases"]}
    out, seen = [], set()
    for i, case in enumerate(cases):
        path = f"cases[{i}]"
        if not isinstance(case, dict):
            errors[path] = ["a case: {messages, expected?, checks?, tools?}"]
            continue
        for key in sorted(set(case) - {"id", "messages", "expected", "checks", "source",
                                       "tools"}):
            errors[f"{path}.{key}"] = ["unknown field"]
        ident = case.get("id", str(i + 1))
        if not isinstance(ident, str | int) or isinstance(ident, bool) or not str(ident) \
                or len(str(ident)) > 64:
            errors[f"{path}.id"] = ["a short name or number"]
        elif str(ident) in seen:
            errors[f"{path}.id"] = [f"{ident!r} appears twice"]
        seen.add(str(ident))
        messages = case.get("messages")
        if isinstance(messages, str):  # a single question, as CSV files have it
            messages = [{"role": "user", "content": messages}]
        if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
            errors[f"{path}.messages"] = [f"1–{MAX_MESSAGES} messages"]
            messages = []
        for j, message in enumerate(messages):
            where = f"{path}.messages[{j}]"
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                errors[f"{where}.role"] = [f"one of {', '.join(ROLES)}"]
            elif not isinstance(message.get("content"), str) or not message["content"].strip():
                errors[f"{where}.content"] = ["text"]
            elif len(message["content"]) > MAX_CONTENT:
                errors[f"{where}.content"] = [f"at most {MAX_CONTENT // 1024} kB"]
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") != "user":
            errors.setdefault(f"{path}.messages", []).append("the last message is the user's")
        expected = case.get("expected")
        if expected is not None and not isinstance(expected, str):
            errors[f"{path}.expected"] = ["text, or leave it out"]
        specs, check_errors = check_kinds.validate(case.get("checks"), f"{path}.checks")
        errors.update(check_errors)
        tools = case.get("tools")
        try:
            check_tools(tools)
        except GatewayError as exc:
            errors[f"{path}.{exc.param or 'tools'}"] = [exc.message]
        source = case.get("source")
        if source is not None and not isinstance(source, dict):
            errors[f"{path}.source"] = ["where the case came from: {conversation_id, …}"]
        out.append({"id": str(ident), "messages": [
            {"role": m["role"], "content": m["content"]} for m in messages
            if isinstance(m, dict) and "role" in m and "content" in m],
            **({"expected": expected} if isinstance(expected, str) else {}),
            "checks": specs, **({"source": source} if isinstance(source, dict) else {}),
            **({"tools": tools} if isinstance(tools, list) and tools else {})})
    return out, errors


def _judges_exist(lists: list[tuple[str, list[dict[str, Any]]]],
                  errors: dict[str, list[str]]) -> None:
    """Every judge check names an agent that exists (one query)."""
    from agents.models import Agent

    wanted = {(f"{path}[{j}].agent", spec.get("agent")) for path, specs in lists
              for j, spec in enumerate(specs)
              if isinstance(spec, dict) and spec.get("kind") == "judge"
              and isinstance(spec.get("agent"), int)}
    known = set(Agent.objects.filter(pk__in={a for _, a in wanted})
                .values_list("pk", flat=True)) if wanted else set()
    for where, agent in sorted(wanted):
        if agent not in known and where not in errors:
            errors[where] = [f"no agent has the id {agent}"]


FIELDS = {"name", "description", "cases", "checks", "note"}


def _clean(data: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {key: ["unknown field"] for key in sorted(set(data) - FIELDS)}
    name = data.get("name", dataset.name if dataset else None)
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        errors["name"] = ["a name (at most 100 characters)"]
    elif Dataset.objects.filter(name=name).exclude(pk=dataset.pk if dataset else -1).exists():
        errors["name"] = [f"a dataset named {name} already exists"]
    description = data.get("description", dataset.description if dataset else "")
    if not isinstance(description, str) or len(description) > 2000:
        errors["description"] = ["text (at most 2,000 characters)"]
    cases, case_errors = clean_cases(data.get("cases", []))
    errors.update(case_errors)
    specs, check_errors = check_kinds.validate(data.get("checks", []), "checks")
    errors.update(check_errors)
    _judges_exist([("checks", specs)] + [(f"cases[{i}].checks", c["checks"])
                                         for i, c in enumerate(cases)], errors)
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > 200:
        errors["note"] = ["text (at most 200 characters)"]
    if errors:
        raise Invalid(errors)
    return {"name": name, "description": description, "cases": cases, "checks": specs,
            "note": note}


def create_dataset(actor: Actor, user, data: dict[str, Any]) -> Dataset:
    fields = _clean(data, None)
    with transaction.atomic():
        dataset = Dataset.objects.create(name=fields["name"],
                                         description=fields["description"],
                                         created_by=user if getattr(user, "pk", None) else None)
        DatasetVersion.objects.create(dataset=dataset, number=1, cases=fields["cases"],
                                      checks=fields["checks"], note=fields["note"],
                                      created_by=actor.username)
        audit.record(AuditAction.DATASET_CREATED, actor, target=dataset,
                     after={"name": dataset.name, "version": 1,
                            "cases": len(fields["cases"])})
    return dataset


def new_version(actor: Actor, dataset: Dataset, data: dict[str, Any]) -> DatasetVersion:
    """The dataset's cases and checks as given, as its next version (name and
    description change in place)."""
    current = dataset.versions.get(number=dataset.version)
    fields = _clean({"cases": current.cases, "checks": current.checks, **data,
                     "note": data.get("note", "")}, dataset)
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        locked.version += 1
        locked.name, locked.description = fields["name"], fields["description"]
        locked.updated_at = timezone.now()
        locked.save()
        version = DatasetVersion.objects.create(
            dataset=locked, number=locked.version, cases=fields["cases"],
            checks=fields["checks"], note=fields["note"], created_by=actor.username)
        audit.record(AuditAction.DATASET_UPDATED, actor, target=locked,
                     before={"version": current.number, "cases": len(current.cases)},
                     after={"version": version.number, "cases": len(version.cases),
                            "note": version.note})
    dataset.refresh_from_db()
    return version


def remove_case(actor: Actor, dataset: Dataset, case_id: Any) -> DatasetVersion:
    """The dataset's next version without one case (earlier versions keep it)."""
    current = dataset.versions.get(number=dataset.version)
    kept = [c for c in current.cases if c["id"] != str(case_id)]
    if len(kept) == len(current.cases):
        raise Invalid({"case_id": [f"version {current.number} has no case {case_id!r}"]})
    return new_version(actor, dataset, {"cases": kept, "note": f"removed {case_id}"[:200]})


def delete_dataset(actor: Actor, dataset: Dataset) -> None:
    with transaction.atomic():
        pk, name, versions = dataset.pk, dataset.name, dataset.version
        dataset.delete()
        audit.record(AuditAction.DATASET_DELETED, actor, target_type="evals.dataset",
                     target_id=pk, before={"name": name, "versions": versions})


MAX_UPLOAD = 4 * 1024 * 1024


def cases_from_file(filename: str, text: str) -> list[dict[str, Any]]:
    """Cases from an uploaded file: JSON Lines (one case object a line, as the API takes
    them) or CSV with an `input` column (the question) and optional `expected`, `id` and
    `contains` (a contains check) columns. Invalid names the line."""
    import csv
    import io

    from console.safeinput import UnsafeInput, loads_json

    if len(text.encode()) > MAX_UPLOAD:
        raise Invalid({"file": [f"at most {MAX_UPLOAD // (1024 * 1024)} MB"]})
    lower = filename.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        cases = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                cases.append(loads_json(line, f"line {n}"))
            except UnsafeInput as exc:
                raise Invalid({"file": [str(exc)]}) from None
        return cases
    if lower.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        columns = {c.strip().lower() for c in reader.fieldnames or []}
        if "input" not in columns:
            raise Invalid({"file": ["a CSV needs an input column (the question); expected, "
                                    "id and contains are optional"]})
        cases = []
        for row in reader:
            row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            case: dict[str, Any] = {"messages": row.get("input", "")}
            if row.get("id"):
                case["id"] = row["id"]
            if row.get("expected"):
                case["expected"] = row["expected"]
            if row.get("contains"):
                case["checks"] = [{"kind": "contains", "value": row["contains"]}]
            cases.append(case)
        return cases
    raise Invalid({"file": ["a .jsonl or .csv file"]})


def case_from_conversation(user, conversation_id: Any, message_id: Any = None, *,
                           expected: bool = True) -> dict[str, Any]:
    """A case from a conversation turn (its last question unless `message_id` names a
    user message): the messages up to that question, the reply as the expected answer
    when `expected`, and the turn it came from as its `source`. Only a conversation the
    user may read (their own; an admin's: any)."""
    from agents.choices import MessageRole
    from agents.models import Conversation

    def number(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    conversation = Conversation.objects.for_user(user).filter(
        pk=number(conversation_id)).first() if number(conversation_id) else None
    if conversation is None:
        raise Invalid({"conversation_id": ["no such conversation of yours"]})
    messages = list(conversation.messages.filter(superseded=False).order_by("pk"))
    questions = [m for m in messages if m.role == MessageRole.USER]
    if message_id is not None:
        question = next((m for m in questions if m.pk == number(message_id)), None)
        if question is None:
            raise Invalid({"message_id": ["not a question in this conversation"]})
    elif questions:
        question = questions[-1]
    else:
        raise Invalid({"conversation_id": ["the conversation has no question yet"]})
    history = [{"role": m.role, "content": m.content} for m in messages
               if m.pk <= question.pk and m.role in ("user", "assistant") and m.content.strip()]
    case: dict[str, Any] = {"id": f"turn-{question.pk}", "messages": history,
                            "source": {"conversation_id": conversation.pk,
                                       "message_id": question.pk}}
    reply = next((m for m in messages if m.pk > question.pk and m.role == MessageRole.ASSISTANT
                  and m.content.strip()), None)
    if reply is not None and reply.run_id is not None:
        case["source"]["run_id"] = reply.run_id
        trace = reply.run.trace_id if reply.run else ""
        if trace:
            case["source"]["trace_id"] = trace
    if expected and reply is not None:
        case["expected"] = reply.content
    return case


def add_case(actor: Actor, dataset: Dataset, case: dict[str, Any],
             note: str = "") -> DatasetVersion:
    """The dataset's next version: its cases and this one (an id already taken gets a
    suffix)."""
    current = dataset.versions.get(number=dataset.version)
    taken = {c["id"] for c in current.cases}
    ident, n = case["id"], 2
    while ident in taken:
        ident, n = f"{case['id']}-{n}", n + 1
    return new_version(actor, dataset, {"cases": [*current.cases, {**case, "id": ident}],
                                        "note": note or "added a turn"})
