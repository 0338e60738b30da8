"""The gateway's pages: keys (create, limit, revoke; the new key shown once with how to
call /v1 with it), model aliases, and usage with charts and a CSV export."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid, Refused
from console.audit import Actor
from console.models import ApiToken, Backend, ModelRole, User
from console.permissions import has_perm, require
from console.safeinput import small_int
from gateway import actions, budgets, stats, targets
from gateway.actions import MAX_TARGETS
from gateway.api import alias_rows, key_state, usage_report
from gateway.forms import AliasForm, KeyForm, backend_choices, target_rows
from gateway.models import Alias, Request


def _owners(user):
    """Whom the user may create keys for: anyone active (admins), else only themselves."""
    if has_perm(user, "gateway.keys.manage"):
        return User.objects.filter(is_active=True).order_by("username")
    return None


def _visible_keys(user) -> dict[str, Any]:
    tokens = list(ApiToken.objects.for_user(user).filter(revoked_at__isnull=True)
                  .select_related("user"))
    status = budgets.statuses(tokens)
    return {"keys": [{"token": t, "state": key_state(t), "status": status[t.pk]}
                     for t in tokens],
            "revoked": ApiToken.objects.for_user(user).filter(revoked_at__isnull=False)
            .select_related("user").order_by("-revoked_at")[:20]}


def _example_model(token: ApiToken) -> str:
    """A model name the new key may call, for its snippets."""
    literal = [p for p in token.allowed_models if not set(p) & set("*?[")]
    if literal:
        return literal[0]
    table = targets.table()
    names = [*table.aliases, *(f"agent/{slug}" for slug in table.agents),
             *(f"{name}/<model>" for name in table.backends)]
    allowed = [n for n in names if not token.allowed_models or any(
        fnmatch.fnmatchcase(n, p) for p in token.allowed_models)]
    return (allowed or names or ["<backend>/<model>"])[0]


@require("tokens.own")
@require_http_methods(["GET", "POST"])
@never_cache  # shows a new key once: no browser or proxy may keep the page
def keys(request):
    owners = _owners(request.user)
    initial = {"owner": request.user.pk}
    form, created, raw = KeyForm(owners=owners, initial=initial), None, None
    if request.method == "POST":
        form = KeyForm(request.POST, owners=owners, initial=initial)
        if form.is_valid():
            try:
                created, raw = actions.create_key(Actor.from_request(request), request.user,
                                                  form.data_for_action())
            except Invalid as exc:
                form.show(exc)
            else:
                form = KeyForm(owners=owners, initial=initial)
    return render(request, "gateway/keys.html", {
        **_visible_keys(request.user), "form": form, "created": created, "raw": raw,
        "example_model": _example_model(created) if created else "",
        "base_url": request.build_absolute_uri("/v1"),
        "budget_tz": settings.TANGLAW_GATEWAY_BUDGET_TZ,
    }, status=400 if form.errors else 200)


@require("tokens.own")
@require_http_methods(["GET", "POST"])
def key_edit(request, pk: int):
    token = get_object_or_404(ApiToken.objects.for_user(request.user).select_related("user"),
                              pk=pk, revoked_at__isnull=True)
    form = KeyForm(token=token)
    if request.method == "POST":
        form = KeyForm(request.POST, token=token)
        if form.is_valid():
            try:
                actions.update_key(Actor.from_request(request), token, form.data_for_action())
            except Invalid as exc:
                form.show(exc)
            except Refused as exc:
                messages.error(request, str(exc))
                return redirect("gateway_keys")
            else:
                messages.success(request, f"Saved the limits of {token.name}.")
                return redirect("gateway_keys")
    return render(request, "gateway/key_form.html", {
        "form": form, "token": token, "budget_tz": settings.TANGLAW_GATEWAY_BUDGET_TZ,
    }, status=400 if form.errors else 200)


@require("tokens.own")
@require_POST
def key_revoke(request, pk: int):
    token = get_object_or_404(ApiToken.objects.for_user(request.user).select_related("user"),
                              pk=pk)
    actions.revoke_key(Actor.from_request(request), token)
    messages.success(request, f"Revoked {token.name}: the gateway refuses it from now on.")
    return redirect("gateway_keys")


# -- aliases ---------------------------------------------------------------------


def _role_aliases(defined: set[str]) -> list[dict[str, Any]]:
    """The aliases the site's model roles give (`default`, `small`) where no alias of that
    name overrides them."""
    out = []
    for name, role in targets.ROLE_ALIASES.items():
        if name in defined:
            continue
        chain = [f"{r.backend.name}/{r.model}" for r in ModelRole.objects.filter(
            role=role, backend__enabled=True).select_related("backend")
            .order_by("backend__name", "model")]
        if chain:
            out.append({"name": name, "role": role, "targets": chain})
    return out


@require("aliases.view")
def aliases(request):
    rows = alias_rows(list(Alias.objects.all()))
    return render(request, "gateway/aliases.html", {
        "aliases": rows, "role_aliases": _role_aliases({a["name"] for a in rows})})


def _alias_page(request, alias: Alias | None, form: AliasForm, rows: list[dict[str, Any]],
                errors: dict[str, list[str]] | None = None, status: int = 200):
    backends = backend_choices()
    stored = import_string(settings.TANGLAW_STORED_MODELS)([pk for pk, _ in backends])
    known = sorted({m["id"] for models in stored.values() for m in models
                    if isinstance(m, dict) and m.get("id")})
    count = min(MAX_TARGETS, max(3, len(rows) + 2))
    shown = [{"n": n, **(rows[n] if n < len(rows) else {"backend_id": "", "model": ""})}
             for n in range(count)]
    return render(request, "gateway/alias_form.html", {
        "alias": alias, "form": form, "rows": shown, "max_targets": MAX_TARGETS,
        "backends": backends, "known_models": known, "errors": errors or {}}, status=status)


@require("aliases.change")
@require_http_methods(["GET", "POST"])
def alias_form(request, pk: int | None = None):
    alias = get_object_or_404(Alias, pk=pk) if pk is not None else None
    if request.method == "GET":
        initial = {"name": alias.name, "description": alias.description} if alias else None
        rows = [{"backend_id": t["backend"], "model": t["model"]}
                for t in (alias.targets if alias else [])]
        return _alias_page(request, alias, AliasForm(initial=initial), rows)
    form = AliasForm(request.POST)
    rows = target_rows(request.POST)
    if not form.is_valid():
        return _alias_page(request, alias, form, rows, status=400)
    data = {**form.cleaned_data, "targets": rows}
    try:
        if alias is None:
            saved = actions.create_alias(Actor.from_request(request), data)
        else:
            saved = actions.update_alias(Actor.from_request(request), alias, data)
    except Invalid as exc:
        for field in ("name", "description"):
            if field in exc.errors:
                form.add_error(field, " ".join(exc.errors[field]))
        return _alias_page(request, alias, form, rows, exc.errors, status=400)
    messages.success(request, f"Saved the alias {saved.name}: clients may ask for "
                              f"model “{saved.name}” now.")
    return redirect("gateway_aliases")


@require("aliases.change")
@require_POST
def alias_delete(request, pk: int):
    alias = get_object_or_404(Alias, pk=pk)
    actions.delete_alias(Actor.from_request(request), alias)
    messages.success(request, f"Deleted the alias {alias.name}.")
    return redirect("gateway_aliases")


# -- usage -----------------------------------------------------------------------

WINDOW_LABELS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}


@require("usage.view")
def usage(request):
    window = request.GET.get("window", "24h")
    window = window if window in stats.WINDOWS else "24h"
    group = request.GET.get("group", "key")
    group = group if group in stats.GROUPS else "key"
    wanted = [pk for v in request.GET.getlist("backend")[:200]
              if (pk := small_int(v)) is not None]
    only = list(Backend.objects.filter(pk__in=wanted).order_by("name")) if wanted else []
    data = usage_report(request.user, window, group, [b.pk for b in only] or None)
    keep = "".join(f"&backend={b.pk}" for b in only)  # the filter follows every link
    query = f"window={window}&group={group}{keep}"
    context = {
        "data": data, "window": window, "group": group, "windows": WINDOW_LABELS.items(),
        "window_label": WINDOW_LABELS[window], "base_url": request.build_absolute_uri("/v1"),
        "groups": stats.GROUP_LABELS, "group_label": stats.GROUP_LABELS[group],
        "csv_url": f"{reverse('api:usage_csv')}?{query}", "keep": keep, "only": only,
        "all_usage": has_perm(request.user, "usage.view_all"),
        "has_keys": ApiToken.objects.filter(user=request.user,
                                            revoked_at__isnull=True).exists(),
        # the charts' series travel in an attribute: htmx drops <script> elements (even
        # JSON ones) from what it swaps in, and autoescaping keeps the attribute intact
        "chart_json": json.dumps(data["series"]), "step": data["series"]["step"],
    }
    if request.htmx:
        return render(request, "gateway/partials/usage_body.html", context)
    # one request looked up by the x-request-id its answer carried (a trace links here)
    wanted = request.GET.get("request", "").strip()[:40]
    context["request_id"] = wanted
    context["found"] = list(Request.objects.for_user(request.user).filter(
        request_id=wanted).select_related("token", "agent", "backend")[:20]) if wanted else []
    return render(request, "gateway/usage.html", context)
