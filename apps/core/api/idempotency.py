"""The one way every mutating API call is idempotent: the ``Idempotency-Key`` request header.

Every POST, PUT, PATCH and DELETE under /api/v1/ (but the supplier webhook, which its signature
and timestamp protect) takes the header. The first call's answer, a refusal included, is kept
with the call's own writes; a replay with the same key and body answers it again, with the same
status and body and ``Idempotent-Replayed: true``, and changes nothing; the same key with another
body is 422 ``idempotency_key_reused``. Keys belong to the caller (a channel, a staff user).
The header is required where a repeat would move stock twice (orders and their actions, stock
movements) and optional elsewhere. Answers to invalid input (400) are not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.authentication import principal_key_scope
from apps.core.errors import InvalidIdempotencyKey
from apps.core.idempotency import MAX_KEY_LENGTH, idempotent_call, idempotent_service_call, request_fingerprint
from apps.core.parsers import text_is_storable

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class CallKey:
    """One call's claim: whose key, the key, and the request it stands for."""

    scope: str
    key: str
    fingerprint: str


def answered(status_code: int, body: Any, replayed: bool) -> Response:
    response = Response(body, status=status_code)
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


class IdempotentMixin:
    """Mixed into every API view that changes something (before the DRF base class).

    Once authentication, permissions and throttles passed, a mutating method with a key runs
    through ``idempotent_call``. A method listed in ``records_own_answer`` gets ``self.call_key``
    and hands it to a service that records the answer in its own statement (``answer_with``).
    """

    idempotency_required: bool = False
    # A deprecated body field that may carry the key instead of the header; the header wins,
    # both present and different is a 400.
    idempotency_body_field: str | None = None
    idempotency_key_max_length: int = MAX_KEY_LENGTH
    records_own_answer: frozenset[str] = frozenset()
    call_key: CallKey | None = None

    def idempotency_scope(self, request: Request) -> str:
        return principal_key_scope(request.user)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in MUTATING_METHODS:
            return
        method = request.method.lower()
        handler = getattr(self, method, None)
        if handler is None:
            return  # not a method of this view: dispatch answers 405
        self.call_key = self._call_key(request)
        if self.call_key is not None and method not in self.records_own_answer:
            setattr(self, method, partial(self._run_once, handler))

    def answer_with(self, render: Callable[[Any], tuple[int, Any]], call: Callable[..., Any]) -> Response:
        """For ``records_own_answer`` methods: ``call(answer)`` records ``render(result)`` with its writes."""
        assert self.call_key is not None, "records_own_answer needs idempotency_required"
        return answered(*idempotent_service_call(**asdict(self.call_key), render=render, call=call))

    def _run_once(self, handler: Callable[..., Response], request: Request, *args: Any, **kwargs: Any) -> Response:
        def work() -> tuple[int, Any]:
            response = handler(request, *args, **kwargs)
            return response.status_code, response.data

        assert self.call_key is not None
        return answered(*idempotent_call(**asdict(self.call_key), handler=work))

    def _call_key(self, request: Request) -> CallKey | None:
        key, source = request.headers.get(KEY_HEADER), KEY_HEADER
        body = request.data
        field = self.idempotency_body_field
        if field and isinstance(body, dict) and field in body:
            alias = body[field]
            if key is not None and alias != key:
                raise ValidationError({field: [f"Differs from the {KEY_HEADER} header; send the header only."]})
            if key is None:
                key, source = alias, field
            body = {name: value for name, value in body.items() if name != field}
        if key is None:
            if self.idempotency_required:
                raise ValidationError({KEY_HEADER: ["This header is required."]})
            return None
        most = self.idempotency_key_max_length
        if not isinstance(key, str) or not key or len(key) > most or not text_is_storable(key):
            message = f"{KEY_HEADER} must be 1 to {most} characters, none of them NUL."
            raise InvalidIdempotencyKey(message, errors={source: [message]})
        return CallKey(
            scope=self.idempotency_scope(request),
            key=key,
            fingerprint=request_fingerprint(method=request.method or "POST", path=request.path, body=body or None),
        )
