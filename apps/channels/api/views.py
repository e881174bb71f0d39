"""Staff API: channels (by code) and listings (by id); the order watermark (staff or the channel itself)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from apps.channels.api.filters import ListingFilter
from apps.channels.api.push_schema import PUSH_CALLBACKS
from apps.channels.api.serializers import ChannelSerializer, ListingSerializer, WatermarkSerializer
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.selectors import listings_availability_cached
from apps.channels.services.config import channel_delete, channel_watermark_set, listing_delete, listings_sync_now
from apps.core.api.idempotency import IdempotentMixin
from apps.core.authentication import ChannelPrincipal
from apps.core.permissions import IsStaffToken


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

    def perform_destroy(self, instance: Channel) -> None:
        channel_delete(channel=instance)


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
