"""Managed engines in the JSON API (mounted on console's /api/): create, change, delete,
start, stop, restart, and read their state, events and log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal

from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from console.actions import Invalid
from console.api import found, need
from console.audit import Actor
from engines import actions, commands, logs
from engines.models import EngineEvent, ManagedEngine

router = Router(tags=["engines"])
# the form's field names → the API's
API_NAMES = {**actions.PUBLIC_NAMES, "plan": "plan_id"}


@contextmanager
def _api_names() -> Iterator[None]:
    try:
        yield
    except Invalid as exc:
        raise Invalid({API_NAMES.get(k, k): v for k, v in exc.errors.items()}) from None


class EngineIn(Schema):
    name: str
    kind: Literal["llamacpp", "vllm"]
    binary: str = Field("", description="one of GET /api/engines/commands; blank: the first "
                                        "allowed one for the kind")
    model_path: str = Field("", description="llama-server: a .gguf file; vLLM: a model "
                                            "directory or a Hugging Face id")
    host: str = "127.0.0.1"
    port: int
    context: int | None = None
    threads: int | None = None
    extra_args: list[str] = Field([], description="flags from the kind's allow-list")
    env: dict[str, str] = Field({}, description="variables with an allowed prefix (VLLM_, "
                                                "OMP_, HF_, …); never secrets")
    auto_restart: bool = True
    ready_timeout_s: int = 300
    plan_id: int | None = Field(None, description="a saved vLLM deployment plan: its model "
                                                  "and flags, unless given here")
    start: bool = Field(False, description="start it at once")


class EnginePatch(Schema):
    name: str | None = None
    binary: str | None = None
    model_path: str | None = None
    host: str | None = None
    port: int | None = None
    context: int | None = None
    threads: int | None = None
    extra_args: list[str] | None = None
    env: dict[str, str] | None = None
    auto_restart: bool | None = None
    ready_timeout_s: int | None = None


class EngineOut(Schema):
    id: int
    name: str
    kind: str
    binary: str = Field(..., alias="command")
    model_path: str
    host: str
    port: int
    context: int | None
    threads: int | None
    extra_args: list[str]
    env: dict[str, str]
    auto_restart: bool
    ready_timeout_s: int
    plan_id: int | None
    desired: str
    state: str
    state_reason: str
    pid: int | None
    restarts: int
    last_exit_code: int | None
    backend_id: int | None
    base_url: str
    started_at: datetime | None
    ready_at: datetime | None
    stopped_at: datetime | None
    next_start_at: datetime | None
    changes_pending: bool
    worker: str

    @staticmethod
    def resolve_base_url(engine: ManagedEngine) -> str:
        return commands.base_url(engine)


class EventOut(Schema):
    at: datetime
    state: str
    pid: int | None
    exit_code: int | None
    detail: str


class CommandOut(Schema):
    binary: str
    kind: str


class LogOut(Schema):
    lines: list[str]


def _data(payload: Schema) -> dict:
    data = payload.dict(exclude_unset=True) if isinstance(payload, EnginePatch) \
        else payload.dict()
    if "binary" in data:
        data["command"] = data.pop("binary")
    if "plan_id" in data:
        data["plan"] = data.pop("plan_id")
    data.pop("start", None)
    return data


@router.get("/engines/commands", response=list[CommandOut])
def list_commands(request):
    """The engine commands this machine allows (TANGLAW_ENGINE_COMMANDS)."""
    need(request, "engines.view")
    return [{"binary": c.text, "kind": c.kind} for c in commands.allowed()]


@router.get("/engines", response=list[EngineOut])
def list_engines(request):
    need(request, "engines.view")
    return list(ManagedEngine.objects.all())


@router.post("/engines", response={201: EngineOut, 422: dict})
def create_engine(request, payload: EngineIn):
    need(request, "engines.manage")
    with _api_names():
        return Status(201, actions.create_engine(Actor.from_request(request), _data(payload),
                                                 start=payload.start))


@router.get("/engines/{pk}", response=EngineOut)
def get_engine(request, pk: int):
    need(request, "engines.view")
    return found(ManagedEngine.objects, "engine", pk=pk)


@router.patch("/engines/{pk}", response={200: EngineOut, 422: dict})
def update_engine(request, pk: int, payload: EnginePatch):
    need(request, "engines.manage")
    engine = found(ManagedEngine.objects, "engine", pk=pk)
    with _api_names():
        return actions.update_engine(Actor.from_request(request), engine, _data(payload))


@router.delete("/engines/{pk}", response={204: None, 409: dict})
def delete_engine(request, pk: int):
    need(request, "engines.manage")
    actions.delete_engine(Actor.from_request(request),
                          found(ManagedEngine.objects, "engine", pk=pk))
    return Status(204, None)


@router.get("/engines/{pk}/events", response=list[EventOut])
def engine_events(request, pk: int, limit: int = 50):
    need(request, "engines.view")
    engine = found(ManagedEngine.objects, "engine", pk=pk)
    return list(EngineEvent.objects.filter(engine=engine)[:max(1, min(limit, 500))])


@router.get("/engines/{pk}/log", response=LogOut)
def engine_log(request, pk: int, lines: int = 200):
    """The last lines the engine printed (stdout and stderr, every start)."""
    need(request, "engines.log")
    engine = found(ManagedEngine.objects, "engine", pk=pk)
    if not 1 <= lines <= 5000:
        raise HttpError(422, "lines must be between 1 and 5000")
    return {"lines": logs.tail(engine.pk, lines)}


@router.get("/engines/{pk}/log/download", response={200: None})
def engine_log_download(request, pk: int):
    need(request, "engines.log")
    engine = found(ManagedEngine.objects, "engine", pk=pk)
    response = logs.download(engine)
    if response is None:
        raise HttpError(404, "this engine has not written a log yet")
    return response


# last: a POST to any other /engines/{pk}/… would match it first
@router.post("/engines/{pk}/{action}", response={200: EngineOut, 422: dict})
def engine_action(request, pk: int, action: Literal["start", "stop", "restart"]):
    """Ask for it; the monitor's supervisor does it (watch `state`)."""
    need(request, "engines.manage")
    engine = found(ManagedEngine.objects, "engine", pk=pk)
    do = {"start": actions.start_engine, "stop": actions.stop_engine,
          "restart": actions.restart_engine}[action]
    with _api_names():
        return do(Actor.from_request(request), engine)
