"""The only place that locks sync work rows: always in listing order, like the writers' upsert.

Writers upsert SyncWork rows in listing order (``services.work``); a pusher that deletes or
updates rows in another order could deadlock with them, so it locks here first.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.channels.models import Channel, SyncWork


def sync_work_for_update(listing_ids: Iterable[int]) -> list[int]:
    """Lock the pending rows of these listings in listing order; returns the listing ids found."""
    ids = sorted(set(listing_ids))
    if not ids:
        return []
    return list(
        SyncWork.objects.select_for_update(of=("self",))
        .filter(listing_id__in=ids)
        .order_by("listing_id")
        .values_list("listing_id", flat=True)
    )


def channel_for_update(channel_id: int) -> Channel:
    """Lock one channel row (its order watermark moves under this lock)."""
    return Channel.objects.select_for_update().get(pk=channel_id)
