"""Reads of channel sync that span models: sync lag for the staff dashboard and the admin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection

from apps.catalog.models import Incident

_SYNC_LAG = """
SELECT c.id, c.code, c.name,
       COUNT(w.id) FILTER (WHERE w.state = 'pending') AS pending,
       EXTRACT(EPOCH FROM (now() - MIN(w.enqueued_at) FILTER (WHERE w.state = 'pending')))::float AS oldest,
       c.last_push_at,
       COUNT(w.id) FILTER (WHERE w.state = 'dead') AS dead
  FROM channels_channel c
  LEFT JOIN channels_syncwork w ON w.channel_id = c.id
 WHERE c.is_active OR %(include_inactive)s
 GROUP BY c.id, c.code, c.name, c.last_push_at
 ORDER BY c.code
"""


def sync_lag_rows(*, include_inactive: bool = False) -> dict[int, dict[str, Any]]:
    """Per channel id: pending, oldest pending age in seconds, last push, dead letters. One query."""
    with connection.cursor() as cursor:
        cursor.execute(_SYNC_LAG, {"include_inactive": include_inactive})
        rows = cursor.fetchall()
    return {
        channel_id: {
            "channel": code,
            "name": name,
            "pending": int(pending),
            "oldest_pending_seconds": None if oldest is None else max(0.0, float(oldest)),
            "last_push_at": last_push_at,
            "dead": int(dead),
        }
        for channel_id, code, name, pending, oldest, last_push_at, dead in rows
    }


def sync_lag_by_channel() -> list[dict[str, Any]]:
    """For the staff dashboard: one dict per active channel, by code.

    Keys: channel (code), name, pending (int), oldest_pending_seconds (float | None: age of the
    oldest change not pushed yet), last_push_at (datetime | None), dead (int: dead letters).
    """
    return list(sync_lag_rows().values())


# Incidents that put every listing of their item to 0 at once (design section 3).
ZERO_ON_INCIDENT = (Incident.Kind.OVERSELL, Incident.Kind.POS_INTO_RESERVED)

# Listings that must show 0 because of an open incident whose cause still holds, for one of the
# items their product contains (design section 11). The cause, per kind:
# - oversell: the imported order named by the incident (``order:<id>``) is still open and one of
#   its lines selling the item has units no stock covers; an oversell naming no order holds
#   while the incident is open;
# - pos_into_reserved: at the incident's location the item has less on hand than is reserved.
# Anything else, and incidents staff resolved, zero nothing.
_ZEROED_BY_INCIDENT = """
SELECT DISTINCT l.id
  FROM channels_listing l
  JOIN catalog_productcomponent pc ON pc.product_id = l.product_id
  JOIN catalog_incident i ON i.item_id = pc.item_id AND i.status = 'open' AND i.kind = ANY(%(kinds)s)
 WHERE l.id = ANY(%(listings)s::bigint[])
   AND CASE
         WHEN i.kind = %(pos_into_reserved)s THEN
              i.location_id IS NULL
              OR EXISTS (SELECT 1 FROM catalog_stocklevel s
                          WHERE s.item_id = i.item_id AND s.location_id = i.location_id AND s.reserved > s.on_hand)
         WHEN i.reference ~ '^order:[0-9]{1,18}$' THEN
              EXISTS (SELECT 1
                        FROM orders_order o
                        JOIN orders_orderline ol ON ol.order_id = o.id AND ol.unallocated_quantity > 0
                        JOIN catalog_productcomponent opc ON opc.product_id = ol.product_id AND opc.item_id = i.item_id
                       WHERE o.id = substring(i.reference from 7)::bigint
                         AND o.status = ANY(%(open)s))
         ELSE true
       END
"""


def listings_zeroed_by_incident(listing_ids: Iterable[int]) -> set[int]:
    """Which of these listings an open incident still holds at 0 (its cause not gone). One query."""
    ids = sorted(set(listing_ids))
    if not ids:
        return set()
    from apps.orders.models import Order

    params: dict[str, Any] = {
        "listings": ids,
        "kinds": [str(kind) for kind in ZERO_ON_INCIDENT],
        "pos_into_reserved": Incident.Kind.POS_INTO_RESERVED.value,
        "open": [str(status) for status in Order.OPEN_STATUSES],
    }
    with connection.cursor() as cursor:
        cursor.execute(_ZEROED_BY_INCIDENT, params)
        return {row[0] for row in cursor.fetchall()}
