"""Errors in OpenAI's shape, `{"error": {"message", "type", "code", "param"}}`, with the
status the OpenAI SDKs turn into their typed exceptions (401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 409 ConflictError, 422
UnprocessableEntityError, 429 RateLimitError, 5xx InternalServerError…)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

TYPES = {400: "invalid_request_error", 401: "authentication_error",
         403: "permission_error", 404: "not_found_error", 409: "conflict_error",
         413: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error", 502: "upstream_error", 503: "service_unavailable",
         504: "timeout_error"}


class GatewayError(Exception):
    """A request the gateway answers with an error; `headers` ride along (Retry-After)."""

    def __init__(self, status: int, message: str, *, code: str = "", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message,
                          "type": TYPES.get(self.status, "api_error"),
                          "code": self.code or None, "param": self.param}}

    def response(self, extra: dict[str, str] | None = None) -> HttpResponse:
        response = HttpResponse(json.dumps(self.body()), status=self.status,
                                content_type="application/json")
        for name, value in {**self.headers, **(extra or {})}.items():
            response[name] = value
        return response


def invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)
