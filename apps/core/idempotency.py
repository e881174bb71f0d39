"""Idempotent mutating calls: a replay returns the first answer, another body with the same key is 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from apps.core.db import prepared_cursor
from apps.core.errors import DomainError, IdempotencyKeyReused, InvalidIdempotencyKey
from apps.core.models import IdempotencyRecord

MAX_KEY_LENGTH = 200

# ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit or abort,
# so two racing calls are serialised by the unique constraint itself, with no extra lock.
_CLAIM = """
INSERT INTO core_idempotencyrecord (scope, key, request_hash, status_code, response_body, created_at)
VALUES (%s::varchar, %s::varchar, %s::varchar, %s::int, %s::jsonb, now())
ON CONFLICT (scope, key) DO NOTHING
RETURNING id
"""


class _AlreadyAnswered(Exception):
    """The key was recorded by another call: undo this one's work and replay that answer."""


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim(scope: str, key: str, fingerprint: str, status_code: int, body: Any) -> bool:
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM, [scope, key, fingerprint, status_code, json.dumps(body, cls=DjangoJSONEncoder)])
        return cursor.fetchone() is not None


def idempotent_call(
    *, scope: str, key: str, fingerprint: str, handler: Callable[[], tuple[int, Any]]
) -> tuple[int, Any, bool]:
    """Run ``handler`` once per (scope, key); returns (status, body, replayed).

    The handler's writes and the record commit together, so a crash leaves neither. The
    record is claimed after the work, in the same transaction: the common first call costs
    one statement. A replay (rare) runs the handler again, finds the key taken, rolls its
    work back and answers what was recorded. Domain refusals (4xx) are recorded too, so a
    replay is refused the same way.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"Idempotency key must be 1 to {MAX_KEY_LENGTH} characters.")
    try:
        with transaction.atomic():
            status_code, body = handler()
            if not _claim(scope, key, fingerprint, status_code, body):
                raise _AlreadyAnswered
        return status_code, body, False
    except _AlreadyAnswered:
        pass
    except DomainError as err:
        # The work was rolled back; remember the refusal unless another call answered first.
        status_code, body = err.status_code, err.as_body()
        with transaction.atomic():
            if _claim(scope, key, fingerprint, status_code, body):
                return status_code, body, False
    existing = IdempotencyRecord.objects.get(scope=scope, key=key)
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(key=key)
    return existing.status_code, existing.response_body, True
