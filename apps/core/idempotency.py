"""Idempotent mutating calls: a replay returns the first answer, another body with the same key is 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction

from apps.core.db import prepared_cursor
from apps.core.errors import DomainError, IdempotencyKeyReused, InvalidIdempotencyKey
from apps.core.models import IdempotencyRecord
from apps.core.parsers import text_is_storable

MAX_KEY_LENGTH = 200

# ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit or abort,
# so two racing calls are serialised by the unique constraint itself, with no extra lock.
_CLAIM = """
INSERT INTO core_idempotencyrecord (scope, key, request_hash, status_code, response_body, created_at)
VALUES (%s::varchar, %s::varchar, %s::varchar, %s::int, %s::jsonb, now())
ON CONFLICT (scope, key) DO NOTHING
RETURNING id
"""


# The same record inside a writer's own statement, as a CTE over ``{source}`` (one row when the
# work was done). No ON CONFLICT: a taken key aborts the whole statement (IntegrityError on
# idempotency_unique_scope_key), so the work and its answer commit together or not at all.
CLAIM_IN_STATEMENT = """
INSERT INTO core_idempotencyrecord (scope, key, request_hash, status_code, response_body, created_at)
SELECT %(claim_scope)s::varchar, %(claim_key)s::varchar, %(claim_hash)s::varchar, %(claim_status)s::int,
       %(claim_body)s::jsonb, now()
  FROM {source}
 WHERE %(claim_given)s::bool
RETURNING id
"""
NO_CLAIM_PARAMS: dict[str, Any] = {
    "claim_given": False,
    "claim_scope": None,
    "claim_key": None,
    "claim_hash": None,
    "claim_status": None,
    "claim_body": None,
}


class KeyTaken(Exception):
    """Another call holds the key: undo this call's work (nothing of it may stay) and replay that answer."""


@dataclass
class IdempotentAnswer:
    """The answer a service records under the caller's key, atomically with its own writes.

    ``render`` turns the service's result into (status code, body). A service records it either
    with ``record`` in its transaction, or inside its own single statement with
    ``CLAIM_IN_STATEMENT`` and ``statement_params`` (one round trip for work and answer).
    """

    scope: str
    key: str
    fingerprint: str
    render: Callable[[Any], tuple[int, Any]]
    recorded: tuple[int, Any] | None = None

    def statement_params(self, result: Any) -> dict[str, Any]:
        status_code, body = self.recorded = self.render(result)
        return {
            "claim_given": True,
            "claim_scope": self.scope,
            "claim_key": self.key,
            "claim_hash": self.fingerprint,
            "claim_status": status_code,
            "claim_body": json.dumps(body, cls=DjangoJSONEncoder),
        }

    def record(self, result: Any) -> None:
        """In the service's transaction; KeyTaken (roll back) when another call holds the key."""
        status_code, body = self.render(result)
        if not _claim(self.scope, self.key, self.fingerprint, status_code, body):
            raise KeyTaken
        self.recorded = (status_code, body)


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
    one statement. A replay (rare) runs the handler again, finds the key taken (or fails
    where the first call did not), rolls its work back and answers what was recorded.
    Domain refusals (4xx) are recorded too, so a replay is refused the same way.
    """
    _check_key(key)
    try:
        with transaction.atomic():
            status_code, body = handler()
            if not _claim(scope, key, fingerprint, status_code, body):
                raise KeyTaken
        return status_code, body, False
    except KeyTaken:
        pass
    except DomainError as err:
        return _refusal(scope, key, fingerprint, err)
    except Exception:
        # A replay can fail where the first call succeeded (the record it created now exists,
        # the one it deleted is gone): the key's answer stands; without one, the error does.
        if not IdempotencyRecord.objects.filter(scope=scope, key=key).exists():
            raise
    return _replay(scope, key, fingerprint)


def idempotent_service_call(
    *, scope: str, key: str, fingerprint: str, render: Callable[[Any], tuple[int, Any]], call: Callable[..., Any]
) -> tuple[int, Any, bool]:
    """Like ``idempotent_call`` for a service that records the answer itself: ``call(answer)`` gets an
    ``IdempotentAnswer`` and records it with its writes (so no transaction is opened here, and a
    single-statement service needs no BEGIN or COMMIT of its own)."""
    _check_key(key)
    answer = IdempotentAnswer(scope=scope, key=key, fingerprint=fingerprint, render=render)
    try:
        call(answer)
        assert answer.recorded is not None, "the service did not record its answer"
        return answer.recorded[0], answer.recorded[1], False
    except KeyTaken:
        pass
    except IntegrityError as err:
        if "idempotency_unique_scope_key" not in str(err):
            raise
    except DomainError as err:
        return _refusal(scope, key, fingerprint, err)
    return _replay(scope, key, fingerprint)


def _refusal(scope: str, key: str, fingerprint: str, err: DomainError) -> tuple[int, Any, bool]:
    """The work was rolled back; remember the refusal unless another call answered first."""
    status_code, body = err.status_code, err.as_body()
    with transaction.atomic():
        if _claim(scope, key, fingerprint, status_code, body):
            return status_code, body, False
    return _replay(scope, key, fingerprint)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not text_is_storable(key):
        raise InvalidIdempotencyKey(f"Idempotency key must be 1 to {MAX_KEY_LENGTH} characters, none of them NUL.")


def _replay(scope: str, key: str, fingerprint: str) -> tuple[int, Any, bool]:
    existing = IdempotencyRecord.objects.get(scope=scope, key=key)
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(key=key)
    return existing.status_code, existing.response_body, True
