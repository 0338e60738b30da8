"""The gateway's own ASGI handler for /v1/: Django's request and response objects and
its URL resolver, without its middleware chain.

Measured on this machine, a request through the console's full chain cost ~15 ms
before any view ran: Django's built-in middleware (sessions, CSRF, auth, messages,
security, CSP…) run their process_request/process_response through a thread hop
each under ASGI, in a thread Django makes per request, and the request_started and
request_finished signals take two more. /v1/ needs none of it — no session, no
cookie, no CSRF (a bearer key), no HTML. This handler keeps what does matter: the
allowed hosts, the body size limit, the correlation id, the security headers a JSON
API needs, disconnect handling, and an OpenAI-shaped 500 when a view raises.
console.asgi mounts it by dotted path (TANGLAW_ASGI_MOUNTS).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.urls import Resolver404, get_resolver

from gateway.errors import GatewayError

log = logging.getLogger("tanglaw.gateway")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


class GatewayHandler(ASGIHandler):
    """ASGI for the gateway's URLs (gateway.v1_urls) only."""

    urlconf = "gateway.v1_urls"

    def load_middleware(self, is_async: bool = False) -> None:
        self._middleware_chain = None  # none: see the module's docstring

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError("the gateway serves HTTP only")
        # x-tanglaw-overhead-ms counts from here, before the body is read
        scope = {**scope, "tanglaw.arrived": time.perf_counter()}
        try:
            body_file = await self.read_body(receive)
        except Exception:  # noqa: BLE001 - the client went away while sending
            return
        try:
            await self.serve(scope, receive, send, body_file)
        finally:
            body_file.close()

    async def serve(self, scope, receive, send, body_file) -> None:
        request, error = self.create_request(scope, body_file)
        if request is None:
            status = error.status_code if error is not None else 400
            await self.send_response(_error(GatewayError(
                status, "the request could not be read", code="bad_request")), send)
            return
        incoming = request.headers.get("X-Request-ID", "")
        request.correlation_id = (  # type: ignore[attr-defined]
            incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex)
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it
        except DisallowedHost:
            await self.send_response(_error(GatewayError(
                400, "this host name is not one the console answers to (ALLOWED_HOSTS)",
                code="bad_host"), request), send)
            return

        async def respond():
            response = await self.respond(request)
            try:
                await self.send_response(response, send)
            finally:
                response.close()

        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)),
                 asyncio.create_task(respond())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()  # a client that went away stops the view (and its stream)
            try:
                await task
            except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001
                if task is tasks[1] and not isinstance(exc, asyncio.CancelledError):
                    log.exception("a gateway response could not be sent")

    async def respond(self, request) -> HttpResponse:
        try:
            match = get_resolver(self.urlconf).resolve(request.path_info)
        except Resolver404:
            return _error(GatewayError(404, f"no such endpoint: {request.path}; the gateway "
                                            f"serves /v1/models, /v1/chat/completions, "
                                            f"/v1/responses, /v1/traces and /v1/metrics",
                                       code="unknown_url"), request)
        try:
            # a body over the limit is the views' 413 (gateway.views._read_body)
            response = await match.func(request, *match.args, **match.kwargs)
        except Exception:
            log.exception("the gateway failed on %s", request.path)
            response = _error(GatewayError(500, "the gateway failed on this request; the "
                                                "console's log says why",
                                           code="internal_error"), request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        response["X-Request-ID"] = request.correlation_id
        return response


def _error(exc: GatewayError, request=None) -> HttpResponse:
    response = exc.response()
    if request is not None and getattr(request, "correlation_id", None):
        response["X-Request-ID"] = request.correlation_id
    return response


application = GatewayHandler()
