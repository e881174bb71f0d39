"""Factories for orders tests: a channel selling from its locations, listings, and the invariants."""

from __future__ import annotations

from django.db.models import F, Sum

from apps.catalog.models import Location, Movement, Product, StockLevel
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.orders.models import Reservation

# The webhook secret of the scripted platform channel (fixture ``platform``).
PLATFORM_WEBHOOK_SECRET = "whsec-scripted"


def channel_of(code: str, locations: list[Location], kind: str = Channel.Kind.WEBSHOP) -> Channel:
    """A channel selling from these locations, in this priority order."""
    channel, _ = Channel.objects.get_or_create(code=code, defaults={"name": f"Channel {code}", "kind": kind})
    for priority, location in enumerate(locations):
        ChannelLocation.objects.get_or_create(channel=channel, location=location, defaults={"priority": priority})
    return channel


def listing_of(channel: Channel, sku: str, product: Product, **overrides) -> Listing:
    listing, _ = Listing.objects.get_or_create(
        channel=channel, channel_sku=sku, defaults={"product": product, **overrides}
    )
    return listing


def stock_invariants() -> dict[str, int]:
    """Check what must always hold; returns oversold units (reserved beyond on_hand - safety)."""
    open_by_pair = {
        (row["item_id"], row["location_id"]): row["open"]
        for row in Reservation.objects.values("item_id", "location_id").annotate(
            open=Sum(F("quantity") - F("fulfilled") - F("released"))
        )
    }
    ledger = {
        (row["item_id"], row["location_id"]): (row["on_hand"], row["reserved"])
        for row in Movement.objects.values("item_id", "location_id").annotate(
            on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
        )
    }
    oversold = 0
    for level in StockLevel.objects.all():
        pair = (level.item_id, level.location_id)
        assert level.reserved == open_by_pair.get(pair, 0), f"reserved {level.reserved} != open reservations at {pair}"
        assert (level.on_hand, level.reserved) == ledger.get(pair, (0, 0)), f"ledger does not sum to the level {pair}"
        oversold += max(0, level.reserved + level.safety - level.on_hand)
    return {"oversold": oversold}
