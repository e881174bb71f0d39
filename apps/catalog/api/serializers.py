"""What staff send and receive for the catalog and stock.

The fields are a contract with integrators (docs/architecture.md, "The API contract").
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.catalog.models import Incident, Item, Location, Movement, Product, StockLevel
from apps.catalog.services.movements import MAX_QUANTITY, RECORDABLE_KINDS

MAX_COMPONENT_QUANTITY = 10**9
MAX_COMPONENTS = 50


class _ImmutableCodeMixin:
    """Codes are how channels, suppliers and the ledger refer to a record: fixed once created."""

    immutable_fields: tuple[str, ...] = ()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = getattr(self, "instance", None)
        if instance is not None:
            errors = {
                name: [f"{name} cannot be changed once created."]
                for name in self.immutable_fields
                if name in attrs and attrs[name] != getattr(instance, name)
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().validate(attrs)  # type: ignore[misc]


class LocationSerializer(_ImmutableCodeMixin, serializers.ModelSerializer):
    immutable_fields = ("code",)

    class Meta:
        model = Location
        fields = ["code", "name", "kind", "allow_negative", "is_active", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"kind": {"required": True}}


class ItemSerializer(_ImmutableCodeMixin, serializers.ModelSerializer):
    immutable_fields = ("sku",)
    sku = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=64,
        error_messages={"invalid": "Use letters, digits, '.', '_' and '-' only."},
    )

    class Meta:
        model = Item
        fields = ["sku", "name", "unit", "safety_min", "safety_max", "is_active", "created_at"]
        read_only_fields = ["created_at"]
        # safety_min/max keep the model's range (its 32-bit column), which ModelSerializer derives.
        extra_kwargs = {"unit": {"required": True}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        instance = self.instance
        low = attrs.get("safety_min", getattr(instance, "safety_min", 0))
        high = attrs.get("safety_max", getattr(instance, "safety_max", None))
        if high is not None and low > high:
            raise serializers.ValidationError({"safety_max": ["Must not be below safety_min."]})
        item: Item | None = instance
        unit_changes = item is not None and "unit" in attrs and attrs["unit"] != item.unit
        if item is not None and unit_changes and (item.movements.exists() or item.components.exists()):
            raise serializers.ValidationError(
                {"unit": ["The unit of an item with stock history or products cannot change."]}
            )
        return attrs


class ComponentListSerializer(serializers.ListSerializer):
    """Components in the order they were given; uses the view's prefetch when there is one."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        components = data.all() if hasattr(data, "all") else data
        child = self.child
        assert child is not None
        return [child.to_representation(c) for c in sorted(components, key=lambda c: c.pk or 0)]


class ComponentSerializer(serializers.Serializer):
    item = serializers.SlugRelatedField(slug_field="sku", queryset=Item.objects.all())
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_COMPONENT_QUANTITY)

    class Meta:
        list_serializer_class = ComponentListSerializer


class ProductSerializer(_ImmutableCodeMixin, serializers.ModelSerializer):
    immutable_fields = ("code",)
    code = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=64,
        error_messages={"invalid": "Use letters, digits, '.', '_' and '-' only."},
    )
    components = ComponentSerializer(many=True)

    class Meta:
        model = Product
        fields = ["code", "name", "kind", "components", "is_active", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"kind": {"required": True}}

    def validate_components(self, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not components:
            raise serializers.ValidationError("A product needs at least one component.")
        if len(components) > MAX_COMPONENTS:
            raise serializers.ValidationError(f"A product has at most {MAX_COMPONENTS} components.")
        seen: set[int] = set()
        for component in components:
            if component["item"].pk in seen:
                raise serializers.ValidationError(f"Item {component['item'].sku} is listed twice; add the quantities.")
            seen.add(component["item"].pk)
        return components

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        kind = attrs.get("kind", getattr(self.instance, "kind", Product.Kind.STANDARD))
        components = attrs.get("components")
        if components is None and self.instance is not None and "kind" in attrs:
            components = [
                {"item": c.item, "quantity": c.quantity} for c in self.instance.components.select_related("item")
            ]
        if components is not None:
            problem = _kind_problem(kind, components)
            if problem:
                raise serializers.ValidationError({"components": [problem]})
        return attrs


def _kind_problem(kind: str, components: list[dict[str, Any]]) -> str | None:
    """The make-up rules a merchant expects of each kind of product."""
    count = len(components)
    first = components[0]
    if kind == Product.Kind.STANDARD and (count != 1 or first["quantity"] != 1):
        return "A standard product is exactly one item with quantity 1."
    if kind == Product.Kind.MULTIPACK and (count != 1 or first["quantity"] < 2):
        return "A multipack is exactly one item with quantity 2 or more."
    if kind == Product.Kind.WEIGHTED:
        if count != 1:
            return "A weighted product is cut from exactly one bulk item."
        if first["item"].unit == Item.Unit.PIECE:
            return (
                "A weighted product is cut from an item counted in grams or millilitres; "
                f"{first['item'].sku} is counted in pieces."
            )
    if kind == Product.Kind.BUNDLE and count < 2:
        return "A bundle has at least two different items; one item in a quantity is a multipack."
    return None


class MovementSerializer(serializers.ModelSerializer):
    item: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="sku", read_only=True)
    location: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Movement
        fields = [
            "id",
            "item",
            "location",
            "kind",
            "on_hand_delta",
            "reserved_delta",
            "reference",
            "actor",
            "note",
            "idempotency_key",
            "created_at",
        ]
        read_only_fields = fields


class NewMovementSerializer(serializers.Serializer):
    location = serializers.SlugRelatedField(slug_field="code", queryset=Location.objects.all())
    item = serializers.SlugRelatedField(slug_field="sku", queryset=Item.objects.all())
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in RECORDABLE_KINDS])
    quantity = serializers.IntegerField(min_value=-MAX_QUANTITY, max_value=MAX_QUANTITY)
    idempotency_key = serializers.CharField(
        min_length=1,
        max_length=120,
        trim_whitespace=False,
        required=False,
        help_text="Deprecated: send the Idempotency-Key header instead (the header wins; both and different is 400).",
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind, quantity = attrs["kind"], attrs["quantity"]
        if kind != Movement.Kind.ADJUSTMENT and quantity < 0:
            raise serializers.ValidationError(
                {"quantity": [f"Must not be negative for {kind}; use an adjustment to remove stock."]}
            )
        if kind != Movement.Kind.COUNT and quantity == 0:
            raise serializers.ValidationError({"quantity": ["Must not be zero."]})
        if not attrs["location"].is_active:
            raise serializers.ValidationError({"location": ["This location is inactive."]})
        return attrs


class StockLevelSerializer(serializers.ModelSerializer):
    item = serializers.CharField(source="item.sku", read_only=True)
    location = serializers.CharField(source="location.code", read_only=True)
    atp = serializers.SerializerMethodField()

    class Meta:
        model = StockLevel
        fields = ["item", "location", "on_hand", "reserved", "safety", "atp", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField())
    def get_atp(self, level: StockLevel) -> int:
        annotated = getattr(level, "atp_now", None)
        return int(annotated) if annotated is not None else level.atp


class IncidentBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Incident
        fields = ["id", "kind", "shortfall", "detail"]
        read_only_fields = fields


class MovementRecordedSerializer(serializers.Serializer):
    """The answer to a recorded movement: the ledger row, the level after it, and any incident it opened."""

    movement = MovementSerializer()
    level = StockLevelSerializer()
    incident = IncidentBriefSerializer(allow_null=True)
