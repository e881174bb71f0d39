"""Idempotent mutating calls: a replay returns the first answer, another body with the same key is 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from apps.core.errors import DomainError, IdempotencyKeyReused, InvalidIdempotencyKey
from apps.core.models import IdempotencyRecord

MAX_KEY_LENGTH = 200


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_call(
    *, scope: str, key: str, fingerprint: str, handler: Callable[[], tuple[int, Any]]
) -> tuple[int, Any, bool]:
    """Run ``handler`` once per (scope, key); returns (status, body, replayed).

    The handler's writes and the record commit together, so a crash leaves neither.
    Concurrent calls with the same key wait on a transaction-level advisory lock.
    Domain refusals (4xx) are remembered too, so a replay is refused the same way.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"Idempotency key must be 1 to {MAX_KEY_LENGTH} characters.")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{scope}\x1f{key}"])
        existing = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused(key=key)
            return existing.status_code, existing.response_body, True
        try:
            with transaction.atomic():
                status_code, body = handler()
        except DomainError as err:
            status_code, body = err.status_code, err.as_body()
        IdempotencyRecord.objects.create(
            scope=scope, key=key, request_hash=fingerprint, status_code=status_code, response_body=body
        )
        return status_code, body, False
