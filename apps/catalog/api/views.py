"""Staff endpoints for the catalog and stock. Writes go through services; reads through selectors.

A staff token carries its user's permissions and locations: store staff see and book stock at
their own locations only (``apps.catalog.access``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from apps.catalog.access import location_ids_for, scope_to_locations
from apps.catalog.api import filters
from apps.catalog.api.serializers import (
    ItemSerializer,
    LocationSerializer,
    MovementRecordedSerializer,
    MovementSerializer,
    NewMovementSerializer,
    ProductSerializer,
    StockLevelSerializer,
)
from apps.catalog.models import Item, Location, Movement, Product, ProductComponent, StockLevel
from apps.catalog.selectors import levels_with_atp
from apps.catalog.services import catalog as catalog_services
from apps.catalog.services.movements import stock_movement_record
from apps.core.api.idempotency import IdempotentMixin
from apps.core.api.schema import error_response

CODE_IN_PATH = r"[^/]+"


class _CatalogViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """Create, read, update and delete by code; deletion of what is still used is a 409."""

    label = "record"

    def perform_destroy(self, instance: Any) -> None:
        catalog_services.catalog_record_delete(instance=instance, label=f"{self.label} {instance}")


class LocationViewSet(_CatalogViewSet):
    """Stores, warehouses and suppliers' drop-ship locations, addressed by code."""

    queryset = Location.objects.all()
    serializer_class = LocationSerializer
    lookup_field = "code"
    lookup_value_regex = CODE_IN_PATH
    filterset_class = filters.LocationFilter
    label = "Location"

    def get_queryset(self) -> QuerySet[Location]:
        return scope_to_locations(super().get_queryset(), self.request.user, "pk")

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = catalog_services.location_create(**serializer.validated_data)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        assert isinstance(serializer.instance, Location)
        serializer.instance = catalog_services.location_update(
            location=serializer.instance, **serializer.validated_data
        )


class ItemViewSet(_CatalogViewSet):
    """Physically counted things, in their base unit, addressed by SKU."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    lookup_field = "sku"
    lookup_value_regex = CODE_IN_PATH
    filterset_class = filters.ItemFilter
    label = "Item"

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = catalog_services.item_create(**serializer.validated_data)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        assert isinstance(serializer.instance, Item)
        serializer.instance = catalog_services.item_update(item=serializer.instance, **serializer.validated_data)


def _component_specs(raw: list[dict[str, Any]] | None) -> list[catalog_services.ComponentSpec] | None:
    if raw is None:
        return None
    return [catalog_services.ComponentSpec(item=c["item"], quantity=c["quantity"]) for c in raw]


class ProductViewSet(_CatalogViewSet):
    """What channels sell: standard, multipack, weighted and bundle products, with their components."""

    serializer_class = ProductSerializer
    lookup_field = "code"
    lookup_value_regex = CODE_IN_PATH
    filterset_class = filters.ProductFilter
    label = "Product"

    def get_queryset(self) -> QuerySet[Product]:
        return Product.objects.prefetch_related(
            Prefetch("components", queryset=ProductComponent.objects.select_related("item"))
        ).distinct()

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        components = _component_specs(data.pop("components"))
        serializer.instance = catalog_services.product_create(components=components or [], **data)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        components = _component_specs(data.pop("components", None))
        assert isinstance(serializer.instance, Product)
        product = catalog_services.product_update(product=serializer.instance, components=components, **data)
        product._prefetched_objects_cache = {}  # type: ignore[attr-defined]  # the make-up may have changed under the prefetch
        serializer.instance = product


@extend_schema_view(
    list=extend_schema(summary="The stock ledger, newest first"),
    create=extend_schema(
        summary="Record a receipt, count, adjustment or point-of-sale sale",
        description="A receipt, adjustment or point-of-sale sale adds or removes `quantity` (an adjustment may be "
        "negative); a count sets on_hand to it. Answers the ledger row, the level after it and any incident it "
        "opened (a sale that ate into reserved stock). Needs an `Idempotency-Key` header (or, deprecated, the "
        "`idempotency_key` body field): a retry with the same key records nothing twice.",
        request=NewMovementSerializer,
        examples=[
            OpenApiExample(
                "A delivery of 24 hoodies",
                value={"location": "WH", "item": "HOOD-M", "kind": "receipt", "quantity": 24, "note": "PO 4711"},
                request_only=True,
            ),
            OpenApiExample(
                "A shelf count",
                value={"location": "S1", "item": "HOOD-M", "kind": "count", "quantity": 7, "note": "weekly count"},
                request_only=True,
            ),
        ],
        responses={
            201: MovementRecordedSerializer,
            409: error_response("It would take on_hand below zero where the location does not allow it."),
        },
    ),
)
class MovementViewSet(IdempotentMixin, mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """The append-only ledger. A count sets on_hand to the quantity; the other kinds add or remove it."""

    # The key belongs to the caller, as everywhere: it is stored on the movement under the caller's
    # scope (120 characters, the ledger's column); the body field is its deprecated alias.
    idempotency_required = True
    idempotency_body_field = "idempotency_key"
    idempotency_key_max_length = 120
    serializer_class = MovementSerializer
    filterset_class = filters.MovementFilter
    queryset = Movement.objects.select_related("item", "location").order_by("-id")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return NewMovementSerializer if self.action == "create" else MovementSerializer

    def get_queryset(self) -> QuerySet[Movement]:
        return scope_to_locations(super().get_queryset(), self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = NewMovementSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        seen = location_ids_for(request.user)
        if seen is not None and data["location"].pk not in seen:
            raise exceptions.PermissionDenied(f"You do not work at {data['location'].code}.")
        assert self.call_key is not None
        result = stock_movement_record(
            location_code=data["location"].code,
            item_sku=data["item"].sku,
            kind=data["kind"],
            quantity=data["quantity"],
            idempotency_key=self.call_key.key,
            key_scope=self.call_key.scope,
            actor=f"staff:{request.user.get_username()}",
            note=data["note"],
        )
        level = levels_with_atp().get(pk=result.level.pk)
        answer = MovementRecordedSerializer({"movement": result.movement, "level": level, "incident": result.incident})
        return Response(answer.data, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(summary="Stock levels with their available-to-promise quantity"))
class StockLevelViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Levels per item and location: on_hand, reserved, safety and ATP. Changed only through movements."""

    serializer_class = StockLevelSerializer
    filterset_class = filters.StockLevelFilter

    def get_queryset(self) -> QuerySet[StockLevel]:
        return scope_to_locations(levels_with_atp(), self.request.user).order_by("item__sku", "location__code")
