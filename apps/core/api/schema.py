"""How the OpenAPI schema tells the API's common contract, once for every operation.

``StockroomAutoSchema`` (DEFAULT_SCHEMA_CLASS) adds to each operation what holds everywhere:
the ``Idempotency-Key`` request header and ``Idempotent-Replayed`` response header of mutating
calls, and the error answers it can give (400, 401, 403, 404, 409, 413, 422, 429, 503), all with
the one ``Error`` component. An operation may still state an error answer itself
(``error_response``) where it has more to say; it uses the same component.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from apps.core.api.idempotency import KEY_HEADER, MUTATING_METHODS, REPLAYED_HEADER, IdempotentMixin


class ErrorEntrySerializer(serializers.Serializer):
    """One problem: an input field (`field`) or an order line (`sku`), with its code and message."""

    field = serializers.CharField(
        required=False, help_text="The input path: `external_id`, `lines[0].quantity`, `Idempotency-Key`."
    )
    sku = serializers.CharField(required=False, help_text="The order line's SKU, for a refusal of lines.")
    code = serializers.CharField(help_text="Machine-readable: `required`, `min_value`, `insufficient_stock`, ...")
    detail = serializers.CharField(help_text="A sentence for people.")
    requested = serializers.IntegerField(required=False, help_text="Units the line asked for.")
    available = serializers.IntegerField(required=False, help_text="Units that could be had.")
    cap = serializers.IntegerField(required=False, help_text="The channel's plausibility cap (422 imports).")


class ErrorSerializer(serializers.Serializer):
    """Every answer that is not 2xx. `code` says what happened, `errors` lists each problem.

    `errors` is always a list, empty when there is nothing finer to say. Some refusals add keys:
    `lines` (409 `insufficient_stock`, 422 `implausible_quantity`: `sku`, `requested`,
    `available`, `cap`), `retry_after` (429, seconds), `id` (409 `order_exists`).
    """

    code = serializers.CharField(
        help_text="`invalid`, `not_authenticated`, `authentication_failed`, `permission_denied`, `not_found`, "
        "`already_exists`, `in_use`, `insufficient_stock`, `invalid_order_state`, `idempotency_key_reused`, "
        "`body_too_large`, `throttled`, ..."
    )
    detail = serializers.CharField(help_text="A sentence for people.")
    errors = ErrorEntrySerializer(many=True)  # type: ignore[assignment]  # a field; the metaclass takes it out


def error_response(description: str) -> OpenApiResponse:
    """An error answer an operation states itself, with the one Error component."""
    return OpenApiResponse(ErrorSerializer, description=description)


_ERRORS = {
    400: "Invalid input: `errors` names each field (`field`) with its `code` and `detail`.",
    401: "No token, or not a valid one: send `Authorization: Token <key>`.",
    403: "This token may not do this (a channel token on a staff endpoint, a missing permission).",
    404: "No such record (another channel's record is a 404 too).",
    409: "Conflicts with what is stored: a duplicate code (`already_exists`), a record still in use (`in_use`).",
    413: "The body is over the size limit (`body_too_large`).",
    422: "The Idempotency-Key was already used with another request (`idempotency_key_reused`).",
    429: "Throttled: retry after `retry_after` seconds (also the `Retry-After` header).",
    503: "The database is unreachable; nothing was changed. Retry after `Retry-After` seconds.",
}
_REPLAYABLE = [200, 201, 202, 204, 403, 404, 409, 422]


class StockroomAutoSchema(AutoSchema):
    def _idempotent(self) -> bool:
        return isinstance(self.view, IdempotentMixin) and self.method in MUTATING_METHODS

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._idempotent():
            view: Any = self.view
            parameters += [
                OpenApiParameter(
                    KEY_HEADER,
                    {"type": "string", "minLength": 1, "maxLength": view.idempotency_key_max_length},
                    OpenApiParameter.HEADER,
                    required=view.idempotency_required,
                    description="Your unique id for this call (a UUID, or your own order id plus the step). "
                    "Sent again with the same body, it answers the first answer again and changes nothing.",
                ),
                OpenApiParameter(
                    REPLAYED_HEADER,
                    {"type": "string", "enum": ["true"]},
                    OpenApiParameter.HEADER,
                    response=_REPLAYABLE,
                    description="`true` when this is the recorded answer of an earlier call with the same key.",
                ),
            ]
        return parameters

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for error_status in self._error_statuses():
            if str(error_status) not in responses:
                error = error_response(_ERRORS[error_status])
                responses[str(error_status)] = self._get_response_for_code(
                    error, str(error_status), direction=direction
                )
        for status_code, response in responses.items():
            if not response.get("description"):
                response["description"] = HTTPStatus(int(status_code)).phrase
            if "headers" not in response and (headers := self._get_response_headers_for_code(status_code, direction)):
                response["headers"] = headers  # the body-less 204 of a DELETE is built without them
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> list[int]:
        statuses = [400, 503]
        if self.get_auth():
            statuses += [401, 403, 429]
        if "{" in self.path:
            statuses.append(404)
        if self.method in MUTATING_METHODS:
            statuses.append(413)
        if self._idempotent():
            statuses += [409, 422]  # every write of a record can meet a duplicate or a record in use
        return statuses

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's own signature
        text = super().get_description() or ""
        action = getattr(self.view, "action", None)
        if action in _ACTION_SENTENCES and not self._action_has_own_doc(action):
            model = getattr(getattr(self.view, "queryset", None), "model", None) or _serializer_model(self.view)
            name = str(model._meta.verbose_name) if model is not None else "record"
            plural = str(model._meta.verbose_name_plural) if model is not None else "records"
            article = "an" if name[:1] in "aeiou" else "a"
            sentence = _ACTION_SENTENCES[action].format(name=name, plural=plural, a=article)
            text = f"{sentence}\n\n{text}".strip()
        # Docstrings are reStructuredText; the schema's descriptions are Markdown.
        return text.replace("``", "`")

    def _action_has_own_doc(self, action: str) -> bool:
        handler = getattr(type(self.view), action, None)
        return bool(
            handler is not None and handler.__doc__ and handler.__qualname__.startswith(type(self.view).__name__)
        )


def _serializer_model(view: Any) -> Any:
    serializer_class = getattr(view, "serializer_class", None)
    return getattr(getattr(serializer_class, "Meta", None), "model", None)


_ACTION_SENTENCES = {
    "list": "List the {plural}, paginated (`count`, `next`, `previous`, `results`).",
    "create": "Create {a} {name}.",
    "retrieve": "Read one {name}.",
    "update": "Replace {a} {name}: every writable field.",
    "partial_update": "Change some fields of {a} {name}.",
    "destroy": "Delete {a} {name}; 409 `in_use` while other records still refer to it.",
}
