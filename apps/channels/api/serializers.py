"""Staff API shapes of channels and listings (a contract: docs/architecture.md, "The API contract")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
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
    rate_per_s = serializers.FloatField(
        min_value=0.01,
        max_value=10_000,
        required=False,
        allow_null=True,
        help_text="Most requests per second to the platform; null or absent: the connector's default for its "
        "platform (`rate_limit` shows the budget in force).",
    )
    burst = serializers.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        allow_null=True,
        help_text="Requests that may go out at once; null or absent: the connector's default.",
    )
    state = serializers.ChoiceField(
        choices=Channel.State.choices,
        read_only=True,
        help_text="`setup` (a new platform channel: nothing is pushed until go-live), `live`, or `paused` (nothing "
        "pushed; orders still come in). Changed only by the go-live, pause and resume actions.",
    )
    rate_limit = serializers.SerializerMethodField()
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
            "state", "push_url", "rate_per_s", "burst", "rate_limit", "coefficient", "buffer", "locations",
            "batch_size", "can_import", "import_cap_units", "secret", "has_secret", "is_active", "orders_pending",
            "orders_pending_until",
            "orders_imported_until", "last_push_at", "created_at",
        ]  # fmt: skip
        read_only_fields = ["orders_pending_until", "orders_imported_until", "last_push_at", "created_at"]

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"rate_per_s": {"type": "number"}, "burst": {"type": "integer"}},
            "description": "The request budget in force: the channel's own, else its connector's defaults.",
        }
    )
    def get_rate_limit(self, channel: Channel) -> dict[str, Any]:
        rate, burst = channel.rate_limit
        return {"rate_per_s": rate, "burst": burst}

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


class PlatformLocationSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="What the channel's `settings.location_id` holds.")
    name = serializers.CharField()
    active = serializers.BooleanField()


class PlatformLocationsSerializer(serializers.Serializer):
    results = PlatformLocationSerializer(many=True)


# A background read of the platform's catalog (``services.discover``): its progress, never its variants. Inline:
# a declared field named ``errors`` would hide ``Serializer.errors``.
CatalogReadSerializer = inline_serializer(
    name="CatalogRead",
    fields={
        "id": serializers.IntegerField(),
        "state": serializers.ChoiceField(choices=["queued", "running", "done", "failed"]),
        "done": serializers.IntegerField(help_text="Variants read so far."),
        "total": serializers.IntegerField(allow_null=True, help_text="Variants the platform has, when known."),
        "requests": serializers.IntegerField(help_text="Requests sent to the platform (known once done)."),
        "errors": serializers.IntegerField(help_text="Failed attempts."),
        "error": serializers.CharField(allow_blank=True, help_text="Why it failed, briefly."),
        "fresh": serializers.BooleanField(help_text="Done less than 5 minutes ago: the previews use it."),
        "fresh_until": serializers.DateTimeField(allow_null=True),
        "created_at": serializers.DateTimeField(),
        "started_at": serializers.DateTimeField(allow_null=True),
        "finished_at": serializers.DateTimeField(allow_null=True),
    },
)


class LinkRequestSerializer(serializers.Serializer):
    apply = serializers.BooleanField(default=False, help_text="false (default): the preview only.")
    create_missing = serializers.BooleanField(
        default=False,
        help_text="Make an item (unit piece) and a standard product (code = SKU) for each variant nothing matches.",
    )
    mapping = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="A mapping sheet, CSV `platform_sku,product` (header optional), overriding the SKU match; "
        "or upload it as the multipart file `mapping`.",
    )


class LinkMatchSerializer(serializers.Serializer):
    sku = serializers.CharField()
    external_id = serializers.CharField()
    product = serializers.CharField(help_text="The product's code.")
    platform_quantity = serializers.IntegerField(
        allow_null=True, help_text="The platform's quantity at the channel's platform location."
    )
    stockroom_quantity = serializers.IntegerField(help_text="What Stockroom would push (the listing formula).")


class LinkPlatformOnlySerializer(serializers.Serializer):
    sku = serializers.CharField()
    external_id = serializers.CharField()
    title = serializers.CharField()


class LinkStockroomOnlySerializer(serializers.Serializer):
    sku = serializers.CharField()
    product = serializers.CharField()


class LinkProblemSerializer(serializers.Serializer):
    sku = serializers.CharField()
    external_id = serializers.CharField()
    code = serializers.ChoiceField(
        choices=[
            "duplicate_sku",
            "no_sku",
            "untracked",
            "not_stocked_at_location",
            "platform_managed",
            "already_linked",
        ]
    )
    detail = serializers.CharField()


class LinkResultSerializer(serializers.Serializer):
    matched = LinkMatchSerializer(many=True)
    platform_only = LinkPlatformOnlySerializer(many=True)
    stockroom_only = LinkStockroomOnlySerializer(many=True, help_text="Active products no variant matched.")
    problems = LinkProblemSerializer(many=True)
    created = serializers.IntegerField(help_text="Listings this call created (apply) or would create (preview).")


class OpeningStockRequestSerializer(serializers.Serializer):
    platform_location = serializers.CharField(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="A platform location id (from `platform-locations`); blank or absent: the channel's own "
        "`settings.location_id`.",
    )
    location = serializers.SlugField(max_length=40, help_text="The Stockroom location code the stock is booked at.")
    apply = serializers.BooleanField(default=False)


class OpeningStockLineSerializer(serializers.Serializer):
    sku = serializers.CharField(help_text="The item's SKU.")
    item = serializers.IntegerField()
    platform_quantity = serializers.IntegerField()
    on_hand = serializers.IntegerField(help_text="Stockroom's on hand at the location now.")
    difference = serializers.IntegerField()
    booked = serializers.BooleanField(help_text="Its opening stock was booked before this call.")


class OpeningStockSerializer(serializers.Serializer):
    location = serializers.CharField()
    platform_location = serializers.CharField()
    applied = serializers.BooleanField()
    booked = serializers.IntegerField(help_text="Count movements this call booked.")
    already_booked = serializers.IntegerField(help_text="Items booked before: nothing is booked for them again.")
    results = OpeningStockLineSerializer(many=True)


class GoLiveRequestSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(default=False, help_text="false: answer 409 with the first push's preview.")


class FirstPushChangeSerializer(serializers.Serializer):
    listing = serializers.IntegerField()
    sku = serializers.CharField()
    external_id = serializers.CharField()
    # "from"/"to" are Python keywords: declared below
    held = serializers.BooleanField(help_text="A raise held back until the channel's orders are imported.")


FirstPushChangeSerializer._declared_fields["from"] = serializers.IntegerField(
    allow_null=True, help_text="The platform's quantity now (null: unknown)."
)
FirstPushChangeSerializer._declared_fields["to"] = serializers.IntegerField(help_text="What the first push sends.")


class FirstPushSerializer(serializers.Serializer):
    listings = serializers.IntegerField(help_text="Listings the full push sends.")
    changes = serializers.IntegerField(help_text="Of them, how many change the platform's quantity.")
    to_zero = serializers.IntegerField(help_text="Of the changes, how many go to 0.")
    items = FirstPushChangeSerializer(many=True)


class ChannelWebhookSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The platform's id of the subscription.")
    topic = serializers.CharField()
    address = serializers.CharField()
    active = serializers.BooleanField()


class GoLiveSerializer(serializers.Serializer):
    state = serializers.CharField()
    first_push = FirstPushSerializer()
    queued = serializers.IntegerField(help_text="Listings queued for the first push (tier 2).")
    webhooks = ChannelWebhookSerializer(many=True)
