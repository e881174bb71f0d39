"""Channel and listing settings, the order watermark, and "sync now": every change queues sync work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import structlog
from django.db import transaction
from django.db.models import F, ProtectedError
from django.db.models.functions import Least
from django.utils import timezone

from apps.channels.locks import channel_for_update, sync_work_for_update
from apps.channels.models import Channel, ChannelLocation, Listing, SyncPriority, SyncWork
from apps.channels.services.work import sync_dispatch, sync_work_enqueue
from apps.core.errors import Conflict

log = structlog.get_logger("stockroom.channels")

CHANNEL_FIELDS = (
    "code", "name", "kind", "push_url", "secret", "rate_per_s", "burst", "batch_size", "coefficient", "buffer",
    "is_active", "can_import", "import_cap_units",
)  # fmt: skip
LISTING_FIELDS = ("channel", "channel_sku", "product", "coefficient", "buffer", "max_qty", "end_when", "is_active")
# Changing these can change what the channel is told, or where it is told.
_CHANNEL_SYNC_FIELDS = {"push_url", "coefficient", "buffer", "is_active"}


def _set_locations(channel: Channel, location_ids: Sequence[int]) -> None:
    """The channel sells from these locations, in this order (the order orders take from them)."""
    ChannelLocation.objects.filter(channel=channel).delete()
    ChannelLocation.objects.bulk_create(
        [ChannelLocation(channel=channel, location_id=loc, priority=i) for i, loc in enumerate(location_ids)]
    )


@transaction.atomic
def channel_create(*, fields: Mapping[str, Any], location_ids: Sequence[int] = ()) -> Channel:
    channel = Channel.objects.create(**{k: v for k, v in fields.items() if k in CHANNEL_FIELDS})
    _set_locations(channel, location_ids)
    log.info("channel_created", channel=channel.code)
    return channel


@transaction.atomic
def channel_update(
    *,
    channel: Channel,
    fields: Mapping[str, Any],
    location_ids: Sequence[int] | None = None,
    priority: SyncPriority = SyncPriority.BACKGROUND,
) -> Channel:
    """Change settings; anything that can move a quantity queues every listing.

    At tier 3 by default (settings changed through the API); a merchant's hand edit in the
    admin asks for tier 2, as staff's "sync now" does.
    """
    changed = {k for k, v in fields.items() if k in CHANNEL_FIELDS and getattr(channel, k) != v}
    for name in changed:
        setattr(channel, name, fields[name])
    if changed:
        channel.save(update_fields=sorted(changed))
    if location_ids is not None:
        current = list(channel.channel_locations.order_by("priority").values_list("location_id", flat=True))
        if current != list(location_ids):
            _set_locations(channel, location_ids)
            changed.add("locations")
    if changed & (_CHANNEL_SYNC_FIELDS | {"locations"}):
        sync_work_enqueue(
            channel_ids=[channel.pk],
            priority=priority,
            reason="channel_settings",
            repush="push_url" in changed,
        )
    log.info("channel_updated", channel=channel.code, fields=sorted(changed))
    return channel


def channel_delete(*, channel: Channel) -> None:
    """Remove a channel with its listings and tokens; refused while other records (orders) refer to it."""
    try:
        with transaction.atomic():
            channel.delete()
    except ProtectedError as err:
        raise Conflict("The channel still has orders; deactivate it instead (is_active: false).") from err
    log.info("channel_deleted", channel=channel.code)


@transaction.atomic
def listing_create(*, fields: Mapping[str, Any], priority: SyncPriority = SyncPriority.BACKGROUND) -> Listing:
    listing = Listing.objects.create(**{k: v for k, v in fields.items() if k in LISTING_FIELDS})
    sync_work_enqueue(listing_ids=[listing.pk], priority=priority, reason="listing_created")
    return listing


@transaction.atomic
def listings_create(
    *, rows: Sequence[Mapping[str, Any]], priority: SyncPriority = SyncPriority.BACKGROUND
) -> list[Listing]:
    """Many new listings at once (a catalog import): as ``listing_create``, one sync-work upsert for them all."""
    listings = Listing.objects.bulk_create(
        [Listing(**{k: v for k, v in fields.items() if k in LISTING_FIELDS}) for fields in rows], batch_size=2000
    )
    sync_work_enqueue(listing_ids=[listing.pk for listing in listings], priority=priority, reason="listing_created")
    return listings


@transaction.atomic
def listing_update(
    *, listing: Listing, fields: Mapping[str, Any], priority: SyncPriority = SyncPriority.BACKGROUND
) -> Listing:
    """Change a listing's settings and queue its push (tier 3 by default, tier 2 for an admin edit)."""
    changed = {k for k, v in fields.items() if k in LISTING_FIELDS and getattr(listing, k) != v}
    for name in changed:
        setattr(listing, name, fields[name])
    if changed:
        names = {f"{n}_id" if n in ("channel", "product") else n for n in changed}
        listing.save(update_fields=sorted(names | {"updated_at"}))
        sync_work_enqueue(
            listing_ids=[listing.pk],
            priority=priority,
            reason="listing_settings",
            repush="channel_sku" in changed or "channel" in changed,
        )
    return listing


def listing_delete(*, listing: Listing) -> None:
    try:
        with transaction.atomic():
            listing.delete()
    except ProtectedError as err:
        raise Conflict("The listing still has orders; deactivate it instead (is_active: false).") from err


@transaction.atomic
def listings_sync_now(*, listing_ids: Sequence[int]) -> int:
    """Staff asked: push these listings again (tier 2), even if the channel already shows the quantity."""
    return sync_work_enqueue(
        listing_ids=list(listing_ids), priority=SyncPriority.MANUAL, reason="sync_now", repush=True
    ).listings


@transaction.atomic
def channel_watermark_set(
    *, channel: Channel, orders_pending_until: datetime | None = None, orders_imported_until: datetime | None = None
) -> Channel:
    """Move the order watermark forward; it never moves back.

    ``orders_pending_until``: the channel accepted orders up to then (it says so, or an
    order notice arrived). ``orders_imported_until``: orders up to then are imported here.
    While pending is ahead of imported, pushes never raise a listing (section 5). When the
    import catches up, the raises that were held back go out at tier 2.
    """
    locked = channel_for_update(channel.pk)
    was_pending = locked.has_orders_pending
    if orders_pending_until and (
        locked.orders_pending_until is None or orders_pending_until > locked.orders_pending_until
    ):
        locked.orders_pending_until = orders_pending_until
    if orders_imported_until and (
        locked.orders_imported_until is None or orders_imported_until > locked.orders_imported_until
    ):
        locked.orders_imported_until = orders_imported_until
    locked.save(update_fields=["orders_pending_until", "orders_imported_until"])
    if was_pending and not locked.has_orders_pending:
        held = SyncWork.objects.filter(
            channel=locked,
            state=SyncWork.State.PENDING,
            next_attempt_at__gt=timezone.now(),
            last_error__startswith="held",
        )
        sync_work_for_update(held.values_list("listing_id", flat=True))
        released = held.update(
            next_attempt_at=timezone.now(), last_error="", priority=Least(F("priority"), SyncPriority.MANUAL)
        )
        if released:
            transaction.on_commit(partial(sync_dispatch, channels_by_priority={SyncPriority.SALE: [locked.pk]}))
        log.info("channel_orders_imported", channel=locked.code, released=released)
    return locked
