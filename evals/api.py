"""Datasets and experiments in the JSON API (mounted on console's /api/)."""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from agents.streaming import event
from console.actions import Invalid
from console.api import ChatThrottle, admit, found, given, need
from console.audit import Actor
from evals import actions, compare, experiments, export, gates, replay
from evals.models import Dataset, Experiment

router = Router(tags=["datasets"])


class DatasetRow(Schema):
    id: int
    name: str
    description: str
    version: int
    updated_at: datetime


class VersionRow(Schema):
    number: int
    cases: int
    note: str
    created_by: str
    created_at: datetime

    @staticmethod
    def resolve_cases(version) -> int:
        return len(version.cases)


class DatasetOut(DatasetRow):
    """A dataset at one version (the current one unless ?version= names another)."""

    shown_version: int
    cases: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    note: str


class DatasetIn(Schema):
    name: Any = None
    description: Any = ""
    cases: Any = []
    checks: Any = []
    note: Any = ""


class VersionIn(Schema):
    name: Any = None
    description: Any = None
    cases: Any = None
    checks: Any = None
    note: Any = ""


def _out(dataset: Dataset, number: int | None = None) -> dict[str, Any]:
    version = found(dataset.versions, "version of this dataset",
                    number=number if number is not None else dataset.version)
    return {"id": dataset.pk, "name": dataset.name, "description": dataset.description,
            "version": dataset.version, "updated_at": dataset.updated_at,
            "shown_version": version.number, "cases": version.cases,
            "checks": version.checks, "note": version.note}


@router.get("/datasets", response=list[DatasetRow])
def list_datasets(request):
    need(request, "datasets.view")
    return list(Dataset.objects.all())


@router.post("/datasets", response={201: DatasetOut, 422: dict})
def create_dataset(request, payload: DatasetIn):
    """`{name, description?, cases: [{id?, messages (or one question as text), expected?,
    checks?, source?}], checks?: [...] (every case gets them), note?}` → version 1."""
    need(request, "datasets.change")
    dataset = actions.create_dataset(Actor.from_request(request), request.user,
                                     {"description": "", "cases": [], "checks": [], "note": "",
                                      **given(request, payload)})
    return Status(201, _out(dataset))


@router.get("/datasets/{pk}", response=DatasetOut)
def get_dataset(request, pk: int, version: int | None = None):
    need(request, "datasets.view")
    return _out(found(Dataset.objects, "dataset", pk=pk), version)


@router.get("/datasets/{pk}/versions", response=list[VersionRow])
def dataset_versions(request, pk: int):
    need(request, "datasets.view")
    return list(found(Dataset.objects, "dataset", pk=pk).versions.all())


@router.post("/datasets/{pk}/versions", response={201: DatasetOut, 422: dict})
def add_version(request, pk: int, payload: VersionIn):
    """The next version: what is given replaces the current version's (cases, checks);
    name and description change in place."""
    need(request, "datasets.change")
    dataset = found(Dataset.objects, "dataset", pk=pk)
    changes = {k: v for k, v in given(request, payload).items() if v is not None}
    version = actions.new_version(Actor.from_request(request), dataset, changes)
    return Status(201, _out(dataset, version.number))


@router.delete("/datasets/{pk}", response={204: None})
def delete_dataset(request, pk: int):
    need(request, "datasets.change")
    actions.delete_dataset(Actor.from_request(request),
                           found(Dataset.objects, "dataset", pk=pk))
    return Status(204, None)


# -- experiments ---------------------------------------------------------------------

class ExperimentRow(Schema):
    id: int
    name: str
    dataset_id: int
    state: str
    done: int
    total: int
    created_at: datetime
    finished_at: datetime | None

    @staticmethod
    def resolve_name(experiment) -> str:
        return str(experiment)


class ExperimentIn(Schema):
    dataset_id: Any = None
    version: Any = None
    targets: Any = None
    concurrency: Any = None
    seed: Any = None
    name: Any = None


def _experiment(request, pk: int) -> Experiment:
    return found(Experiment.objects.select_related("dataset", "version", "created_by"),
                 "experiment", pk=pk)


@router.get("/experiments", response=list[ExperimentRow], tags=["experiments"])
def list_experiments(request, dataset_id: int | None = None, limit: int = 50):
    """Experiments, newest first (`dataset_id` keeps one dataset's)."""
    need(request, "experiments.view")
    rows = Experiment.objects.all()
    if dataset_id is not None:
        rows = rows.filter(dataset_id=dataset_id)
    return list(rows[:max(1, min(limit, 200))])


@router.post("/experiments", response={201: dict, 403: dict, 422: dict},
             tags=["experiments"])
def create_experiment(request, payload: ExperimentIn):
    """`{dataset_id, version? (the current one), targets: [{agent_id} | {backend_id,
    model}, with params? {temperature, max_tokens, top_p, seed, tool_choice} and
    label?], concurrency? (1–8, default 2), seed?, name?}` → a queued experiment, which
    a monitor runs. Each case on each target is a turn of the turn service (metrics,
    traces, audit); a model target runs as that model's quick agent."""
    need(request, "experiments.run")
    data = {k: v for k, v in given(request, payload).items() if v is not None}
    experiment = experiments.create_experiment(Actor.from_request(request), request.user,
                                               data)
    return Status(201, export.experiment_dict(_experiment(request, experiment.pk)))


@router.get("/experiments/{pk}", response=dict, tags=["experiments"])
def get_experiment(request, pk: int, results: bool = True):
    """State, progress, the targets with what each ran on (engine, version, model digest
    or file, quantization, host), a summary per target (pass rate with its 95 % Wilson
    interval, latency percentiles, tokens/s, judge mean) and every case's result."""
    need(request, "experiments.view")
    return export.experiment_dict(_experiment(request, pk), results=results)


@router.get("/experiments/{pk}/regressions", response=dict, tags=["experiments"])
def experiment_regressions(request, pk: int, against: int):
    """What changed since another run of the same targets (`against`: the earlier
    experiment's id): cases that passed then and fail now, cases fixed, and the median
    time before and after."""
    need(request, "experiments.view")
    after, before = _experiment(request, pk), _experiment(request, against)
    return {"before": before.pk, "after": after.pk,
            "targets": [d.as_dict() for d in export.regressions(before, after)]}


@router.get("/experiments/{pk}/export.csv", response={200: None}, tags=["experiments"])
def experiment_csv(request, pk: int):
    """One row per case and target (cells that would run as spreadsheet formulas are
    quoted)."""
    need(request, "experiments.view")
    experiment = _experiment(request, pk)
    response = HttpResponse(export.csv_text(experiment), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="experiment-{pk}.csv"'
    return response


@router.post("/experiments/{pk}/cancel", response={200: dict, 403: dict, 409: dict},
             tags=["experiments"])
def cancel_experiment(request, pk: int):
    """Stops it within a second; what was recorded stays. 409 when it has ended."""
    need(request, "experiments.run")
    experiment = experiments.cancel(Actor.from_request(request), request.user,
                                    _experiment(request, pk))
    return export.experiment_dict(experiment, results=False)


@router.post("/experiments/{pk}/resume", response={200: dict, 403: dict, 409: dict},
             tags=["experiments"])
def resume_experiment(request, pk: int):
    """A cancelled or failed experiment queued again: only the cases without a result
    run."""
    need(request, "experiments.run")
    experiment = experiments.resume(Actor.from_request(request), request.user,
                                    _experiment(request, pk))
    return export.experiment_dict(experiment, results=False)


@router.delete("/experiments/{pk}", response={204: None, 403: dict, 409: dict},
               tags=["experiments"])
def delete_experiment(request, pk: int):
    need(request, "experiments.run")
    experiments.delete(Actor.from_request(request), request.user, _experiment(request, pk))
    return Status(204, None)


@router.delete("/datasets/{pk}/cases/{case_id}", response={200: DatasetOut, 422: dict})
def remove_case(request, pk: int, case_id: str):
    """The dataset's next version without this case (earlier versions keep it)."""
    need(request, "datasets.change")
    dataset = found(Dataset.objects, "dataset", pk=pk)
    version = actions.remove_case(Actor.from_request(request), dataset, case_id)
    return _out(dataset, version.number)


class TurnIn(Schema):
    conversation_id: Any = None
    message_id: Any = None
    trace_id: Any = None
    span_id: Any = None
    expected: Any = True
    checks: Any = None


@router.post("/datasets/{pk}/cases", response={201: DatasetOut, 422: dict})
def add_turn(request, pk: int, payload: TurnIn):
    """*Add to dataset*: a conversation turn (`conversation_id`, `message_id`: which
    question, the last one by default) or a trace (`trace_id`, `span_id`: a model call
    of a code-first agent, or a Tanglaw turn) as a new case in the dataset's next
    version (`expected`: the reply as the expected answer, true by default; `checks` of
    its own). The case's `source` names the conversation, message, run, trace or span it
    came from."""
    need(request, "datasets.change")
    dataset = found(Dataset.objects, "dataset", pk=pk)
    if not isinstance(payload.expected, bool):
        raise Invalid({"expected": ["true or false"]})
    if payload.conversation_id is None and payload.trace_id is not None:
        case = replay.case_from_trace(request.user, payload.trace_id, payload.span_id,
                                      expected=payload.expected)
    else:
        case = actions.case_from_conversation(request.user, payload.conversation_id,
                                              payload.message_id, expected=payload.expected)
    if payload.checks is not None:
        case["checks"] = payload.checks
    version = actions.add_case(Actor.from_request(request), dataset, case)
    return Status(201, _out(dataset, version.number))


# -- compare ------------------------------------------------------------------------------

class CompareIn(Schema):
    messages: Any = None
    text: Any = None
    targets: Any = None
    title: Any = None


@router.post("/compare", response={200: None, 403: dict, 422: dict, 429: dict},
             tags=["compare"], throttle=[])
async def compare_targets(request, payload: CompareIn):
    """One message to 1–4 targets at once, streamed as Server-Sent Events: `{messages?
    (the history, the last one the user's), text? (the question), targets: [{agent_id} |
    {backend_id, model}, with params? {temperature, max_tokens, top_p, seed,
    tool_choice} and label?], title?}`. Frames: `compare_started` (the columns), then
    each column's turn frames (turn_started, delta, tool_call, tool_result, error) with
    its `column`, a `column_done` per column (conversation_id, trace_id, error, metrics:
    ttft_ms, tokens_per_s, tokens_in, tokens_out, total_ms) and `compare_done`. Each
    column is a turn of the turn service, kept as a conversation out of the playground's
    list until `POST /api/compare/continue` chooses it. Closing the connection stops
    every column."""
    def prepare() -> compare.Comparison:
        admit(request, "chat", ChatThrottle())
        return compare.clean(Actor.from_request(request), request.user,
                             given(request, payload))

    comparison = await sync_to_async(prepare)()
    actor, user = Actor.from_request(request), request.user

    async def events():
        # closing this generator closes the comparison's at once, which stops its columns
        async with aclosing(compare.stream(actor, user, comparison)) as frames:
            async for frame in frames:
                yield event(frame)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class ContinueIn(Schema):
    conversation_id: Any = None


@router.post("/compare/continue", response={200: dict, 403: dict, 409: dict, 422: dict},
             tags=["compare"])
def continue_comparison(request, payload: ContinueIn):
    """Go on with one column: its conversation (the messages, the question, that target's
    answer) joins the playground's list. → `{conversation_id, agent_id, url}`."""
    from agents.actions import continue_comparison as go_on

    need(request, "chat")
    conversation = go_on(Actor.from_request(request), request.user, payload.conversation_id)
    return {"conversation_id": conversation.pk, "agent_id": conversation.agent_id,
            "url": f"{reverse('playground')}?c={conversation.pk}"}


class SaveIn(Schema):
    agent_id: Any = None
    params: Any = None
    name: Any = None


@router.post("/compare/save", response={200: dict, 403: dict, 409: dict, 422: dict},
             tags=["compare"])
def save_compared_settings(request, payload: SaveIn):
    """A column's temperature and max_tokens as its agent's next version (a quick agent
    becomes an agent, `name` optional). → `{agent_id, name, version, url}`."""
    need(request, "agents.change")
    agent = compare.save_settings(Actor.from_request(request), request.user,
                                  given(request, payload))
    return {"agent_id": agent.pk, "name": agent.name, "version": agent.version,
            "url": reverse("agent_detail", args=[agent.pk])}


@router.get("/compare/replay", response={200: dict, 422: dict}, tags=["compare"])
def replay_source(request, conversation_id: int | None = None, message_id: int | None = None,
                  trace_id: str | None = None, span_id: str | None = None):
    """The messages a *Replay* sends: a conversation's turn (the history up to that
    question) or a trace span's input messages. → `{messages}`."""
    need(request, "conversations.view")
    if trace_id is not None:
        need(request, "traces.view")
    return {"messages": replay.replay_messages(
        request.user, conversation_id=conversation_id, message_id=message_id,
        trace_id=trace_id, span_id=span_id)}


# -- regression sets --------------------------------------------------------------------

class RegressionSetIn(Schema):
    dataset_id: Any = None


@router.get("/agents/{pk}/regression-set", response={200: dict, 404: dict},
            tags=["experiments"])
def get_regression_set(request, pk: int, version: int | None = None):
    """The dataset the agent's changes are checked on, the runs of its newest versions
    (pass rate with its 95 % interval, latency percentiles, tokens/s), `this` version's
    (`version`, the current one by default) beside the `previous` one, and the `diff`
    between them (cases regressed and fixed)."""
    need(request, "agents.view")
    return gates.summary_dict(_agent(request, pk), version)


@router.put("/agents/{pk}/regression-set", response={200: dict, 403: dict, 404: dict,
                                                     422: dict}, tags=["experiments"])
def set_regression_set(request, pk: int, payload: RegressionSetIn):
    """`{dataset_id}` names the agent's regression set; `{dataset_id: null}` removes it."""
    need(request, "agents.change")
    body = given(request, payload)
    unknown = sorted(set(body) - {"dataset_id"})
    if unknown:
        raise Invalid({k: ["unknown field"] for k in unknown})
    agent = _agent(request, pk)
    gates.choose(Actor.from_request(request), agent, body.get("dataset_id"))
    return gates.summary_dict(agent)


@router.post("/agents/{pk}/regression-set/run", response={201: dict, 403: dict, 404: dict,
                                                          409: dict, 422: dict},
             tags=["experiments"])
def run_regression_set(request, pk: int):
    """The regression set's current version on the agent as it is now → the experiment
    (queued; `GET /api/experiments/{id}` follows it). 409 when the agent has no set, or
    this version is being checked already."""
    need(request, "experiments.run")
    experiment = gates.run(Actor.from_request(request), request.user, _agent(request, pk))
    return Status(201, export.experiment_dict(_experiment(request, experiment.pk),
                                              results=False))


def _agent(request, pk: int) -> Any:
    try:
        return gates.agent_of(request.user, pk)
    except Invalid:
        raise HttpError(404, "no such agent") from None
