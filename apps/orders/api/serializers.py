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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else serializers.DateTimeField().to_representation(value)


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
