"""One log line per request with its id (DEBUG; WARNING for a 5xx), a clear 503 when the database is gone,
input that can only fail refused at the door, and API errors always as JSON `{"code", "detail", "errors"}`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve

from apps.core.db import web_statement_timeout
from apps.core.errors import BodyTooLarge, DomainError, InvalidText, InvalidValue, NotFound, database_unavailable
from apps.core.parsers import text_is_storable

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
            # Housekeeping at DEBUG: what a request did to the business is logged by the service that did it
            # (an order in, a webhook applied); a server error stays visible.
            emit = log.warning if response.status_code >= 500 else log.debug
            emit(
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
            err = database_unavailable(exception)
            log.warning(err.code, path=request.path, error=str(exception))
            return JsonResponse(err.as_body(), status=err.status_code, headers={"Retry-After": "5"})
        return None


class WebStatementTimeoutMiddleware:
    """Each statement of a request runs at most DATABASE_WEB_STATEMENT_TIMEOUT_MS, and waits for a lock at
    most DATABASE_WEB_LOCK_TIMEOUT_MS: a request stuck behind a lock answers 503 ``statement_timeout``
    instead of holding its worker."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with web_statement_timeout(
            int(settings.DATABASE_WEB_STATEMENT_TIMEOUT_MS), lock_ms=int(settings.DATABASE_WEB_LOCK_TIMEOUT_MS)
        ):
            return self.get_response(request)


API_PREFIX = "/api/"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refusal(err: DomainError) -> JsonResponse:
    return JsonResponse(err.as_body(), status=err.status_code)


class RequestGuardMiddleware:
    """Refuses, before any view runs, what could only end in a 500 further in.

    A body over MAX_REQUEST_BODY_BYTES is 413; NUL bytes (or lone surrogates) in the path are a
    404, in the query string or in form fields a 400 ``invalid_text``: PostgreSQL stores no NUL.
    JSON bodies get the same check from the API's parser. An API path without its trailing slash
    is a 404 naming the right path, not a redirect that would drop a POST's body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self.refusal(request)
        return refused if refused is not None else self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return _refusal(BodyTooLarge(f"The body is {length} bytes; at most {limit} are accepted."))
        is_api = request.path.startswith(API_PREFIX)
        if not text_is_storable(request.path):
            if is_api:
                return _refusal(NotFound())
            raise Http404("No such page.")
        if not _storable(request.GET):
            return _refusal(InvalidText("The query string holds a NUL byte or an unpaired surrogate."))
        # Pages' forms (the API itself takes JSON only, checked by its parser).
        if not is_api and request.method == "POST" and request.content_type in _FORM_TYPES:
            try:
                form_ok = _storable(request.POST)
            except MultiPartParserError:
                return _refusal(InvalidValue("The form body is malformed."))
            if not form_ok:
                return _refusal(InvalidText("A form field holds a NUL byte or an unpaired surrogate."))
        if is_api and not request.path.endswith("/") and not _resolves(request.path):
            hint = f" API paths end with a slash: {request.path}/" if _resolves(f"{request.path}/") else ""
            return _refusal(NotFound(f"No such endpoint.{hint}"))
        return None


def _storable(fields: QueryDict) -> bool:
    return all(
        text_is_storable(key) and all(text_is_storable(value) for value in values) for key, values in fields.lists()
    )


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


# Django's own error answers under /api/, as the API's codes name them.
_STATUS_CODES = {
    400: ("bad_request", "The request is malformed."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("body_too_large", "The body is too large."),
    500: ("server_error", "The server failed to answer; the error is logged. Retry, or report it."),
}


class ApiErrorJsonMiddleware:
    """Every API answer that is not 2xx/3xx is JSON `{"code", "detail", "errors"}`, with DEBUG on too.

    DRF views already answer so; this covers what Django answers itself: unmatched routes (its
    404 page, or the technical 404 with DEBUG), an exception's 500 page, a refused request's 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith(API_PREFIX)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        data = getattr(response, "data", None)
        if isinstance(data, dict) and "code" in data and "detail" in data:
            body = data  # a DRF answer another renderer drew (the schema view's YAML)
        else:
            reason = response.reason_phrase or "Error"
            code, detail = _STATUS_CODES.get(response.status_code, (reason.lower().replace(" ", "_"), f"{reason}."))
            body = {"code": code, "detail": detail, "errors": []}
        answer = JsonResponse(body, status=response.status_code)
        for header in ("Retry-After", "Allow", "WWW-Authenticate", "X-Request-ID"):
            if header in response:
                answer[header] = response[header]
        return answer
