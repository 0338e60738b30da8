"""Request middleware: static files, correlation ids, bounded requests and the forced
first-password change.

Every middleware here runs in the mode of the handler chain, sync or async (Django's
"hybrid" middleware), so under ASGI a request reaches an async view (the chat API)
without a single thread hop, and a sync view with one: a sync-only middleware in the
chain would make Django cross between the loop and a thread at every such layer.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse
from whitenoise.middleware import WhiteNoiseMiddleware

from console.safeinput import digits

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Hybrid:
    """A middleware as `before` (may answer early) and `after`, in either mode."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def before(self, request) -> Any:
        return None

    def after(self, request, response):
        return response

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        response = self.before(request)
        if response is None:
            response = self.get_response(request)
        return self.after(request, response)

    async def __acall__(self, request):
        response = self.before(request)
        if response is None:
            response = await self.get_response(request)
        return self.after(request, response)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, able to run in an async chain (its own middleware is sync-only): a
    static file is a dictionary lookup and a file response either way."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = (self.find_file(request.path_info) if self.autorefresh
                       else self.files.get(request.path_info))
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)


class CorrelationIdMiddleware(Hybrid):
    """Tag each request with an id (X-Request-ID from a proxy, or a new one)."""

    def before(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.correlation_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex

    def after(self, request, response):
        response["X-Request-ID"] = request.correlation_id
        return response


class PasswordChangeRequiredMiddleware(Hybrid):
    """A user holding a generated one-time password must choose their own first."""

    ALLOWED = ("password_change", "logout")

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.refusal(request, getattr(request, "user", None)) or self.get_response(
            request)

    async def __acall__(self, request):
        user = None
        if hasattr(request, "auser"):
            # the session's user, loaded off the loop; kept, so a sync view or the API's
            # session auth does not load it again
            user = request.user = await request.auser()
        return self.refusal(request, user) or await self.get_response(request)

    def refusal(self, request, user):
        # request.user here comes from the session alone (bearer tokens are checked later,
        # by the API): a browser session holding a one-time password can do nothing else,
        # whether it asks for pages or for the JSON API
        if (user is not None and user.is_authenticated and user.must_change_password
                and not request.path.startswith("/static/")
                and request.path not in {reverse(n) for n in self.ALLOWED}):
            if request.path.startswith("/api/"):
                from django.http import JsonResponse

                return JsonResponse({"detail": "choose your own password first (you signed "
                                               "in with a one-time password): "
                                               + reverse("password_change")}, status=403)
            return redirect("password_change")
        return None


class BodyTooLargeMiddleware(Hybrid):
    """A request body over DATA_UPLOAD_MAX_MEMORY_SIZE: 413 saying so (JSON for the API),
    instead of Django's bare 400 page."""

    def process_exception(self, request, exception):
        from django.core.exceptions import RequestDataTooBig

        if not isinstance(exception, RequestDataTooBig):
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024
        message = f"the request body is larger than {limit:.1f} MB"
        if str(exception).startswith("an uploaded file"):  # console.uploads
            message = str(exception)
        return _too_large(request, message)


MAX_DIGITS = 19  # a 64-bit integer: the widest id or number the database stores
# query parameters that carry free text (a search may be a long number), or ids that are
# text (a trace's or span's hex id, a request id: all digits now and then), never a number
TEXT_PARAMS = frozenset({"q", "query", "search", "text", "actor", "target", "action",
                         "model", "name", "since", "until", "next", "trace", "trace_id",
                         "span", "span_id", "request", "request_id"})


def _too_large(request, message: str):
    from django.http import HttpResponse, JsonResponse

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class BoundedRequestMiddleware(Hybrid):
    """Limits a view never has to think about: the whole body (uploads included, which
    Django's own DATA_UPLOAD_MAX_MEMORY_SIZE skips) up to TANGLAW_MAX_UPLOAD_MB, and ids
    in the path or numbers in the query no wider than the database's 64-bit integers
    (a 4,000-digit id used to reach the database and fail there with a 500)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if self.is_async:  # Django would run a sync process_view in a thread
            sync_check = self.process_view

            async def process_view(request, view_func, view_args, view_kwargs):
                return sync_check(request, view_func, view_args, view_kwargs)

            self.process_view = process_view  # type: ignore[method-assign]

    def before(self, request):
        length = request.META.get("CONTENT_LENGTH") or ""
        limit = settings.TANGLAW_MAX_UPLOAD_MB * 1024 * 1024
        if digits(length) and int(length) > limit:
            return _too_large(request, f"the request body is larger than "
                                       f"{settings.TANGLAW_MAX_UPLOAD_MB} MB")
        return None

    def process_view(self, request, view_func, view_args, view_kwargs):
        from django.http import Http404, HttpResponseBadRequest, JsonResponse

        for value in [*view_args, *view_kwargs.values()]:
            if isinstance(value, int) and len(str(abs(value))) > MAX_DIGITS:
                raise Http404("no such object")
        for key, values in request.GET.lists():
            if key in TEXT_PARAMS:
                continue
            for value in values:
                number = value.strip().lstrip("+-")
                if digits(number) and len(number) > MAX_DIGITS:
                    message = f"{key}: is too large a number (at most {MAX_DIGITS} digits)"
                    if request.path.startswith("/api/"):
                        return JsonResponse({"detail": message,
                                             "errors": {key: [message.split(": ", 1)[1]]}},
                                            status=400)
                    return HttpResponseBadRequest(message, content_type="text/plain")
        return None
