"""WebSocket authentication shared by every consumer: session cookie or bearer token.

Browsers cannot set an Authorization header on a WebSocket, so a bearer-token
connection needs no origin check; a cookie connection must come from this
console's own origin, scheme, host and port (cross-site WebSocket hijacking).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
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


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_tuple(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None when unparsable."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _matches(origin: tuple[str, str, int], allowed: str) -> bool:
    wildcard = "://*." in allowed
    want = _origin_tuple(allowed.replace("://*.", "://", 1) if wildcard else allowed)
    if want is None:
        return False
    if wildcard:
        return (origin[0], origin[2]) == (want[0], want[2]) and (
            origin[1] == want[1] or origin[1].endswith("." + want[1]))
    return origin == want


def origin_allowed(scope) -> bool:
    """A cookie-authenticated socket must come from a page of this console: its Origin
    must equal, scheme, host and port, the origin the socket was opened on (the Host
    header, itself an allowed host) or one of CSRF_TRUSTED_ORIGINS — the rule Django's
    CSRF check applies to HTTP. Comparing host names alone let a page on another port of
    the same host ride a signed-in user's cookie."""
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    origin_header = host_header = ""
    for name, value in scope.get("headers") or []:
        if name == b"origin":
            origin_header = value.decode("latin1")
        elif name == b"host":
            host_header = value.decode("latin1")
    origin = _origin_tuple(origin_header)
    if origin is None:  # absent, "null" (sandboxed frames, file://) or not http(s)
        return False
    secure = scope.get("scheme") in ("wss", "https")
    own = f"{'https' if secure else 'http'}://{host_header.strip()}"
    domain, _ = split_domain_port(host_header.strip().lower())
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if host_header and domain and validate_host(domain, allowed_hosts) and _matches(origin,
                                                                                 own):
        return True
    return any(_matches(origin, trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


class OriginCheck:
    def __init__(self, inner):
        self.inner = inner
        self.denied = WebsocketDenier.as_asgi()

    async def __call__(self, scope, receive, send):
        if bearer_token(scope) or origin_allowed(scope):
            return await self.inner(scope, receive, send)
        return await self.denied(scope, receive, send)


def websocket_stack(inner):
    return OriginCheck(AuthMiddlewareStack(BearerAuthMiddleware(inner)))


def session_user(scope):
    """Who is on the socket now (sync): logged out, deactivated, password changed, or a
    one-time-password session → None."""
    token = scope.get("auth_token")
    if token:
        from console.actions.users import user_for_token

        return user_for_token(token)
    session: SessionBase | None = scope.get("session")
    if session is None or not session.session_key:
        return None
    from types import SimpleNamespace

    from django.conf import settings
    from django.contrib.auth import get_user

    fresh = import_string(settings.SESSION_ENGINE + ".SessionStore")(session.session_key)
    user = get_user(SimpleNamespace(session=fresh))  # type: ignore[arg-type]
    # a session still holding a one-time password may only go and change it
    return user if user.is_authenticated and user.is_active and not getattr(
        user, "must_change_password", False) else None


async def current_user(scope):
    """`session_user` from a consumer, in the connection's own thread."""
    return await database_sync_to_async(session_user)(scope)


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
    accept: Any
    socket_slot: str | None
    channel_name: str
    send: Any
    close: Any

    async def take_socket_slot(self, user) -> bool:
        """Accept the socket within the user's cap on open sockets
        (TANGLAW_MAX_SOCKETS_PER_USER), or accept it only to say why and close it."""
        from asgiref.sync import sync_to_async

        from console import limits

        self.socket_slot = await sync_to_async(limits.take_socket, thread_sensitive=False)(
            user.pk)
        await self.accept()
        if self.socket_slot is None:
            import json

            from django.conf import settings

            await self.send(text_data=json.dumps({
                "type": "error", "code": "too_many_sockets",
                "message": f"you have {settings.TANGLAW_MAX_SOCKETS_PER_USER} connections "
                           f"open already; close a tab and reload"}))
            await self.close(code=4429)
            return False
        return True

    async def give_socket_slot(self) -> None:
        from asgiref.sync import sync_to_async

        from console import limits

        slot, self.socket_slot = getattr(self, "socket_slot", None), None
        await sync_to_async(limits.give_socket, thread_sensitive=False)(slot)

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
        finally:
            # however the consumer ended (a handler that raised, a shutdown that never
            # reached disconnect), its socket slot goes back
            give = getattr(self, "give_socket_slot", None)
            if give is not None:
                await give()

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=1012)  # type: ignore[attr-defined]
