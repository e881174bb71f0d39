"""Typed domain errors and the one place that turns any error into the API's one error body.

Every answer that is not 2xx is ``{"code", "detail", "errors": [...]}``: ``errors`` is always a
list (empty when there is nothing finer to say), one entry per problem, each with ``code`` and
``detail`` and either ``field`` (the input path, ``lines[0].quantity``) or ``sku`` (an order line
with its figures: ``requested``, ``available``, ``cap``). Refusals may add their own top-level
keys (``lines`` of the contract's 409, ``retry_after``, ``id``).
"""

from __future__ import annotations

from typing import Any

import structlog
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404
from psycopg import errors as pg_errors
from rest_framework import exceptions, status
from rest_framework.response import Response

log = structlog.get_logger("stockroom.api")


class DomainError(Exception):
    """A refusal the caller can act on. Subclasses set code and status; extra data rides along."""

    code: str = "domain_error"
    status_code: int = status.HTTP_400_BAD_REQUEST
    default_detail = "The request cannot be carried out."

    def __init__(self, detail: str | None = None, **data: Any) -> None:
        self.detail = detail or self.default_detail
        self.data = data
        super().__init__(self.detail)

    def as_body(self) -> dict[str, Any]:
        data = dict(self.data)
        field_errors = data.pop("errors", None)
        entries = field_entries(field_errors) if field_errors is not None else []
        entries += [_line_entry(line, self.code) for line in data.get("lines") or [] if isinstance(line, dict)]
        return {"code": self.code, "detail": self.detail, "errors": entries, **data}


class Conflict(DomainError):
    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


class NotFound(DomainError):
    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was already used with a different request body."


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"


class Forbidden(DomainError):
    """The caller may not do this (for example a token for a user with more rights than their own)."""

    code = "permission_denied"
    status_code = status.HTTP_403_FORBIDDEN


class AlreadyExists(Conflict):
    code = "already_exists"
    default_detail = "A record with this code already exists."


class InUse(Conflict):
    """A location, item or product that stock, the ledger or listings still refer to."""

    code = "in_use"
    default_detail = "This record is still in use and cannot be deleted."


class InvalidValue(DomainError):
    """A value the database refuses (out of its column's range, too long, malformed)."""

    code = "invalid"


class CredentialsRequired(InvalidValue):
    """A setting that decides where a stored secret is sent changed without the secret given again with it."""

    code = "credentials_required"
    default_detail = "This change sends the stored credentials to another address: give them again with it."


class OutboundRefusal(DomainError):
    """A server-side request the outbound rule refused (an internal or disallowed address)."""

    code = "outbound_refused"


class InvalidText(DomainError):
    code = "invalid_text"
    default_detail = "Text must not contain NUL bytes (\\u0000) or unpaired surrogates."


class InvalidJson(DomainError):
    code = "invalid_json"
    default_detail = "The body is not valid JSON."


class BodyTooLarge(DomainError):
    code = "body_too_large"
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class ServiceUnavailable(DomainError):
    code = "database_unavailable"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unreachable; nothing was changed. Retry shortly."


class StatementTimeout(DomainError):
    code = "statement_timeout"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The database did not answer in time (DATABASE_WEB_STATEMENT_TIMEOUT_MS, or DATABASE_WEB_LOCK_TIMEOUT_MS "
        "waiting for a lock); nothing was changed. Retry shortly."
    )


def database_unavailable(exc: BaseException) -> DomainError:
    """The 503 a lost or timed-out database answers with."""
    from apps.core.db import statement_timed_out

    return StatementTimeout() if statement_timed_out(exc) else ServiceUnavailable()


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
    exceptions.ValidationError: "invalid",
}


def database_refusal(exc: Exception) -> DomainError | None:
    """The refusal a constraint or a column type of PostgreSQL means for the caller, if it is one.

    Serializers check first; this is the net for what only the database knows for sure (a
    duplicate code inserted by a concurrent call, a number beyond a column's range).
    """
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    said = (getattr(diag, "message_detail", None) or getattr(diag, "message_primary", None) or "").strip()
    if isinstance(exc, IntegrityError):
        if isinstance(cause, pg_errors.UniqueViolation):
            return AlreadyExists(said or None)
        if isinstance(cause, pg_errors.ForeignKeyViolation) and "still referenced" in said:
            return InUse(f"Still in use: {said}")
        if isinstance(cause, pg_errors.ForeignKeyViolation | pg_errors.NotNullViolation | pg_errors.CheckViolation):
            constraint = getattr(diag, "constraint_name", None) or getattr(diag, "column_name", None)
            return InvalidValue(f"Refused by the rule {constraint}." if constraint else said or None)
        return None
    if isinstance(exc, DataError):
        # psycopg's own refusal of a NUL byte is a DataError too, before anything reaches the server.
        unstorable = pg_errors.CharacterNotInRepertoire | pg_errors.UntranslatableCharacter
        if "NUL" in str(exc) or isinstance(cause, unstorable):
            return InvalidText()
        return InvalidValue(f"A value is out of range or malformed: {said or exc}".rstrip("."))
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if getattr(exc, "code", None) == OutboundRefusal.code and not isinstance(exc, DomainError):
        # apps.core.outbound's OutboundRefused, or a connector's ConnectorRefused: the caller's 4xx, never a 500.
        exc = OutboundRefusal(str(exc), host=str(getattr(exc, "host", "")))
    if isinstance(exc, DatabaseError) and (refusal := database_refusal(exc)) is not None:
        # Logged: a refusal only the database caught may also be a check the code is missing.
        log.warning("database_refusal", code=refusal.code, error=str(exc))
        exc = refusal
    if isinstance(exc, DomainError):
        return Response(exc.as_body(), status=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        unavailable = database_unavailable(exc)
        log.warning(unavailable.code, error=str(exc))
        return Response(unavailable.as_body(), status=unavailable.status_code, headers={"Retry-After": "5"})
    if isinstance(exc, exceptions.NotAuthenticated):
        # In place: DRF already set its status (401, or 403 where no scheme is announced) and header.
        exc.detail = exceptions.ErrorDetail("No credentials: send 'Authorization: Token <key>'.", exc.default_code)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    # Imported here: rest_framework.views loads the API's parsers, which use these errors.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"code": code, "detail": "Invalid input.", "errors": field_entries(exc.detail)}
        if _only_duplicates(exc.get_codes()):
            # A uniqueness validator's refusal is the same conflict as the database's own.
            response.status_code = AlreadyExists.status_code
            response.data.update(code=AlreadyExists.code, detail=_first_message(exc.detail))
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        response.data = {"code": code, "detail": str(detail), "errors": []}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            response.data["retry_after"] = int(wait)
    return response


def _leaves(errors: Any) -> list[Any]:
    """The messages (or codes) of a ValidationError's nested dicts and lists, in order."""
    pending, leaves = [errors], []
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            pending.extend(reversed(node))
        else:
            leaves.append(node)
    return leaves


def _only_duplicates(codes: Any) -> bool:
    """Whether every error a ValidationError carries is a uniqueness one (code ``unique``)."""
    leaves = _leaves(codes)
    return bool(leaves) and all(leaf == "unique" for leaf in leaves)


def _first_message(errors: Any) -> str:
    leaves = _leaves(errors)
    return str(leaves[0]) if leaves else AlreadyExists.default_detail


def field_entries(errors: Any, path: str = "") -> list[dict[str, Any]]:
    """DRF's nested errors (dicts by field, lists or dicts by index) as one flat list of entries.

    ``{"lines": {0: {"quantity": ["..."]}}}`` and ``{"lines": [{"quantity": ["..."]}]}`` both give
    ``[{"field": "lines[0].quantity", "code": ..., "detail": ...}]``; errors of the whole body have
    ``field`` ``non_field_errors``.
    """
    if isinstance(errors, dict):
        entries = []
        for key, value in errors.items():
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                entries += field_entries(value, f"{path}[{key}]")
            else:
                entries += field_entries(value, f"{path}.{key}" if path else str(key))
        return entries
    if isinstance(errors, list):
        if all(not isinstance(item, dict | list) for item in errors):
            return [_field_entry(path, item) for item in errors]
        entries = []
        for index, item in enumerate(errors):
            entries += field_entries(item, f"{path}[{index}]")
        return entries
    return [_field_entry(path, errors)]


def _field_entry(path: str, message: Any) -> dict[str, Any]:
    return {
        "field": path or "non_field_errors",
        "code": str(getattr(message, "code", None) or "invalid"),
        "detail": str(message),
    }


def _line_entry(line: dict[str, Any], code: str) -> dict[str, Any]:
    figures = ", ".join(f"{name} {line[name]}" for name in ("requested", "available", "cap") if name in line)
    detail = f"{line.get('sku')}: {figures}." if figures else str(line.get("sku"))
    return {"sku": line.get("sku"), "code": code, "detail": detail, **line}
