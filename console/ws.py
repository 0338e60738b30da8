"""WebSocket authentication shared by every consumer: session cookie or bearer token.

Browsers cannot set an Authorization header on a WebSocket, so a bearer-token
connection needs no origin check; a cookie connection must come from an
allowed host (cross-site WebSocket hijacking).
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack, get_user
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.sessions.backends.base import SessionBase
from django.utils.module_loading import import_string


def bearer_token(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            raw = value.decode("latin1")
            if raw.lower().startswith("bearer "):
                return raw[7:].strip()
    return ""


class BearerAuthMiddleware:
    """Sets scope["user"] from `Authorization: Bearer tgl_…` (scripts)."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = bearer_token(scope)
        if token:
            from console.actions.users import user_for_token

            user = await database_sync_to_async(user_for_token)(token)
            scope = {**scope, "auth_token": token}
            if user is not None:
                scope["user"] = user
        return await self.inner(scope, receive, send)


class OriginCheck:
    def __init__(self, inner):
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope, receive, send):
        app = self.inner if bearer_token(scope) else self.checked
        return await app(scope, receive, send)


def websocket_stack(inner):
    return OriginCheck(AuthMiddlewareStack(BearerAuthMiddleware(inner)))


async def current_user(scope):
    """Re-check who is on the socket now: logged out, deactivated, password changed → None."""
    token = scope.get("auth_token")
    if token:
        from console.actions.users import user_for_token

        return await database_sync_to_async(user_for_token)(token)
    session: SessionBase | None = scope.get("session")
    if session is None or not session.session_key:
        return None
    from django.conf import settings

    fresh = import_string(settings.SESSION_ENGINE + ".SessionStore")(session.session_key)
    user = await get_user({"session": fresh})
    return user if user.is_authenticated and user.is_active else None
