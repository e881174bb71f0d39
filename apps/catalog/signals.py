"""What other apps hear when stock moves.

``stock_changed`` is sent inside the writing transaction, with the (item_id, location_id)
pairs that moved, so that listeners (channel sync) can enqueue their work atomically.
Listeners that talk to the outside world must defer with ``transaction.on_commit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from django.dispatch import Signal


class SyncPriority(IntEnum):
    """Channel sync tiers: lower is more urgent."""

    SALE = 1  # sales, oversell risk, a listing reaching 0: seconds
    MANUAL = 2  # manual adjustments and counts: within ~30 s
    BACKGROUND = 3  # supplier feeds, settings, forecasts: within minutes


@dataclass(frozen=True)
class ListingsReached:
    """What a single-statement writer already did for its move, so that listeners need not ask again:
    the listings the move reaches (``catalog.selectors.LISTINGS_REACHED_SQL``) and the channels whose
    sync work it upserted in the same statement (``channels.services.work.SYNC_WORK_UPSERT``)."""

    listing_ids: list[int]
    sync_channel_ids: list[int]


# kwargs: pairs: list[tuple[int, int]], priority: SyncPriority, reason: str, and optionally
# reached: ListingsReached (absent: listeners find the listings themselves)
stock_changed = Signal()

# kwargs: product_ids: list[int], priority: SyncPriority, reason: str (a product's make-up changed)
products_changed = Signal()

# kwargs: incident_id: int. Sent after commit when an incident opens (oversell, sale into reserved, ...).
incident_opened = Signal()

# kwargs: item_ids: list[int], reason: str. Sent inside the writer's transaction when the cause of an
# incident about these items may be gone without any stock moving (an oversold order closed, an
# incident resolved), so that channels told 0 for it are told the truth again.
incident_cause_changed = Signal()
