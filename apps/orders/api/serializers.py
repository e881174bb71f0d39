"""Input validation for the channel API; bodies out are built by ``order_body``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from apps.orders.models import Order, OrderEvent, OrderLine
from apps.orders.services.allocation import LineRequest
from apps.orders.services.reserve import MAX_HOLD_MINUTES

MAX_LINES = 200
MAX_LINE_QUANTITY = 1_000_000
MAX_AVAILABILITY_SKUS = 1000


class LineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_LINE_QUANTITY)


def _unique_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    errors: list[dict[str, Any]] = []
    for line in lines:
        errors.append({"sku": ["Each SKU may appear on one line only."]} if line["sku"] in seen else {})
        seen.add(line["sku"])
    if any(errors):
        raise serializers.ValidationError(errors)
    return lines


def line_requests(lines: list[dict[str, Any]] | None) -> list[LineRequest] | None:
    return None if lines is None else [LineRequest(sku=line["sku"], quantity=line["quantity"]) for line in lines]


class OrderCreateSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=120)
    lines = serializers.ListField(child=LineSerializer(), min_length=1, max_length=MAX_LINES)
    hold_minutes = serializers.IntegerField(min_value=1, max_value=MAX_HOLD_MINUTES, required=False)
    mode = serializers.ChoiceField(
        choices=Order.Mode.choices,
        default=Order.Mode.RESERVE,
        help_text="import: an order the channel already sold (only channels with can_import).",
    )

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_lines(lines)


def _plain_text(value: Any, most: int) -> bool:
    """A string the serializer's CharField keeps as it is: no surrounding blanks, no NUL or surrogates."""
    return (
        type(value) is str
        and 0 < len(value) <= most
        and value.isascii()
        and "\x00" not in value
        and value.strip() == value
    )


def _plain_int(value: Any, least: int, most: int) -> bool:
    return type(value) is int and least <= value <= most


def order_create_plain(data: Any) -> dict[str, Any] | None:
    """What ``OrderCreateSerializer`` validates a plainly valid body to, without building its fields (which
    costs more than the rest of reading the request); None for anything else, which the serializer then
    reads and refuses or accepts as always. Plain: a JSON object of ASCII strings and ints, every value
    within its field's limits, each SKU on one line."""
    if type(data) is not dict:
        return None
    external_id, lines, mode = data.get("external_id"), data.get("lines"), data.get("mode", Order.Mode.RESERVE)
    if not _plain_text(external_id, 120) or not isinstance(mode, str) or mode not in _MODES or type(lines) is not list:
        return None
    if not 1 <= len(lines) <= MAX_LINES:
        return None
    plain: list[dict[str, Any]] = []
    for line in lines:
        if type(line) is not dict:
            return None
        sku, quantity = line.get("sku"), line.get("quantity")
        if not _plain_text(sku, 100) or not _plain_int(quantity, 1, MAX_LINE_QUANTITY):
            return None
        plain.append({"sku": sku, "quantity": quantity})
    if len({line["sku"] for line in plain}) != len(plain):
        return None
    validated: dict[str, Any] = {"external_id": external_id, "lines": plain}
    if "hold_minutes" in data:
        if not _plain_int(data["hold_minutes"], 1, MAX_HOLD_MINUTES):
            return None
        validated["hold_minutes"] = data["hold_minutes"]
    validated["mode"] = mode
    return validated


_MODES = frozenset(Order.Mode.values)


class LinesSerializer(serializers.Serializer):
    """Some units of some lines; without `lines` the whole order is meant."""

    lines = serializers.ListField(child=LineSerializer(), min_length=1, max_length=MAX_LINES, required=False)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_lines(lines)


class ExchangeSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100)
    new_sku = serializers.CharField(max_length=100)


class EventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=OrderEvent.Type.choices)
    external_id = serializers.CharField(max_length=120)
    sequence = serializers.IntegerField(min_value=0, max_value=2**62)
    lines = serializers.ListField(child=LineSerializer(), min_length=1, max_length=MAX_LINES, required=False)
    mode = serializers.ChoiceField(
        choices=Order.Mode.choices,
        required=False,
        help_text="Of a create event; without it, import for channels with can_import, reserve for others.",
    )
    hold_minutes = serializers.IntegerField(min_value=1, max_value=MAX_HOLD_MINUTES, required=False)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _unique_lines(lines)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == OrderEvent.Type.CREATE and not attrs.get("lines"):
            raise serializers.ValidationError({"lines": ["A create event needs its lines."]})
        return attrs


class OrderLineOutSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()
    fulfilled_quantity = serializers.IntegerField()
    returned_quantity = serializers.IntegerField()
    unallocated_quantity = serializers.IntegerField()


class OrderOutSerializer(serializers.Serializer):
    """An order as the channel sees it: its status and each line's units."""

    # The schema of what order_body builds (serialising through this class would cost per request).

    id = serializers.IntegerField()
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    mode = serializers.ChoiceField(choices=Order.Mode.choices)
    lines = OrderLineOutSerializer(many=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    flagged = serializers.BooleanField()
    created_at = serializers.DateTimeField()


_DATETIME = serializers.DateTimeField()  # one instance: building a field costs more than using it


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def order_body(order: Order, lines: list[OrderLine]) -> dict[str, Any]:
    return {
        "id": order.pk,
        "external_id": order.external_id,
        "status": order.status,
        "mode": order.mode,
        "lines": [
            {
                "sku": line.channel_sku,
                "quantity": line.quantity,
                "fulfilled_quantity": line.fulfilled_quantity,
                "returned_quantity": line.returned_quantity,
                "unallocated_quantity": line.unallocated_quantity,
            }
            for line in lines
        ],
        "expires_at": _iso(order.expires_at),
        "flagged": order.flagged,
        "created_at": _iso(order.created_at),
    }


def event_body(event: OrderEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "type": event.type,
        "external_id": event.external_id,
        "sequence": event.sequence,
        "status": event.status,
        "order": event.order_id,
        "detail": event.detail,
    }
