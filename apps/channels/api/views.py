"""Staff API: channels (by code) and listings (by id); the order watermark (staff or the channel itself)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from apps.channels.api.filters import ListingFilter
from apps.channels.api.push_schema import PUSH_CALLBACKS
from apps.channels.api.serializers import (
    CatalogReadSerializer,
    ChannelSerializer,
    GoLiveRequestSerializer,
    GoLiveSerializer,
    LinkRequestSerializer,
    LinkResultSerializer,
    ListingSerializer,
    OpeningStockRequestSerializer,
    OpeningStockSerializer,
    PlatformLocationsSerializer,
    WatermarkSerializer,
)
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.selectors import listings_availability_cached
from apps.channels.services.config import channel_delete, channel_watermark_set, listing_delete, listings_sync_now
from apps.channels.services.discover import (
    catalog_read_dict,
    catalog_read_latest,
    catalog_read_start,
    catalog_read_under_way,
)
from apps.channels.services.golive import (
    channel_go_live,
    channel_opening_stock,
    channel_pause,
    channel_resume,
)
from apps.channels.services.link import (
    catalog_read_fresh,
    channel_link,
    channel_platform_locations,
    mapping_sheet_read,
)
from apps.core.api.idempotency import IdempotentMixin
from apps.core.api.schema import error_response
from apps.core.authentication import ChannelPrincipal
from apps.core.parsers import StrictJSONParser
from apps.core.permissions import IsStaffToken

_PLATFORM_502 = error_response("`platform_unavailable`: the platform could not be read; `detail` says why, briefly.")
_READING_202 = error_response(
    "`catalog_reading`: a background read of the platform's catalog is under way for this channel (`catalog_read`: "
    "its progress); ask again once `GET catalog-read/` says `done`. Nothing was done."
)


def _reading(channel: Channel) -> Response | None:
    """202 while the channel's catalog is being read in the background and no fresh read is there to use."""
    running = catalog_read_under_way(channel)
    if running is None or catalog_read_fresh(channel) is not None:
        return None
    return Response(
        {
            "code": "catalog_reading",
            "detail": "The platform's catalog is being read in the background; ask again when it is done.",
            "catalog_read": catalog_read_dict(running),
        },
        status=status.HTTP_202_ACCEPTED,
    )


class IsStaffOrThisChannel(BasePermission):
    """Staff, or the channel whose code is in the URL (a marketplace reports its own orders)."""

    message = "A staff token, or this channel's own token, is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        if IsStaffToken().has_permission(request, view):
            return True
        user = request.user
        return isinstance(user, ChannelPrincipal) and user.channel.code == view.kwargs.get("code")


@extend_schema_view(
    create=extend_schema(callbacks=PUSH_CALLBACKS),
    update=extend_schema(callbacks=PUSH_CALLBACKS),
    partial_update=extend_schema(callbacks=PUSH_CALLBACKS),
)
class ChannelViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """Sales channels by code: where and how Stockroom pushes quantities (`push_url`, rate limit, batch size),
    the default coefficient and buffer, and the locations whose stock the channel sells. `secret`, which signs
    the pushes, is write-only.
    """

    serializer_class = ChannelSerializer
    lookup_field = "code"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filterset_fields = ["kind", "is_active"]

    def get_queryset(self) -> QuerySet[Channel]:
        return Channel.objects.order_by("code").prefetch_related(
            Prefetch(
                "channel_locations",
                queryset=ChannelLocation.objects.select_related("location").order_by("priority", "location__code"),
                to_attr="ordered_locations",
            )
        )

    def get_permissions(self) -> list[BasePermission]:
        if self.action == "watermark":
            return [IsStaffOrThisChannel()]
        return [IsStaffToken()]

    @extend_schema(request=WatermarkSerializer, responses=ChannelSerializer)
    @action(detail=True, methods=["post"])
    def watermark(self, request: Request, code: str | None = None) -> Response:
        """Move the order watermark: raises are held while orders_pending_until is past orders_imported_until."""
        channel = self.get_object()
        body = WatermarkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        channel = channel_watermark_set(channel=channel, **body.validated_data)
        return Response(ChannelSerializer(channel).data)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, code: str | None = None) -> Response:
        """Push every listing of the channel again (tier 2)."""
        channel = self.get_object()
        queued = listings_sync_now(listing_ids=list(channel.listings.values_list("pk", flat=True)))
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=ChannelSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, code: str | None = None) -> Response:
        """Stop sending quantities to the platform (a platform incident); work stays queued, orders still come in."""
        channel = channel_pause(channel=self.get_object(), actor=_staff_actor(request))
        return Response(ChannelSerializer(channel).data)

    @extend_schema(request=None, responses=ChannelSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, code: str | None = None) -> Response:
        """Send quantities again (back to `live`): every listing is queued at tier 2."""
        channel = channel_resume(channel=self.get_object(), actor=_staff_actor(request))
        return Response(ChannelSerializer(channel).data)

    @extend_schema(request=None, responses={200: PlatformLocationsSerializer, 502: _PLATFORM_502})
    @action(detail=True, methods=["get"], url_path="platform-locations")
    def platform_locations(self, request: Request, code: str | None = None) -> Response:
        """The platform's stock locations (id, name, active), read now: the ids `settings.location_id` takes.

        502 `platform_unavailable` with a short reason when the platform cannot be read.
        """
        found = channel_platform_locations(channel=self.get_object())
        return Response({"results": [{"id": loc.id, "name": loc.name, "active": loc.active} for loc in found]})

    @extend_schema(
        methods=["GET"],
        request=None,
        responses={200: CatalogReadSerializer, 404: error_response("`not_found`: no catalog read yet.")},
        description="The latest background read of the platform's catalog: `state` (queued, running, done, "
        "failed), `done` of `total` variants, `requests`, `errors`, `error`, and `fresh` (done less than 5 minutes "
        "ago: `link/`, `opening-stock/` and `go-live/` use it instead of reading the platform in the request).",
    )
    @extend_schema(
        methods=["POST"],
        request=inline_serializer(
            name="CatalogReadRequest",
            fields={"again": serializers.BooleanField(default=False, help_text="Read again even when fresh.")},
        ),
        responses={200: CatalogReadSerializer, 202: CatalogReadSerializer},
        description="Read the platform's whole catalog in the background, for large catalogs (thousands of "
        "variants): 202 with the queued read. A read under way, or a fresh finished one (200), is answered as it "
        'is; `{"again": true}` reads again. While one is under way, `link/`, `opening-stock/` and `go-live/` '
        "answer 202 `catalog_reading`.",
    )
    @action(detail=True, methods=["get", "post"], url_path="catalog-read")
    def catalog_read(self, request: Request, code: str | None = None) -> Response:
        """The platform's catalog read in the background (see the GET and POST descriptions)."""
        channel = self.get_object()
        if request.method == "GET":
            latest = catalog_read_latest(channel)
            if latest is None:
                return Response(
                    {"code": "not_found", "detail": "No catalog read yet."}, status=status.HTTP_404_NOT_FOUND
                )
            return Response(catalog_read_dict(latest))
        again = bool(request.data.get("again")) if hasattr(request.data, "get") else False
        read = catalog_read_start(channel=channel, actor=_staff_actor(request), again=again)
        answer = catalog_read_dict(read)
        done = read.state == read.State.DONE
        return Response(answer, status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=LinkRequestSerializer, responses={200: LinkResultSerializer, 202: _READING_202, 502: _PLATFORM_502}
    )
    @action(detail=True, methods=["post"], parser_classes=[StrictJSONParser, MultiPartParser])
    def link(self, request: Request, code: str | None = None) -> Response:
        """Link the platform's variants to products by SKU: a preview (`apply` false, the default) or done.

        A variant matches the product whose code is its SKU, or the item whose SKU it is when exactly one
        standard product contains it; a mapping sheet (`platform_sku,product`) overrides. Variants that
        cannot be pushed are `problems` (`duplicate_sku`, `no_sku`, `untracked`, `not_stocked_at_location`,
        `platform_managed`, `already_linked`) and never linked. Idempotent: run it again to link new variants.
        """
        channel = self.get_object()
        if (reading := _reading(channel)) is not None:
            return reading
        upload = request.FILES.get("mapping")
        given: Any = request.data
        data = given if upload is None else {k: v for k, v in given.items() if k != "mapping"}
        body = LinkRequestSerializer(data=data)
        body.is_valid(raise_exception=True)
        sheet = upload.read() if upload is not None else body.validated_data.get("mapping") or ""
        mapping = mapping_sheet_read(sheet) if sheet else {}
        result = channel_link(
            channel=channel,
            apply=body.validated_data["apply"],
            create_missing=body.validated_data["create_missing"],
            mapping=mapping,
            actor=_staff_actor(request),
        )
        return Response(result.as_dict())

    @extend_schema(
        request=OpeningStockRequestSerializer,
        responses={200: OpeningStockSerializer, 202: _READING_202, 502: _PLATFORM_502},
    )
    @action(detail=True, methods=["post"], url_path="opening-stock")
    def opening_stock(self, request: Request, code: str | None = None) -> Response:
        """The platform's quantities of the linked items as opening stock at a Stockroom location.

        A preview per item (platform quantity, on hand, difference); `apply` books each as a `count` movement
        (reference `opening:<channel>`), once: a second apply books nothing (`already_booked`). Applying also
        needs the permission to record stock movements.
        """
        channel = self.get_object()
        if (reading := _reading(channel)) is not None:
            return reading
        body = OpeningStockRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data["apply"] and not request.user.has_perm("catalog.add_movement"):
            raise PermissionDenied("Booking opening stock needs the permission to record stock movements.")
        result = channel_opening_stock(
            channel=channel,
            platform_location=data["platform_location"],
            location_code=data["location"],
            apply=data["apply"],
            actor=_staff_actor(request),
        )
        return Response(result.as_dict())

    @extend_schema(
        request=GoLiveRequestSerializer,
        responses={
            200: GoLiveSerializer,
            409: error_response(
                "`go_live_refused` with `reasons` [{code, detail}], or `go_live_needs_confirmation` with `first_push` "
                "(listings, changes, to_zero, items [{listing, sku, external_id, from, to, held}]): nothing was done."
            ),
            202: _READING_202,
            502: _PLATFORM_502,
        },
    )
    @action(detail=True, methods=["post"], url_path="go-live")
    def go_live(self, request: Request, code: str | None = None) -> Response:
        """Go live: start sending quantities to the platform.

        409 `go_live_refused` with `reasons` (no locations, no platform location, no linked listing...);
        409 `go_live_needs_confirmation` with `first_push` (each listing whose platform quantity changes:
        sku, from, to; and how many go to 0) unless `{"confirm": true}`. Confirmed: the platform's order
        webhooks are subscribed (existing ones reused), the channel is `live`, and every listing is queued
        for the first push at tier 2, which sends exactly the preview's quantities.
        """
        channel = self.get_object()
        if (reading := _reading(channel)) is not None:
            return reading
        body = GoLiveRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = channel_go_live(channel=channel, confirm=body.validated_data["confirm"], actor=_staff_actor(request))
        return Response(result.as_dict())

    def perform_destroy(self, instance: Channel) -> None:
        channel_delete(channel=instance)


def _staff_actor(request: Request) -> str:
    return f"staff:{request.user.get_username()}"


class IsStaffOrChannelReading(BasePermission):
    """Staff with the model permission, or any channel token for reads (scoped to its own listings)."""

    message = "A staff token, or a channel token for reading its own listings, is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.user, ChannelPrincipal):
            return request.method in SAFE_METHODS
        return IsStaffToken().has_permission(request, view)


@extend_schema_view(
    list=extend_schema(
        description="Staff: every listing (`?channel=CODE` for one channel). A channel token: its own listings "
        "only, each with `available`, the quantity the channel may sell now; page through them for a full "
        "sync, then ask `?updated_since=` for what changed."
    ),
    retrieve=extend_schema(description="One listing; another channel's listing is a 404 to a channel token."),
)
class ListingViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """A channel's SKU for one product, with its own coefficient, buffer, maximum and end-when overrides.

    The quantity pushed is `floor(max(0, ATP - buffer) * coefficient)`, capped by `max_qty`, and 0 at or
    below `end_when`.
    """

    serializer_class = ListingSerializer
    permission_classes = [IsStaffOrChannelReading]
    filterset_class = ListingFilter

    def get_queryset(self) -> QuerySet[Listing]:
        listings = Listing.objects.select_related("channel", "product").order_by("channel__code", "channel_sku", "pk")
        if isinstance(self.request.user, ChannelPrincipal):
            listings = listings.filter(channel_id=self.request.user.channel.pk)
        return listings

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "availability": {}}

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        # The quantities of the listings shown, in one query (or the cache) for the whole page.
        serializer = super().get_serializer(*args, **kwargs)
        if args and self.request.method in SAFE_METHODS:
            shown = args[0] if isinstance(args[0], list | QuerySet) else [args[0]]
            serializer.context["availability"].update(listings_availability_cached([x.pk for x in shown]))
        return serializer

    def perform_destroy(self, instance: Listing) -> None:
        listing_delete(listing=instance)
