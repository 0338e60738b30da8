"""WebSocket authentication shared by every consumer: session cookie or bearer token.

Browsers cannot set an Authorization header on a WebSocket, so a bearer-token
connection needs no origin check; a cookie connection must come from an
allowed host (cross-site WebSocket hijacking).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

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


def user_group(user_id: int) -> str:
    """The channel-layer group every socket of one user joins."""
    return f"user.{user_id}"


def revoke_sockets(user_id: int, reason: str, code: int = 4401) -> None:
    """Close every open socket of a user now (logout, password change, deactivation, role
    change), on every worker, once the change is committed. Each consumer also re-checks
    on every message; this closes idle sockets too."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import transaction

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "session.revoked", "reason": reason, "code": code}
    transaction.on_commit(lambda: async_to_sync(layer.group_send)(user_group(user_id),
                                                                 message))


class RevocableMixin:
    """For consumers: join the user's group; close at once when the user is revoked."""

    # provided by AsyncWebsocketConsumer, which this is mixed into
    channel_layer: Any
    channel_name: str
    send: Any
    close: Any

    async def join_user_group(self, user) -> None:
        self.user_group = user_group(user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)

    async def leave_user_group(self) -> None:
        group = getattr(self, "user_group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def session_revoked(self, event) -> None:
        import json

        with contextlib.suppress(Exception):
            await self.send(text_data=json.dumps({
                "type": "error", "code": "unauthenticated" if event["code"] == 4401
                else "forbidden", "message": event["reason"]}))
        await self.close(code=event["code"])


class GracefulMixin:
    """For consumers: when the server stops, Daphne cancels every application and waits
    for them all — but only until the first one ends *with* the cancellation. So each
    consumer runs its `shutdown()` and then returns normally, and the slowest (a chat
    saving its partial reply) is waited for."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        except asyncio.CancelledError:
            await self.shutdown()

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=1012)  # type: ignore[attr-defined]
