"""The gateway's management in the JSON API (mounted on console's /api/): keys with their
limits and live status, model aliases, and usage (JSON and CSV).

Everyone manages their own keys (tokens.own); admins everyone's (gateway.keys.manage).
Usage: operators and admins see every request, viewers those of their own keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpResponse
from ninja import Query, Router, Schema, Status

from console.api import found, need
from console.audit import Actor
from console.models import ApiToken, Backend
from gateway import actions, budgets, stats
from gateway.models import Alias, Request

router = Router(tags=["gateway"])

Window = Literal["24h", "7d", "30d"]
GroupBy = Literal["key", "user", "agent", "backend", "model"]


class BudgetOut(Schema):
    used: int
    limit: int | None
    remaining: int | None
    percent: float | None
    resets_at: datetime


class KeyStatusOut(Schema):
    requests_this_minute: BudgetOut
    tokens_today: BudgetOut
    tokens_this_month: BudgetOut


class KeyOut(Schema):
    id: int
    name: str
    hint: str
    owner_id: int
    owner: str
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    scopes: list[str]
    allowed_models: list[str]
    rpm: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None
    max_streams: int | None
    log_content: bool
    status: KeyStatusOut


class KeyCreatedOut(KeyOut):
    secret: str  # the key itself: shown this once, never stored


class KeyIn(Schema):
    name: str
    owner_id: int | None = None  # default: you; admins may name another user
    expires_at: datetime | None = None
    scopes: list[str] = []  # empty: everything the owner's role allows
    allowed_models: list[str] = []  # shell patterns; empty: every model and agent
    rpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    max_streams: int | None = None
    log_content: bool = False  # keep prompts and replies in the spans this key sends


class KeyPatch(Schema):
    name: str | None = None
    expires_at: datetime | None = None
    scopes: list[str] | None = None
    allowed_models: list[str] | None = None
    rpm: int | None = None  # null removes the limit
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    max_streams: int | None = None
    log_content: bool | None = None


def key_state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expired else "active"


def key_out(token: ApiToken, status: budgets.Status) -> dict[str, Any]:
    return {"id": token.pk, "name": token.name, "hint": token.hint, "owner_id": token.user_id,
            "owner": token.user.username, "state": key_state(token),
            "created_at": token.created_at, "last_used_at": token.last_used_at,
            "expires_at": token.expires_at, "revoked_at": token.revoked_at,
            "scopes": list(token.scopes), "allowed_models": list(token.allowed_models),
            "rpm": token.rpm, "tokens_per_day": token.tokens_per_day,
            "tokens_per_month": token.tokens_per_month, "max_streams": token.max_streams,
            "log_content": token.log_content, "status": status.as_dict()}


def _key(request, pk: int) -> ApiToken:
    return found(ApiToken.objects.for_user(request.user).select_related("user"), "key", pk=pk)


def _with_status(token: ApiToken) -> dict[str, Any]:
    return key_out(token, budgets.statuses([token])[token.pk])


@router.get("/gateway/keys", response=list[KeyOut])
def list_keys(request, revoked: bool = False, owner_id: int | None = None):
    """Your keys (an admin's: everyone's), newest first; `revoked=true` lists revoked
    ones too. Each with its live status: requests this minute, tokens today and this
    month, what remains and when it resets."""
    need(request, "tokens.own")
    tokens = ApiToken.objects.for_user(request.user).select_related("user")
    if not revoked:
        tokens = tokens.filter(revoked_at__isnull=True)
    if owner_id is not None:
        tokens = tokens.filter(user_id=owner_id)
    listed = list(tokens[:1000])
    status = budgets.statuses(listed)
    return [key_out(t, status[t.pk]) for t in listed]


@router.post("/gateway/keys", response={201: KeyCreatedOut, 403: dict, 422: dict})
def create_key(request, payload: KeyIn):
    """A new key; its value is in `secret`, this once."""
    need(request, "tokens.own")
    data = payload.dict()
    owner = data.pop("owner_id")
    if owner is not None and owner != request.user.pk:
        need(request, "gateway.keys.manage")
    token, raw = actions.create_key(Actor.from_request(request), request.user,
                                    {**data, "owner": owner})
    return Status(201, {**_with_status(_key(request, token.pk)), "secret": raw})


@router.get("/gateway/keys/{pk}", response=KeyOut)
def get_key(request, pk: int):
    need(request, "tokens.own")
    return _with_status(_key(request, pk))


@router.patch("/gateway/keys/{pk}", response={200: KeyOut, 409: dict, 422: dict})
def patch_key(request, pk: int, payload: KeyPatch):
    """Change a key's name, expiry, scopes, models or limits; send only what changes
    (`null` removes a limit or the expiry)."""
    need(request, "tokens.own")
    token = actions.update_key(Actor.from_request(request), _key(request, pk),
                               payload.dict(exclude_unset=True))
    return _with_status(token)


@router.delete("/gateway/keys/{pk}", response={204: None})
def revoke_key(request, pk: int):
    """Revoke the key: refused by the gateway at once, kept in the list as revoked."""
    need(request, "tokens.own")
    actions.revoke_key(Actor.from_request(request), _key(request, pk))
    return Status(204, None)


# -- aliases ---------------------------------------------------------------------


class TargetIn(Schema):
    backend_id: int
    model: str


class TargetOut(TargetIn):
    backend: str
    enabled: bool


class AliasOut(Schema):
    id: int
    name: str
    description: str
    targets: list[TargetOut]
    created_at: datetime
    updated_at: datetime


class AliasIn(Schema):
    name: str
    description: str = ""
    targets: list[TargetIn]


class AliasPatch(Schema):
    name: str | None = None
    description: str | None = None
    targets: list[TargetIn] | None = None


def alias_rows(aliases: list[Alias]) -> list[dict[str, Any]]:
    """Aliases with each target's backend named (one query for all their backends)."""
    ids = {t["backend"] for a in aliases for t in a.targets}
    backends = {b.pk: b for b in Backend.objects.filter(pk__in=ids).only("name", "enabled")}
    out = []
    for a in aliases:
        targets = []
        for t in a.targets:
            backend = backends.get(t["backend"])
            targets.append({"backend_id": t["backend"], "model": t["model"],
                            "backend": backend.name if backend else f"deleted backend "
                                                                     f"{t['backend']}",
                            "enabled": bool(backend and backend.enabled)})
        out.append({"id": a.pk, "name": a.name, "description": a.description,
                    "targets": targets, "created_at": a.created_at,
                    "updated_at": a.updated_at})
    return out


def _alias(pk: int) -> Alias:
    return found(Alias.objects, "alias", pk=pk)


def _alias_data(payload: Schema, **kwargs) -> dict[str, Any]:
    data = payload.dict(**kwargs)
    if data.get("targets") is not None:
        data["targets"] = [dict(t) for t in data["targets"]]
    return data


@router.get("/gateway/aliases", response=list[AliasOut])
def list_aliases(request):
    """Model names that stand for an ordered chain of backend models: the first that
    answers serves, the next ones are its fallbacks."""
    need(request, "aliases.view")
    return alias_rows(list(Alias.objects.all()))


@router.post("/gateway/aliases", response={201: AliasOut, 422: dict})
def create_alias(request, payload: AliasIn):
    need(request, "aliases.change")
    alias = actions.create_alias(Actor.from_request(request), _alias_data(payload))
    return Status(201, alias_rows([alias])[0])


@router.get("/gateway/aliases/{pk}", response=AliasOut)
def get_alias(request, pk: int):
    need(request, "aliases.view")
    return alias_rows([_alias(pk)])[0]


@router.patch("/gateway/aliases/{pk}", response={200: AliasOut, 422: dict})
def patch_alias(request, pk: int, payload: AliasPatch):
    need(request, "aliases.change")
    alias = actions.update_alias(Actor.from_request(request), _alias(pk),
                                 _alias_data(payload, exclude_unset=True))
    return alias_rows([alias])[0]


@router.delete("/gateway/aliases/{pk}", response={204: None})
def delete_alias(request, pk: int):
    need(request, "aliases.change")
    actions.delete_alias(Actor.from_request(request), _alias(pk))
    return Status(204, None)


# -- usage -----------------------------------------------------------------------


class UsageGroupOut(Schema):
    key: str | None  # the key, user, agent or backend id, or the model name
    label: str
    detail: str  # a key's owner
    requests: int
    errors: int  # answered with a status of 400 or more
    limited: int  # of which refused by a key's limit (429)
    error_rate: float | None
    tokens_in: int
    tokens_out: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    status: KeyStatusOut | None = None  # group=key: the key's budgets now


class UsageLineOut(Schema):
    label: str
    requests: list[int]


class UsageSeriesOut(Schema):
    step: Literal["hour", "day"]
    ts: list[int]  # each bucket's start, unix seconds
    requests: list[int]
    errors: list[int]
    limited: list[int]
    tokens_in: list[int]
    tokens_out: list[int]
    ttft_p95_ms: list[float | None]
    by_group: list[UsageLineOut]  # the busiest groups' requests, the rest as one line


class UsageOut(Schema):
    window: str
    group: str
    start: datetime
    end: datetime
    totals: UsageGroupOut
    groups: list[UsageGroupOut]
    series: UsageSeriesOut


def usage_report(user, window: str, group: str,
                 backends: list[int] | None = None) -> dict[str, Any]:
    """The usage `user` may see (pages and API alike), with the keys' budgets now;
    `backends`: only requests served by these (a fleet host's, say)."""
    rows = Request.objects.for_user(user)
    if backends:
        rows = rows.filter(backend_id__in=backends)
    data = stats.report(rows, window, group)
    if group == "key":
        ids = [int(g["key"]) for g in data["groups"] if g["key"] is not None]
        tokens = list(ApiToken.objects.for_user(user).filter(pk__in=ids))
        status = budgets.statuses(tokens)
        for g in data["groups"]:
            found_status = status.get(int(g["key"])) if g["key"] is not None else None
            g["status"] = found_status.as_dict() if found_status else None
            g["budget"] = found_status
    return data


@router.get("/gateway/usage", response=UsageOut)
def usage(request, window: Window = "24h", group: GroupBy = "key",
          backend: list[int] = Query(default=[])):  # noqa: B008 - ninja's way
    """Requests, errors, tokens in and out and TTFT p50/p95 per key, user, agent,
    backend or model over the window, busiest first, with the series for charts (hourly
    buckets for 24h and 7d, daily for 30d, in the budget time zone). `backend` (repeat
    it): only what these backends served, e.g. the backends on one fleet host."""
    need(request, "usage.view")
    return usage_report(request.user, window, group, backend[:200])


@router.get("/gateway/usage.csv", response={200: None})
def usage_csv(request, window: Window = "24h", group: GroupBy = "key",
              backend: list[int] = Query(default=[])):  # noqa: B008 - ninja's way
    """The same groups as CSV (one row per group)."""
    need(request, "usage.view")
    data = usage_report(request.user, window, group, backend[:200])
    response = HttpResponse(stats.as_csv(data), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="gateway-usage-{window}-{group}.csv"'
    return response
