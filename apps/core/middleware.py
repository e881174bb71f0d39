"""One log line per request with its id, and a clear 503 when the database is gone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.errors import ServiceUnavailable

log = structlog.get_logger("stockroom.request")


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        if request.path != "/metrics":
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                user=str(getattr(request, "user", "") or ""),
            )
        return response


class DatabaseUnavailableMiddleware:
    """Pages outside the API also answer 503 with a body when PostgreSQL is unreachable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            log.warning("database_unavailable", path=request.path, error=str(exception))
            err = ServiceUnavailable()
            return JsonResponse(err.as_body(), status=err.status_code, headers={"Retry-After": "5"})
        return None
