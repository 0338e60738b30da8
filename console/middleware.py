"""Request middleware: correlation ids and the forced first-password change."""

from __future__ import annotations

import re
import uuid

from django.shortcuts import redirect
from django.urls import reverse

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CorrelationIdMiddleware:
    """Tag each request with an id (X-Request-ID from a proxy, or a new one)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.correlation_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.correlation_id
        return response


class PasswordChangeRequiredMiddleware:
    """A user holding a generated one-time password must choose their own first."""

    ALLOWED = ("password_change", "logout")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (user is not None and user.is_authenticated and user.must_change_password
                and not request.path.startswith(("/static/", "/api/"))
                and request.path not in {reverse(n) for n in self.ALLOWED}):
            return redirect("password_change")
        return self.get_response(request)


class BodyTooLargeMiddleware:
    """A request body over DATA_UPLOAD_MAX_MEMORY_SIZE: 413 saying so (JSON for the API),
    instead of Django's bare 400 page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.conf import settings
        from django.core.exceptions import RequestDataTooBig
        from django.http import HttpResponse, JsonResponse

        if not isinstance(exception, RequestDataTooBig):
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024
        message = f"the request body is larger than {limit:.1f} MB"
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=413)
        return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
