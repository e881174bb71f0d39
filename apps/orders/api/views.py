"""Channel API (docs/architecture.md, "The API contract"): availability, orders and their actions, marketplace events.

A channel token sees and acts on its own listings and orders only: another channel's order
id is a 404, exactly like a missing one. Every POST under ``orders/`` needs an
``Idempotency-Key`` header (apps/core/api/idempotency.py). Events are deduplicated by their
own (external_id, sequence).
"""

from __future__ import annotations

from typing import Any

import structlog
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.channels.freshness import OK, STATES, listings_state
from apps.channels.models import Listing
from apps.channels.selectors import listings_availability_cached
from apps.core.api.idempotency import IdempotentMixin
from apps.core.api.schema import error_response
from apps.core.idempotency import IdempotentAnswer
from apps.core.permissions import IsChannelToken, channel_of
from apps.orders import services
from apps.orders.api.serializers import (
    MAX_AVAILABILITY_SKUS,
    EventSerializer,
    OrderCreateSerializer,
    OrderOutSerializer,
    event_body,
    line_requests,
    order_body,
    order_create_plain,
)
from apps.orders.errors import OrderNotFound
from apps.orders.models import Order

log = structlog.get_logger("stockroom.orders")

LINES_REFUSED = "`errors` has one entry per refused line (`sku`, `requested`, `available`), as does the `lines` list."
ORDER_EXAMPLE = OpenApiExample(
    "A webshop checkout",
    value={"external_id": "WEB-10042", "lines": [{"sku": "HOOD-M", "quantity": 2}, {"sku": "CAP", "quantity": 1}]},
    request_only=True,
)
SHORT_EXAMPLE = OpenApiExample(
    "Not enough hoodies",
    value={
        "code": "insufficient_stock",
        "detail": "Not enough stock to reserve every line; nothing was reserved.",
        "errors": [
            {
                "sku": "HOOD-M",
                "code": "insufficient_stock",
                "detail": "HOOD-M: requested 2, available 1.",
                "requested": 2,
                "available": 1,
            }
        ],
        "lines": [{"sku": "HOOD-M", "requested": 2, "available": 1}],
    },
    response_only=True,
    status_codes=["409"],
)


class _ChannelWrite(IdempotentMixin, APIView):
    """A channel's write: its own token, and an Idempotency-Key on every call."""

    permission_classes = [IsChannelToken]
    idempotency_required = True


def _placed_answer(placed: services.OrderPlaced) -> tuple[int, Any]:
    return status.HTTP_201_CREATED, order_body(placed.order, placed.lines)


def _actor(request: Request) -> str:
    return f"channel:{channel_of(request).code}"


class AvailabilityView(APIView):
    permission_classes = [IsChannelToken]

    @extend_schema(
        summary="What this channel may sell now",
        description="One row per SKU asked, in the order asked. A SKU this channel does not list answers 0 and is "
        "named in `unknown`. Ask for several SKUs by repeating the parameter (`?sku=A&sku=B`, at most "
        f"{MAX_AVAILABILITY_SKUS}); a comma inside one value is refused with 400, never read as one SKU.",
        parameters=[
            OpenApiParameter(
                "sku",
                OpenApiTypes.STR,
                many=True,
                required=True,
                explode=True,
                description="A channel SKU; repeat the parameter for several.",
                examples=[OpenApiExample("Two SKUs", value=["HOOD-M", "CAP"])],
            )
        ],
        responses={
            200: inline_serializer(
                "Availability",
                {
                    "results": inline_serializer(
                        "AvailabilityRow",
                        {
                            "sku": serializers.CharField(),
                            "available": serializers.IntegerField(),
                            "as_of": serializers.DateTimeField(),
                            "state": serializers.ChoiceField(
                                choices=STATES,
                                help_text="ok; updating: a change is queued and not settled, or the channel's "
                                "orders are not all imported; stale: a supplier's stock feeding it is past its max "
                                "age, or the last reconciliation found the channel showing another number "
                                "(docs/stream.md).",
                            ),
                        },
                        many=True,
                    ),
                    "unknown": serializers.ListField(child=serializers.CharField()),
                },
            ),
        },
        examples=[
            OpenApiExample(
                "Two SKUs, one not listed",
                value={
                    "results": [
                        {"sku": "HOOD-M", "available": 12, "as_of": "2026-03-02T10:15:00Z", "state": "ok"},
                        {"sku": "MUG", "available": 0, "as_of": "2026-03-02T10:15:00Z", "state": "ok"},
                    ],
                    "unknown": ["MUG"],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        skus = list(dict.fromkeys(request.query_params.getlist("sku")))
        if not skus:
            raise ValidationError({"sku": ["Give at least one sku (?sku=A&sku=B)."]})
        if len(skus) > MAX_AVAILABILITY_SKUS:
            raise ValidationError({"sku": [f"At most {MAX_AVAILABILITY_SKUS} SKUs per call."]})
        if any(not sku or len(sku) > 100 for sku in skus):
            raise ValidationError({"sku": ["A SKU is 1 to 100 characters."]})
        channel = channel_of(request)
        ids = dict(Listing.objects.filter(channel=channel, channel_sku__in=skus).values_list("channel_sku", "id"))
        if listed_apart := [sku for sku in skus if "," in sku and sku not in ids]:
            # "A,B" is no SKU of this channel: the caller meant two, which are asked for apart.
            raise ValidationError(
                {"sku": [f"'{listed_apart[0]}' is not a SKU of this channel: repeat the parameter (?sku=A&sku=B)."]}
            )
        availability = listings_availability_cached(list(ids.values()))
        states = listings_state(list(ids.values()))
        as_of = serializers.DateTimeField().to_representation(timezone.now())
        results = []
        for sku in skus:
            row = availability.get(ids[sku]) if sku in ids else None
            known = states.get(ids[sku]) if sku in ids else None
            results.append(
                {
                    "sku": sku,
                    "available": row.available if row else 0,
                    "as_of": as_of,
                    "state": known.state if known else OK,
                }
            )
        return Response({"results": results, "unknown": [sku for sku in skus if sku not in ids]})


class OrderCreateView(_ChannelWrite):
    """POST places an order; GET lists the channel's own orders, `?external_id=` finds one by its id."""

    # The service records the answer with the order itself (one statement on the fast path).
    records_own_answer = frozenset({"post"})

    @extend_schema(
        operation_id="orders_list",
        parameters=[
            OpenApiParameter("external_id", OpenApiTypes.STR, description="The channel's own order id."),
            OpenApiParameter("page", OpenApiTypes.INT),
        ],
        summary="List this channel's orders, or find one by its external id",
        responses={
            200: inline_serializer(
                "OrderPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": OrderOutSerializer(many=True),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        """This channel's orders, newest first, paginated; another channel's orders are never listed."""
        orders = Order.objects.filter(channel=channel_of(request)).prefetch_related("lines").order_by("-pk")
        external_id = request.query_params.get("external_id")
        if external_id is not None:
            orders = orders.filter(external_id=external_id)
        pages = PageNumberPagination()
        page = pages.paginate_queryset(orders, request, view=self) or []
        return pages.get_paginated_response([order_body(order, list(order.lines.all())) for order in page])

    @extend_schema(
        summary="Reserve an order, or import one already sold",
        request=OrderCreateSerializer,
        responses={
            201: OrderOutSerializer,
            403: error_response("Import mode from a channel that may not import (`import_not_allowed`)."),
            409: error_response(
                "Not enough stock for every line (`insufficient_stock`; nothing was reserved), or this "
                f"external_id is already an order (`order_exists`, with its `id`). {LINES_REFUSED}"
            ),
            422: error_response(
                "The Idempotency-Key was used with another request (`idempotency_key_reused`), or an imported line "
                "is beyond the channel's plausibility cap (`implausible_quantity`, with `cap` per line)."
            ),
        },
        examples=[ORDER_EXAMPLE, SHORT_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        """Reserve: all lines or none, held for `hold_minutes` (15 by default), 409 when short.

        Import (`mode: import`): an order the channel already sold, never refused for stock; a
        shortfall becomes an oversell incident and the order is `flagged`. Only for channels
        that may import (marketplaces and delivery apps by default); others get 403. An imported
        line beyond the channel's plausibility cap (by default the larger of 100 and 10x the
        units available) is refused whole with 422 `implausible_quantity`; staff get an incident.
        """
        data = order_create_plain(request.data)
        if data is None:  # anything but a plainly valid body: the serializer says what is wrong, or reads it
            serializer = OrderCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        channel = channel_of(request)

        def place(answer: IdempotentAnswer) -> services.OrderPlaced:
            lines = line_requests(data["lines"]) or []
            if data["mode"] == Order.Mode.IMPORT:
                return services.order_import(
                    channel=channel, external_id=data["external_id"], lines=lines, actor=_actor(request), answer=answer
                )
            return services.order_reserve(
                channel=channel,
                external_id=data["external_id"],
                lines=lines,
                hold_minutes=data.get("hold_minutes"),
                actor=_actor(request),
                answer=answer,
            )

        response = self.answer_with(_placed_answer, place)
        _log_order_in(channel.code, data, response)
        return response


def _log_order_in(channel: str, data: dict[str, Any], response: Response) -> None:
    """One INFO line per order a channel sends (a replay answers again and logs nothing)."""
    if response.get("Idempotent-Replayed") == "true":
        return
    body = response.data if isinstance(response.data, dict) else {}
    units = sum(int(line["quantity"]) for line in data.get("lines") or [])
    if response.status_code == status.HTTP_201_CREATED:
        log.info(
            "order_in",
            channel=channel,
            order=body.get("id"),
            external_id=data["external_id"],
            mode=data["mode"],
            status=body.get("status"),
            units=units,
        )
    else:
        log.info(
            "order_refused",
            channel=channel,
            external_id=data["external_id"],
            mode=data["mode"],
            code=body.get("code"),
            http_status=response.status_code,
            units=units,
        )


class OrderDetailView(APIView):
    permission_classes = [IsChannelToken]

    @extend_schema(summary="Read one order", responses={200: OrderOutSerializer})
    def get(self, request: Request, pk: int) -> Response:
        """The order with its lines: ordered, fulfilled, returned and unallocated (oversold) units."""
        order = Order.objects.filter(pk=pk, channel=channel_of(request)).first()
        if order is None:
            raise OrderNotFound()
        return Response(order_body(order, list(order.lines.all())))


class OrderActionView(_ChannelWrite):
    """confirm/, cancel/, fulfil/, return/, exchange/ of one order."""

    action = ""
    request_serializer: type[serializers.Serializer] | None = None

    def act(self, request: Request, pk: int) -> Response:
        data: dict[str, Any] = {}
        if self.request_serializer is not None:
            serializer = self.request_serializer(data=request.data if request.data else {})
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
        channel = channel_of(request)
        common = {"order_id": pk, "channel_id": channel.pk, "actor": _actor(request)}

        if self.action == "confirm":
            state = services.order_confirm(**common)
        elif self.action == "cancel":
            state = services.order_cancel(**common)
        elif self.action == "fulfil":
            state = services.order_fulfil(lines=line_requests(data.get("lines")), **common)
        elif self.action == "return":
            state = services.order_return(lines=line_requests(data.get("lines")), **common)
        else:
            state = services.order_line_exchange(sku=data["sku"], new_sku=data["new_sku"], **common)
        return Response(order_body(state.order, state.lines))


_LINES_EXAMPLE = OpenApiExample(
    "One hoodie of the order", value={"lines": [{"sku": "HOOD-M", "quantity": 1}]}, request_only=True
)
_STATE = "409 `invalid_order_state` (with the order's `status`)"
# Per action: summary, description, example body.
_ACTIONS: dict[str, tuple[str, str, OpenApiExample | None]] = {
    "confirm": (
        "Confirm a reserved order",
        f"The buyer paid: the hold no longer lapses. Confirming twice is harmless; {_STATE} for a cancelled, "
        "expired or returned order.",
        None,
    ),
    "cancel": (
        "Cancel an order",
        "Releases every unit the order still holds; channels see it within seconds. Cancelling a cancelled or "
        f"expired order is harmless; {_STATE} once anything shipped (return it instead).",
        None,
    ),
    "fulfil": (
        "Ship an order, whole or in part",
        "Without a body everything still held ships; with `lines`, only those units. Shipped units leave on_hand "
        f"and reserved. 409 `invalid_quantity` (with `lines`) for more than is left on a line; {_STATE} for an "
        "order not confirmed or reserved.",
        _LINES_EXAMPLE,
    ),
    "return": (
        "Take shipped units back",
        "Shipped units come back to the shelf they left. Without a body everything shipped returns. "
        f"409 `invalid_quantity` for more than shipped; {_STATE} when nothing shipped.",
        _LINES_EXAMPLE,
    ),
    "exchange": (
        "Swap a line for another listing",
        "The line's product becomes the one of `new_sku`, same quantity, all or nothing: 409 "
        f"`insufficient_stock` when the new one is short. {_STATE} once anything shipped.",
        OpenApiExample("Size M for size L", value={"sku": "HOOD-M", "new_sku": "HOOD-L"}, request_only=True),
    ),
}


def action_view(action: str, request_serializer: type[serializers.Serializer] | None = None) -> Any:
    """A view class per action, each with its own schema."""
    summary, description, example = _ACTIONS[action]

    @extend_schema(
        summary=summary,
        description=description,
        request=request_serializer,
        responses={200: OrderOutSerializer},
        examples=[example] if example else [],
        operation_id=f"orders_{action}",
    )
    def post(self: OrderActionView, request: Request, pk: int) -> Response:
        return self.act(request, pk)

    view: Any = type(
        f"Order{action.title()}View",
        (OrderActionView,),
        {"action": action, "request_serializer": request_serializer, "post": post},
    )
    return view.as_view()


EVENT_OUT = inline_serializer(
    "OrderEvent",
    {
        "id": serializers.IntegerField(),
        "type": serializers.CharField(),
        "external_id": serializers.CharField(),
        "sequence": serializers.IntegerField(),
        "status": serializers.CharField(),
        "order": serializers.IntegerField(allow_null=True),
        "detail": serializers.CharField(),
    },
)


class EventCreateView(IdempotentMixin, APIView):
    """Events are deduplicated by (external_id, sequence); an Idempotency-Key is optional here."""

    permission_classes = [IsChannelToken]

    @extend_schema(
        request=EventSerializer,
        responses={
            201: OpenApiResponse(EVENT_OUT, description="A new event: applied, parked or rejected (`status`)."),
            200: OpenApiResponse(EVENT_OUT, description="The same event again: its first answer, nothing done."),
            422: error_response(
                "This (external_id, sequence) was received with another body (`event_conflict`), or the "
                "Idempotency-Key was used with another request (`idempotency_key_reused`)."
            ),
        },
        summary="Report a marketplace order event",
        examples=[
            OpenApiExample(
                "A marketplace sold two hoodies",
                value={
                    "type": "create",
                    "external_id": "MP-88123",
                    "sequence": 1,
                    "lines": [{"sku": "HOOD-M", "quantity": 2}],
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """Record an order event: 201 when new (applied, parked or rejected), 200 on a resend.

        Events may arrive out of order (a cancel before its create): each carries its `sequence`;
        one whose precondition is not met is parked and applied when it can be. The same
        (external_id, sequence) with another body is 422 `event_conflict`.
        """
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        payload = {name: data[name] for name in ("lines", "mode", "hold_minutes") if name in data}
        received = services.event_apply(
            channel=channel_of(request),
            type=data["type"],
            external_id=data["external_id"],
            sequence=data["sequence"],
            payload=payload,
            actor=_actor(request),
        )
        return Response(
            event_body(received.event), status=status.HTTP_200_OK if received.replayed else status.HTTP_201_CREATED
        )
