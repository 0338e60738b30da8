"""Who may do what. The one place roles are turned into decisions.

Views, the JSON API and WebSocket consumers all ask here:
``has_perm(user, "backends.change")``, the ``@require("...")`` view decorator,
and ``get_object_for_user(request, Model, pk, write=False)``.
"""

from __future__ import annotations

from functools import wraps

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404

from console.choices import Role

_ALL = frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})
_OPERATE = frozenset({Role.ADMIN, Role.OPERATOR})

PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard.view": _ALL,
    "backends.view": _ALL,
    "backends.change": _OPERATE,
    "backends.test": _OPERATE,
    "hosts.view": _ALL,  # the fleet: hosts, their exporters' last scrapes and readings
    "hosts.change": _OPERATE,  # register, change, test and remove hosts
    "backends.discover": _OPERATE,
    "agents.view": _ALL,
    "agents.change": _OPERATE,
    "mcp.stdio": frozenset({Role.ADMIN}),  # a stdio MCP server runs a command on this host
    "chat": _OPERATE,
    "conversations.view": _ALL,
    "alerts.manage": _OPERATE,  # acknowledge alerts; rules, channels, the probe interval
    "recommendations.apply": _OPERATE,
    "audit.view": _ALL,
    "audit.export": _ALL,
    "tokens.own": _ALL,  # your own API tokens and gateway keys: create, limit, revoke
    "gateway.keys.manage": frozenset({Role.ADMIN}),  # other users' keys, and keys for them
    "aliases.view": _ALL,
    "aliases.change": _OPERATE,  # the gateway's model aliases (routing, like backends)
    "usage.view": _ALL,  # gateway usage of your own keys
    "usage.view_all": _OPERATE,  # everyone's gateway usage (per key, user, backend…)
    "traces.view": _ALL,  # traces and their spans (content only where it was kept)
    "telemetry.send": _OPERATE,  # a key's spans into /v1/traces (code-first agents)
    "users.manage": frozenset({Role.ADMIN}),
    "engines.view": _ALL,  # managed engines: state, pid, restarts, events
    "engines.log": _OPERATE,  # what an engine printed (model paths, its errors)
    # run processes on the console's machine: admins (and only allowed commands)
    "engines.manage": frozenset({Role.ADMIN}),
    "datasets.view": _ALL,  # evaluation datasets: cases, checks, versions
    "datasets.change": _OPERATE,
    "experiments.view": _ALL,  # experiments: their progress, results and exports
    "experiments.run": _OPERATE,  # start, cancel, resume, delete (their own; admins any)
    # the whole site at once, deletes included: admins
    "config.apply": frozenset({Role.ADMIN}),
}

# the write permission that guards changes to each model
WRITE_PERMS = {"console.backend": "backends.change", "agents.agent": "agents.change"}


def role_of(user) -> str | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return user.effective_role


def has_perm(user, perm: str) -> bool:
    if perm not in PERMISSIONS:
        raise KeyError(f"unknown permission {perm!r}")
    return role_of(user) in PERMISSIONS[perm]


def check(user, perm: str) -> None:
    if not has_perm(user, perm):
        raise PermissionDenied(f"your role may not do this ({perm})")


def require(perm: str):
    """View decorator: sign-in page for anonymous users, 403 for the wrong role. On an
    async view the check (it reads the session, and audits a refusal) runs in one
    sync_to_async hop, never on the event loop."""

    def decorator(view):
        if iscoroutinefunction(view):
            @wraps(view)
            async def async_wrapper(request, *args, **kwargs):
                refused = await sync_to_async(_refusal)(request, perm)
                if refused is not None:
                    return refused
                return await view(request, *args, **kwargs)

            return async_wrapper

        @wraps(view)
        def wrapper(request, *args, **kwargs):
            refused = _refusal(request, perm)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _refusal(request, perm: str) -> HttpResponseBase | None:
    """`require`'s check: the sign-in redirect for an anonymous user, PermissionDenied
    (recorded) for the wrong role, None when `perm` is granted."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not has_perm(request.user, perm):
        from console.actions.security import record_denied

        record_denied(request, perm)
        raise PermissionDenied(f"Your role may not do this ({perm}).")
    return None


def get_object_for_user(request, model, pk, *, write: bool = False):
    """Fetch an object the user may read (404 otherwise), or change (403 otherwise)."""
    obj = get_object_or_404(model.objects.for_user(request.user), pk=pk)
    label = model._meta.label_lower
    if write and not has_perm(request.user, WRITE_PERMS[label]):
        raise PermissionDenied("Your role may not change this.")
    return obj
