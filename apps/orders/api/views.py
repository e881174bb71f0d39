"""Channel API (design section 8): availability, orders and their actions, marketplace events.

A channel token sees and acts on its own listings and orders only: another channel's order
id is a 404, exactly like a missing one. Every POST under ``orders/`` needs an
``Idempotency-Key`` header (a replay returns the first answer, another body with the same
key is 422). Events are deduplicated by their own (external_id, sequence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.api.views import ErrorSerializer
from apps.channels.models import Listing
from apps.channels.selectors import listings_availability_cached
from apps.core.idempotency import IdempotentAnswer, idempotent_call, idempotent_service_call, request_fingerprint
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
)
from apps.orders.errors import OrderNotFound
from apps.orders.models import Order

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True, description="Unique per request."
)
# The one "Error" component of the schema (two of the same name made drf-spectacular warn).
ERROR = ErrorSerializer


def _idempotency(request: Request) -> dict[str, str]:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise ValidationError({"Idempotency-Key": ["This header is required."]})
    return {
        "scope": f"channel:{channel_of(request).pk}",
        "key": key,
        "fingerprint": request_fingerprint(method=request.method or "POST", path=request.path, body=request.data),
    }


def _answered(status_code: int, body: Any, replayed: bool) -> Response:
    response = Response(body, status=status_code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _idempotent(request: Request, handler: Callable[[], tuple[int, Any]]) -> Response:
    return _answered(*idempotent_call(**_idempotency(request), handler=handler))


def _placed_answer(placed: services.OrderPlaced) -> tuple[int, Any]:
    return status.HTTP_201_CREATED, order_body(placed.order, placed.lines)


def _actor(request: Request) -> str:
    return f"channel:{channel_of(request).code}"


class AvailabilityView(APIView):
    permission_classes = [IsChannelToken]

    @extend_schema(
        parameters=[OpenApiParameter("sku", OpenApiTypes.STR, many=True, required=True, description="Channel SKUs.")],
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
                        },
                        many=True,
                    ),
                    "unknown": serializers.ListField(child=serializers.CharField()),
                },
            ),
            400: ERROR,
        },
    )
    def get(self, request: Request) -> Response:
        """What this channel may sell now. SKUs it does not list are answered with 0 and named in ``unknown``."""
        skus = list(dict.fromkeys(request.query_params.getlist("sku")))
        if not skus:
            raise ValidationError({"sku": ["Give at least one sku (?sku=A&sku=B)."]})
        if len(skus) > MAX_AVAILABILITY_SKUS:
            raise ValidationError({"sku": [f"At most {MAX_AVAILABILITY_SKUS} SKUs per call."]})
        if any(not sku or len(sku) > 100 for sku in skus):
            raise ValidationError({"sku": ["A SKU is 1 to 100 characters."]})
        channel = channel_of(request)
        ids = dict(Listing.objects.filter(channel=channel, channel_sku__in=skus).values_list("channel_sku", "id"))
        availability = listings_availability_cached(list(ids.values()))
        as_of = serializers.DateTimeField().to_representation(timezone.now())
        results = []
        for sku in skus:
            row = availability.get(ids[sku]) if sku in ids else None
            results.append({"sku": sku, "available": row.available if row else 0, "as_of": as_of})
        return Response({"results": results, "unknown": [sku for sku in skus if sku not in ids]})


class OrderCreateView(APIView):
    """POST places an order; GET lists the channel's own orders, ``?external_id=`` finds one by its id."""

    permission_classes = [IsChannelToken]

    @extend_schema(
        operation_id="orders_list",
        parameters=[
            OpenApiParameter("external_id", OpenApiTypes.STR, description="The channel's own order id."),
            OpenApiParameter("page", OpenApiTypes.INT),
        ],
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
        request=OrderCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: OrderOutSerializer, 400: ERROR, 403: ERROR, 409: ERROR, 422: ERROR},
    )
    def post(self, request: Request) -> Response:
        """Reserve an order (all lines or none, 409 when short) or import an already sold one.

        Import mode only for channels that may import (marketplace and delivery by default):
        others get 403 ``import_not_allowed``. An imported line beyond the channel's plausibility
        cap (``import_cap_units``, by default the larger of 100 and 10x the units available) is
        refused whole with 422 ``implausible_quantity`` and ``lines`` (sku, requested, cap,
        available); nothing is recorded and staff get an incident.
        """
        serializer = OrderCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel = channel_of(request)

        def place(answer: IdempotentAnswer) -> services.OrderPlaced:
            # The service records the answer with the order itself (one statement on the fast path).
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

        return _answered(*idempotent_service_call(**_idempotency(request), render=_placed_answer, call=place))


class OrderDetailView(APIView):
    permission_classes = [IsChannelToken]

    @extend_schema(responses={200: OrderOutSerializer, 404: ERROR})
    def get(self, request: Request, pk: int) -> Response:
        order = Order.objects.filter(pk=pk, channel=channel_of(request)).first()
        if order is None:
            raise OrderNotFound()
        return Response(order_body(order, list(order.lines.all())))


class OrderActionView(APIView):
    """confirm/, cancel/, fulfil/, return/, exchange/ of one order."""

    permission_classes = [IsChannelToken]
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

        def handler() -> tuple[int, Any]:
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
            return status.HTTP_200_OK, order_body(state.order, state.lines)

        return _idempotent(request, handler)


def action_view(action: str, request_serializer: type[serializers.Serializer] | None = None) -> Any:
    """A view class per action, each with its own schema."""

    @extend_schema(
        request=request_serializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={200: OrderOutSerializer, 400: ERROR, 404: ERROR, 409: ERROR, 422: ERROR},
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


class EventCreateView(APIView):
    permission_classes = [IsChannelToken]

    @extend_schema(
        request=EventSerializer,
        responses={
            200: inline_serializer(
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
            ),
            400: ERROR,
            422: ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        """Record a marketplace order event: 201 when new (applied, parked or rejected), 200 on a resend."""
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
