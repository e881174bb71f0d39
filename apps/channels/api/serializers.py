"""Staff API shapes of channels and listings (design section 8, contract)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from apps.catalog.models import Location, Product
from apps.channels.connectors import CONNECTOR_CHOICES
from apps.channels.models import Channel, Listing
from apps.channels.selectors import listings_availability_cached
from apps.channels.services.config import (
    WATERMARK_MAX_AHEAD,
    channel_create,
    channel_update,
    listing_create,
    listing_update,
    watermark_limit,
)
from apps.channels.services.connection import channel_credential_names


class ChannelSerializer(serializers.ModelSerializer):
    code = serializers.SlugField(max_length=40, validators=[UniqueValidator(queryset=Channel.objects.all())])
    locations = serializers.ListField(
        child=serializers.SlugField(max_length=40),
        required=False,
        write_only=True,  # read back by to_representation, from the ordered links
        help_text="Location codes the channel sells from, in the order orders take from them.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=200,
        style={"input_type": "password"},
        help_text="Signs pushes (HMAC-SHA256); never returned.",
    )
    rate_per_s = serializers.FloatField(min_value=0.01, max_value=10_000)
    burst = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    batch_size = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    coefficient = serializers.DecimalField(max_digits=4, decimal_places=3, min_value=0, max_value=1, required=False)
    buffer = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    can_import = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="May send orders in import mode (already sold, never refused). Reads the effective value; "
        "null or absent: by kind (marketplace and delivery yes, webshop and point of sale no).",
    )
    import_cap_units = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        allow_null=True,
        help_text="Most units one imported line may carry (beyond: 422 implausible_quantity and an incident). "
        "null: the larger of 100 and 10x the units available at the time.",
    )
    has_secret = serializers.SerializerMethodField()
    connector = serializers.ChoiceField(
        choices=CONNECTOR_CHOICES,
        required=False,
        help_text="How Stockroom talks to the channel: `stockroom` (the signed push protocol to `push_url`), "
        "`shopify`, `woocommerce` or `amazon` (the platform's own API, configured by `settings` and "
        "`credentials`).",
    )
    settings = serializers.DictField(
        required=False,
        help_text="The connector's settings (shop URL, location...), checked by the connector: each refused "
        "key is an error entry `settings.<key>`. Nothing secret goes here.",
    )
    credentials = serializers.DictField(
        write_only=True,
        required=False,
        help_text="The connector's credentials (access tokens, keys), stored encrypted and never returned. "
        "Keys you send replace the stored ones, keys you leave out keep theirs, `null` removes one; "
        "a new `connector` starts from none.",
    )
    has_credentials = serializers.SerializerMethodField()
    credential_fields = serializers.SerializerMethodField()
    orders_pending = serializers.BooleanField(source="has_orders_pending", read_only=True)

    class Meta:
        model = Channel
        fields = [
            "code", "name", "kind", "connector", "settings", "credentials", "has_credentials", "credential_fields",
            "push_url", "rate_per_s", "burst", "coefficient", "buffer", "locations",
            "batch_size", "can_import", "import_cap_units", "secret", "has_secret", "is_active", "orders_pending",
            "orders_pending_until",
            "orders_imported_until", "last_push_at", "created_at",
        ]  # fmt: skip
        read_only_fields = ["orders_pending_until", "orders_imported_until", "last_push_at", "created_at"]

    def get_has_secret(self, channel: Channel) -> bool:
        return bool(channel.secret)

    @extend_schema_field(serializers.BooleanField(help_text="Whether credentials are stored (never their values)."))
    def get_has_credentials(self, channel: Channel) -> bool:
        return bool(channel.credentials_encrypted)

    @extend_schema_field(
        serializers.ListField(
            child=serializers.CharField(), help_text="The names of the credentials stored, never their values."
        )
    )
    def get_credential_fields(self, channel: Channel) -> list[str]:
        return channel_credential_names(channel)

    def to_representation(self, channel: Channel) -> dict[str, Any]:
        data = super().to_representation(channel)
        links = getattr(channel, "ordered_locations", None)
        if links is None:
            links = channel.channel_locations.select_related("location").order_by("priority", "location__code")
        data["locations"] = [link.location.code for link in links]
        data["can_import"] = channel.imports_allowed
        return data

    def validate_code(self, value: str) -> str:
        if self.instance is not None and value != self.instance.code:
            raise serializers.ValidationError("A channel's code cannot change; tokens and pushes refer to it.")
        return value

    def validate_locations(self, codes: list[str]) -> list[int]:
        if len(set(codes)) != len(codes):
            raise serializers.ValidationError("Each location may appear once.")
        found = dict(Location.objects.filter(code__in=codes).values_list("code", "pk"))
        missing = [code for code in codes if code not in found]
        if missing:
            raise serializers.ValidationError(f"Unknown location(s): {', '.join(missing)}.")
        return [found[code] for code in codes]

    def create(self, validated: dict[str, Any]) -> Channel:
        location_ids = validated.pop("locations", [])
        return channel_create(fields=validated, location_ids=location_ids)

    def update(self, channel: Channel, validated: dict[str, Any]) -> Channel:
        location_ids = validated.pop("locations", None)
        channel = channel_update(channel=channel, fields=validated, location_ids=location_ids)
        channel.__dict__.pop("ordered_locations", None)  # prefetched before the change
        return channel


class ListingSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="code", queryset=Channel.objects.all())
    product = serializers.SlugRelatedField(slug_field="code", queryset=Product.objects.all())
    coefficient = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=0, max_value=1, required=False, allow_null=True
    )
    buffer = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    max_qty = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    end_when = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    external_id = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The platform's id of what is sold: Shopify inventory item GID, WooCommerce product or variation "
        "id, Amazon seller SKU. Unique per channel; empty for the Stockroom push protocol.",
    )
    available = serializers.SerializerMethodField(
        help_text="What the channel may sell now (its ATP with buffer, coefficient, max_qty and end_when applied)."
    )

    class Meta:
        model = Listing
        fields = [
            "id", "channel", "channel_sku", "external_id", "product", "coefficient", "buffer", "max_qty", "end_when",
            "is_active", "available", "last_pushed_qty", "last_pushed_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["last_pushed_qty", "last_pushed_at", "created_at", "updated_at"]
        validators = [
            UniqueTogetherValidator(
                queryset=Listing.objects.all(),
                fields=["channel", "channel_sku"],
                message="This channel already has a listing with this channel_sku.",
            )
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        channel = attrs.get("channel", getattr(self.instance, "channel", None))
        external_id = attrs.get("external_id", getattr(self.instance, "external_id", ""))
        if channel is not None and external_id:
            clash = Listing.objects.filter(channel=channel, external_id=external_id)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError(
                    {"external_id": ["This channel already has a listing with this external_id."]}, code="unique"
                )
        return attrs

    def get_available(self, listing: Listing) -> int | None:
        known = self.context.get("availability", {}).get(listing.pk)
        if known is None:  # a listing just written: read it now
            known = listings_availability_cached([listing.pk]).get(listing.pk)
        return known.available if known is not None else None

    def create(self, validated: dict[str, Any]) -> Listing:
        return listing_create(fields=validated)

    def update(self, listing: Listing, validated: dict[str, Any]) -> Listing:
        return listing_update(listing=listing, fields=validated)


class WatermarkSerializer(serializers.Serializer):
    orders_pending_until = serializers.DateTimeField(required=False, allow_null=True)
    orders_imported_until = serializers.DateTimeField(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("orders_pending_until") and not attrs.get("orders_imported_until"):
            raise serializers.ValidationError("Give orders_pending_until, orders_imported_until, or both.")
        limit = watermark_limit()
        ahead = {
            name: f"May be at most {WATERMARK_MAX_AHEAD.seconds // 60} minutes ahead of Stockroom's clock "
            f"({limit - WATERMARK_MAX_AHEAD:%Y-%m-%dT%H:%M:%SZ})."
            for name in ("orders_pending_until", "orders_imported_until")
            if attrs.get(name) and attrs[name] > limit
        }
        if ahead:
            raise serializers.ValidationError(ahead)
        return attrs
