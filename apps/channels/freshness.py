"""How far a listing's number can be trusted now: ``ok``, ``updating`` or ``stale`` (docs/stream.md).

- ``stale``: a supplier location the channel sells from, holding one of the product's items, is past its
  max age (its stock counts as 0 until a feed arrives), or the last reconciliation found the channel
  showing another number and the repair has not landed yet (its sync work is still queued).
- ``updating``: the channel's order import is behind (orders it accepted are not all counted yet: the
  number may still fall), or a change for this listing is queued and not settled (its push failed at
  least once, or died).
- ``ok`` otherwise. ``stale`` wins over ``updating``.

One query for any number of listings; the availability API and the stream both read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from django.db import connection

from apps.catalog.stock.atp import location_sells_sql

OK, UPDATING, STALE = "ok", "updating", "stale"
STATES = (OK, UPDATING, STALE)

# An active supplier location that does not sell is one past its max age (the rule is atp.py's).
LISTING_STATE_SQL = """
SELECT l.id, l.channel_id,
       CASE
         WHEN w.reason = 'reconcile' THEN 'stale'
         WHEN EXISTS (
              SELECT 1
                FROM channels_channellocation cl
                JOIN catalog_location loc ON loc.id = cl.location_id AND loc.is_active AND loc.kind = 'supplier'
                JOIN catalog_productcomponent pc ON pc.product_id = l.product_id
                JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = loc.id
               WHERE cl.channel_id = l.channel_id AND NOT {location_sells}) THEN 'stale'
         WHEN c.orders_pending_until IS NOT NULL
              AND (c.orders_imported_until IS NULL OR c.orders_imported_until < c.orders_pending_until) THEN 'updating'
         WHEN w.attempts > 0 OR w.state = 'dead' THEN 'updating'
         ELSE 'ok'
       END
  FROM channels_listing l
  JOIN channels_channel c ON c.id = l.channel_id
  LEFT JOIN channels_syncwork w ON w.listing_id = l.id
 WHERE l.id = ANY(%(listings)s::bigint[])
   AND (%(channels)s::bigint[] IS NULL OR l.channel_id = ANY(%(channels)s::bigint[]))
""".replace("{location_sells}", location_sells_sql("loc"))


class ListingState(NamedTuple):
    channel_id: int
    state: str


def listings_state(listing_ids: Sequence[int], *, channel_ids: Sequence[int] | None = None) -> dict[int, ListingState]:
    """The freshness state of each listing (of these channels only, when given); missing ids are absent."""
    ids = sorted(set(listing_ids))
    if not ids:
        return {}
    channels = sorted(set(channel_ids)) if channel_ids is not None else None
    with connection.cursor() as cursor:
        cursor.execute(LISTING_STATE_SQL, {"listings": ids, "channels": channels})
        return {listing_id: ListingState(channel_id, state) for listing_id, channel_id, state in cursor.fetchall()}
