"""The JSON API under /api/ (OpenAPI at /api/openapi.json).

Session or `Authorization: Bearer tgl_…` auth; every endpoint asks the same
permissions module as the pages and goes through the same actions.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from ninja import Field, NinjaAPI, Schema, Status
from ninja.errors import HttpError, Throttled
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import UserRateThrottle

from console import audit, siteconfig
from console.actions import Invalid, Refused
from console.actions import backends as backend_actions
from console.actions import models as model_actions
from console.actions import plans as plan_actions
from console.actions.audit import verify_chain
from console.actions.security import record_denied
from console.actions.users import user_for_token
from console.audit import Actor
from console.choices import AuditAction, Outcome
from console.clientaddr import client_ip
from console.models import Backend, DeploymentPlan, Job
from console.permissions import PERMISSIONS, has_perm
from console.safeinput import UnsafeInput, check_value, loads_json
from console.views.audit import export_response, filtered_events, page_of

if TYPE_CHECKING:
    from console.backends.base import Adapter


class BearerAuth(HttpBearer):
    def authenticate(self, request, token):
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class SessionAuth(APIKeyCookie):
    """The browser's session, with Django's CSRF check on unsafe methods."""

    param_name = "sessionid"

    def authenticate(self, request, key):
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


class PerUserThrottle(UserRateThrottle):
    """The API's request rate per user (per address when anonymous), shared through the
    cache; TANGLAW_API_RATE, e.g. "600/m"."""

    def __init__(self, rate: str | None = None):
        super().__init__(rate or settings.TANGLAW_API_RATE)

    def get_ident(self, request) -> str | None:
        # the one client address (console.clientaddr), never a client-sent header
        return client_ip(request)


class StrictParser(Parser):
    """Request bodies through console.safeinput: bounded depth and size, no NaN or
    Infinity, no integer wider than 64 bits, no unpaired surrogate."""

    def parse_body(self, request: HttpRequest):
        return loads_json(request.body, "body")

    def parse_querydict(self, data, list_fields, request: HttpRequest):
        # numbers too wide for the database were refused before the view
        # (console.middleware.BoundedRequestMiddleware)
        for key, values in data.lists():
            for value in values:
                check_value(value, key)
        return super().parse_querydict(data, list_fields, request)


class ChatThrottle(PerUserThrottle):
    """TANGLAW_CHAT_RATE per user, one bucket for every way of starting a turn (the chat
    API, its stream, regenerate, and the WebSocket's frames: console.limits)."""

    scope = "chat"

    def __init__(self):
        super().__init__(settings.TANGLAW_CHAT_RATE)

    def allow_request(self, request) -> bool:
        # read the rate now, not when the endpoint was declared (settings can change)
        self.rate = settings.TANGLAW_CHAT_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)


api = NinjaAPI(title="Tanglaw API", version="1", auth=[BearerAuth(), SessionAuth(csrf=True)],
               docs_url=None, urls_namespace="api", throttle=[PerUserThrottle()],
               parser=StrictParser())


@api.exception_handler(UnsafeInput)
def _unsafe_input(request, exc: UnsafeInput):
    return api.create_response(request, {"detail": str(exc), "errors": exc.errors},
                               status=400)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    # django-ninja wraps a parser's exception in "Cannot parse request body": keep ours
    cause = exc.__cause__
    if isinstance(cause, UnsafeInput):
        return _unsafe_input(request, cause)
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


@api.exception_handler(Throttled)
def _throttled(request, exc: Throttled):
    wait = max(1, int(exc.wait or 1))
    if not getattr(exc, "recorded", False):
        _record_throttled(request)
    response = api.create_response(
        request, {"detail": f"too many requests; try again in {wait} s"}, status=429)
    response["Retry-After"] = str(wait)
    return response


def found(queryset, what: str, **lookup):
    """The one object the lookup finds, or a 404 naming what was not found."""
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise HttpError(404, f"no such {what}")
    return obj


def _record_throttled(request) -> None:
    audit.record(AuditAction.RATE_LIMITED, Actor.from_request(request),
                 outcome=Outcome.DENIED, detail=f"{request.method} {request.path}")


def admit(request, perm: str, *throttles: PerUserThrottle) -> None:
    """The permission, the API's rate and any further `throttles`, checked and a refusal
    audited, for an async endpoint (declared with `throttle=[]`): call it inside the
    endpoint's first sync_to_async hop, since nothing may touch the database on the loop."""
    need(request, perm)
    for throttle in (PerUserThrottle(), *throttles):
        if not throttle.allow_request(request):
            _record_throttled(request)
            refused = Throttled(wait=math.ceil(throttle.wait() or 1))
            refused.recorded = True  # type: ignore[attr-defined]
            raise refused


def chat_admission(request):
    """For the async chat endpoints: `admit` with the chat rate too, as the sync callable
    agents.turns.TurnSession runs in the turn's first database hop."""

    def check():
        admit(request, "chat", ChatThrottle())
        return request.user

    return check


def given(request: HttpRequest, payload: Schema | None = None) -> dict[str, Any]:
    """The fields a JSON body gave, unknown ones too: a schema of `Any` fields would drop
    them silently, and the actions name them in a 422. The schema's values (`payload`)
    when the body is not an object."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    if payload is not None:
        return payload.dict()
    raise Invalid({"body": ["a JSON object"]})


def need(request: HttpRequest, perm: str) -> None:
    if not has_perm(request.user, perm):
        record_denied(request, perm)
        raise HttpError(403, f"your role may not do this ({perm})")


@api.exception_handler(Refused)
def _refused(request, exc: Refused):
    return api.create_response(request, {"detail": str(exc)}, status=409)


@api.exception_handler(Invalid)
def _invalid(request, exc: Invalid):
    return api.create_response(request, {"detail": "invalid input", "errors": exc.errors},
                               status=422)


class BackendOut(Schema):
    id: int
    name: str
    kind: str
    base_url: str
    enabled: bool
    api_key_set: bool
    api_key_last4: str
    connect_timeout_s: float
    read_timeout_s: float
    active_probe_interval_s: int
    active_probe_model: str
    notes: str
    status: str
    status_reason: str
    latency_ms: float | None
    version: str
    model_count: int | None  # null: not measured (never listed, or unhealthy)
    last_checked_at: datetime | None
    breaker_state: str
    breaker_failures: int


class BackendIn(Schema):
    name: str
    kind: Literal["ollama", "foundry_local", "vllm", "llamacpp", "openai_compatible"]
    base_url: str
    api_key: str | None = None
    enabled: bool = True
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 60.0
    active_probe_interval_s: int = 0
    active_probe_model: str = ""
    notes: str = ""


class BackendPatch(Schema):
    name: str | None = None
    kind: Literal["ollama", "foundry_local", "vllm", "llamacpp", "openai_compatible"] | None = None
    base_url: str | None = None
    api_key: str | None = None
    clear_api_key: bool = False
    keep_api_key: bool = Field(False, description="admins: keep the stored key although the "
                                                  "scheme, host or port changes")
    enabled: bool | None = None
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None
    active_probe_interval_s: int | None = None
    active_probe_model: str | None = None
    notes: str | None = None


class ModelOut(Schema):
    id: str
    loaded: bool | None
    size_bytes: int | None
    parameter_size: str
    quantization: str
    family: str
    context_length: int | None
    vram_bytes: int | None
    expires_at: str | None


class TestOut(Schema):
    status: Literal["healthy", "degraded", "unhealthy"]
    latency_ms: float | None
    version: str
    models: list[ModelOut]
    error: str


class CandidateOut(Schema):
    kind: str
    base_url: str
    name: str
    version: str
    models: int
    registered_id: int | None


class AuditOut(Schema):
    seq: int
    ts: datetime
    actor: str
    role: str
    ip: str | None
    action: str
    target_type: str
    target_id: str
    target_repr: str
    before: dict | list | None
    after: dict | list | None
    outcome: str
    detail: str
    correlation_id: str
    hash: str


class AuditPage(Schema):
    items: list[AuditOut]
    next_cursor: int | None


class VerifyOut(Schema):
    ok: bool
    checked: int
    first_bad: int | None
    reason: str


class MeOut(Schema):
    id: int
    username: str
    role: str
    permissions: list[str]


class ErrorOut(Schema):
    detail: str


def _backend(request, pk: int) -> Backend:
    return found(Backend.objects.for_user(request.user), "backend", pk=pk)


@api.get("/me", response=MeOut, tags=["account"])
def me(request):
    user = request.user
    return {"id": user.pk, "username": user.username, "role": user.effective_role,
            "permissions": sorted(p for p in PERMISSIONS if has_perm(user, p))}


@api.get("/backends", response=list[BackendOut], tags=["backends"])
def list_backends(request):
    need(request, "backends.view")
    return list(Backend.objects.for_user(request.user))


@api.post("/backends", response={201: BackendOut, 422: dict}, tags=["backends"])
def create_backend(request, payload: BackendIn):
    need(request, "backends.change")
    data = payload.dict()
    data["api_key"] = data["api_key"] or ""
    return Status(201, backend_actions.create_backend(Actor.from_request(request), data))


# before /backends/{pk}, which would otherwise match "discover"
@api.post("/backends/discover", response=list[CandidateOut], tags=["backends"])
def discover(request):
    need(request, "backends.discover")
    return [c.as_dict() for c in backend_actions.discover(Actor.from_request(request))]


@api.get("/backends/{pk}", response=BackendOut, tags=["backends"])
def get_backend(request, pk: int):
    need(request, "backends.view")
    return _backend(request, pk)


@api.patch("/backends/{pk}", response={200: BackendOut, 422: dict}, tags=["backends"])
def patch_backend(request, pk: int, payload: BackendPatch):
    need(request, "backends.change")
    backend = _backend(request, pk)
    changes = payload.dict(exclude_unset=True)
    return backend_actions.update_backend(Actor.from_request(request), backend, changes)


@api.delete("/backends/{pk}", response={204: None}, tags=["backends"])
def delete_backend(request, pk: int):
    need(request, "backends.change")
    backend_actions.delete_backend(Actor.from_request(request), _backend(request, pk))
    return Status(204, None)


@api.post("/backends/{pk}/test", response=TestOut, tags=["backends"])
def test_backend(request, pk: int):
    need(request, "backends.test")
    report = backend_actions.test_backend(Actor.from_request(request), _backend(request, pk))
    return report.as_dict()


class BackendModelsOut(Schema):
    backend_id: int
    backend: str
    status: str
    error: str
    actions: dict[str, str]
    models: list[ModelOut]


class JobOut(Schema):
    id: int
    kind: str
    backend_id: int
    model: str
    state: str
    percent: float
    completed_bytes: int
    total_bytes: int
    speed_bps: float | None
    eta_s: float | None
    detail: str
    layers: list[dict]
    error: str
    retry_of_id: int | None
    started_at: datetime | None
    finished_at: datetime | None


class PullIn(Schema):
    model: str


class LoadIn(Schema):
    keep_alive: str | None = None


async def _models_of(backend: Backend, adapter: Adapter) -> dict:
    from console.backends import probe

    report = await probe(adapter)
    async with adapter.session():
        try:
            actions = await adapter.model_actions()
        except Exception as exc:  # noqa: BLE001 - reported per backend
            actions = dict.fromkeys(("pull", "load", "unload", "delete"), str(exc))
    return {"backend_id": backend.pk, "backend": backend.name, "status": report.status,
            "error": report.error, "actions": actions, "models": report.models}


@api.get("/models", response=list[BackendModelsOut], tags=["models"], throttle=[])
async def list_models(request):
    """Every model every enabled backend reports, with what can be done to it there
    (`actions`: an empty string when supported, otherwise why not)."""
    stored, live = await sync_to_async(_models_to_read)(request)
    if stored is not None:
        return stored
    # awaited on the server's own loop: no event loop, and none of what is cached per
    # loop, is built for a request
    return list(await asyncio.gather(*(_models_of(b, a) for b, a in live)))


def _models_to_read(request) -> tuple[list[dict] | None, list[tuple[Backend, Adapter]]]:
    """/api/models' one database hop: admission, the backends, and either what the monitor
    last saw (`stored`) or the adapters to ask now (`live`)."""
    from console.backends import adapter_for

    admit(request, "backends.view")
    backends = list(Backend.objects.for_user(request.user).filter(enabled=True))
    if not has_perm(request.user, "backends.test"):
        # a viewer reads what the monitor last saw: a GET by the least-trusted role must
        # not make every engine answer (and cost a round of probes) on demand
        return _stored_models(backends), []
    return None, [(b, adapter_for(b)) for b in backends]


def _stored_models(backends: list[Backend]) -> list[dict]:
    from django.utils.module_loading import import_string

    stored = import_string(settings.TANGLAW_STORED_MODELS)([b.pk for b in backends])
    why = "your role may not change models"
    return [{"backend_id": b.pk, "backend": b.name, "status": b.status,
             "error": b.status_reason,
             "actions": dict.fromkeys(("pull", "load", "unload", "delete"), why),
             "models": stored.get(b.pk, [])} for b in backends]


@api.post("/backends/{pk}/pull", response={202: JobOut, 409: dict, 422: dict}, tags=["models"])
def pull_model(request, pk: int, payload: PullIn):
    """Queue a pull of a model (Ollama) for the monitor: returns the job; progress on
    /ws/jobs/ and GET /api/jobs/{id}. One pull per model and backend at a time (409)."""
    need(request, "backends.change")
    job = model_actions.start_pull(Actor.from_request(request), _backend(request, pk),
                                   payload.model)
    return Status(202, job)


@api.get("/jobs", response=list[JobOut], tags=["models"])
def list_jobs(request, state: str | None = None):
    need(request, "backends.view")
    jobs = Job.objects.all()
    if state:
        jobs = jobs.filter(state=state)
    return list(jobs[:100])


def _job(pk: int) -> Job:
    return found(Job.objects, "job", pk=pk)


@api.get("/jobs/{pk}", response=JobOut, tags=["models"])
def get_job(request, pk: int):
    need(request, "backends.view")
    return _job(pk)


@api.post("/jobs/{pk}/cancel", response={200: JobOut, 409: dict}, tags=["models"])
def cancel_job(request, pk: int):
    need(request, "backends.change")
    return model_actions.cancel(Actor.from_request(request), _job(pk))


@api.post("/jobs/{pk}/retry", response={202: JobOut, 409: dict}, tags=["models"])
def retry_job(request, pk: int):
    """Pull again what a failed or cancelled job was pulling: a new job (`retry_of_id`
    names the old one). 409 for a job that is still active or succeeded."""
    need(request, "backends.change")
    return Status(202, model_actions.retry(Actor.from_request(request), _job(pk)))


@api.post("/backends/{pk}/models/{path:name}/load", response={200: dict, 409: dict, 422: dict},
          tags=["models"])
def load_model(request, pk: int, name: str, payload: LoadIn | None = None):
    """Load a model (Ollama with `keep_alive`, Foundry Local, llama.cpp router mode)."""
    need(request, "backends.change")
    model_actions.load(Actor.from_request(request), _backend(request, pk), name,
                       payload.keep_alive if payload else None)
    return {"detail": f"loaded {name}"}


@api.post("/backends/{pk}/models/{path:name}/unload", response={200: dict, 409: dict,
                                                                422: dict}, tags=["models"])
def unload_model(request, pk: int, name: str):
    need(request, "backends.change")
    model_actions.unload(Actor.from_request(request), _backend(request, pk), name)
    return {"detail": f"unloaded {name}"}


@api.delete("/backends/{pk}/models/{path:name}", response={204: None, 409: dict, 422: dict},
            tags=["models"])
def delete_model(request, pk: int, name: str):
    need(request, "backends.change")
    model_actions.delete(Actor.from_request(request), _backend(request, pk), name)
    return Status(204, None)


class GpuIn(Schema):
    name: str = "GPU"
    memory_bytes: int


class PlanIn(Schema):
    model: str
    scenario: Literal["development", "staging", "production_low", "production_high",
                      "enterprise"]
    quantization: str = ""
    gpus: list[GpuIn] | None = None


class PlanOut(Schema):
    command: str
    docker_command: str
    fits: bool
    estimate_bytes: int
    per_gpu_bytes: int
    budget_bytes: int
    tensor_parallel_size: int
    warnings: list[str]


class SavedPlanIn(PlanIn):
    name: str
    backend_id: int | None = None


class SavedPlanOut(Schema):
    id: int
    name: str
    model: str
    scenario: str
    quantization: str
    gpus: list[dict]
    command: str
    docker_command: str
    fits: bool
    warnings: list[str]
    backend_id: int | None
    created_by: str
    created_at: datetime


def _plan_data(payload: PlanIn) -> dict:
    data = payload.dict()
    data["gpus"] = [dict(g) for g in payload.gpus] if payload.gpus else None
    return data


@api.post("/plans/vllm", response={200: PlanOut, 422: dict}, tags=["plans"])
def plan_vllm(request, payload: PlanIn):
    """A `vllm serve` and a `docker run` command for the model, scenario and GPUs (the
    detected ones when omitted), with the fit check. Nothing is saved."""
    need(request, "backends.view")
    return plan_actions.compute(_plan_data(payload)).as_dict()


@api.get("/plans", response=list[SavedPlanOut], tags=["plans"])
def list_plans(request):
    need(request, "backends.view")
    return list(DeploymentPlan.objects.all())


@api.post("/plans", response={201: SavedPlanOut, 422: dict}, tags=["plans"])
def save_plan(request, payload: SavedPlanIn):
    need(request, "backends.change")
    return Status(201, plan_actions.save(Actor.from_request(request), _plan_data(payload)))


@api.delete("/plans/{pk}", response={204: None}, tags=["plans"])
def delete_plan(request, pk: int):
    need(request, "backends.change")
    plan = found(DeploymentPlan.objects, "plan", pk=pk)
    plan_actions.delete(Actor.from_request(request), plan)
    return Status(204, None)


class ConfigIn(Schema):
    yaml: str
    secrets: dict[str, str] = {}


class FieldChange(Schema):
    field: str
    before: Any = None
    after: Any = None


class ConfigChange(Schema):
    action: str
    kind: str
    name: str
    fields: list[FieldChange] = []  # what the file changes in it (never a secret)


class ConfigOut(Schema):
    dry_run: bool
    changes: list[ConfigChange]


@api.get("/config/export", response={200: None}, tags=["config"])
def config_export(request):
    """Backends, agents, tools, MCP servers, alert rules and plans as one YAML file."""
    from django.http import HttpResponse

    need(request, "backends.view")
    response = HttpResponse(siteconfig.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="tanglaw-site.yaml"'
    return response


@api.post("/config/apply", response={200: ConfigOut, 422: dict}, tags=["config"])
def config_apply(request, payload: ConfigIn, dry_run: bool = False):
    """Every create/update/delete, or every error with its path (nothing changed).
    `?dry_run=1` changes nothing either way."""
    need(request, "config.apply")
    changes = siteconfig.apply(Actor.from_request(request), payload.yaml, dry_run=dry_run,
                               user=request.user, secrets=payload.secrets)
    return {"dry_run": dry_run, "changes": changes}


@api.get("/audit", response=AuditPage, tags=["audit"])
def audit_list(request, action: str = "", actor: str = "", target: str = "", since: str = "",
               until: str = "", cursor: str = "", limit: int = 50):
    need(request, "audit.view")
    if not 1 <= limit <= 500:
        raise Invalid({"limit": ["Use a limit between 1 and 500."]})
    qs, _ = filtered_events({"action": action, "actor": actor, "target": target,
                             "since": since, "until": until})
    events, next_cursor = page_of(qs, cursor, limit)
    return {"items": events, "next_cursor": next_cursor}


@api.get("/audit/verify", response=VerifyOut, tags=["audit"])
def audit_verify(request):
    need(request, "audit.view")
    result = verify_chain(Actor.from_request(request))
    return {"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad,
            "reason": result.reason}


@api.get("/audit/export", tags=["audit"], response={200: None, 422: dict})
def audit_export(request, format: Literal["csv", "jsonl"] = "jsonl", action: str = "",
                 actor: str = "", target: str = "", since: str = "", until: str = ""):
    need(request, "audit.export")
    return export_response(request, {"action": action, "actor": actor, "target": target,
                                     "since": since, "until": until}, format)

