"""Reads of channels that span models: what a listing shows, which listings a move reaches, sync lag.

A listing's quantity (docs/architecture.md, "Stock, ATP and listing quantity"), from its product's ATP
(``apps.catalog.stock.atp``) summed over the channel's locations:
q = floor(max(0, atp - buffer) * coefficient), then q = min(q, max_qty), then 0 if q <= end_when.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from apps.catalog.models import Incident
from apps.catalog.stock.atp import product_atp_sql
from apps.channels.metrics import push_totals

LISTING_ATP_SQL = f"""
WITH wanted AS (
    SELECT l.id, l.channel_id, l.product_id
      FROM channels_listing l
     WHERE l.id = ANY(%(listings)s::bigint[])
), per_location AS (
    SELECT w.id AS listing_id, cl.location_id, MAX(loc.stock_valid_until) AS valid_until,
           {product_atp_sql("s", "loc", "pc")} AS atp
      FROM wanted w
      JOIN channels_channellocation cl ON cl.channel_id = w.channel_id
      JOIN catalog_location loc ON loc.id = cl.location_id AND loc.is_active
      JOIN catalog_productcomponent pc ON pc.product_id = w.product_id
      LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = cl.location_id
     GROUP BY w.id, cl.location_id
)
SELECT w.id, l.channel_sku, COALESCE(SUM(p.atp), 0)::bigint AS atp,
       COALESCE(l.buffer, c.buffer) AS buffer, COALESCE(l.coefficient, c.coefficient) AS coefficient,
       l.max_qty, l.end_when, l.is_active AND c.is_active AS active,
       MIN(p.valid_until) FILTER (WHERE p.valid_until > now()) AS valid_until
  FROM wanted w
  JOIN channels_listing l ON l.id = w.id
  JOIN channels_channel c ON c.id = l.channel_id
  LEFT JOIN per_location p ON p.listing_id = w.id
 GROUP BY w.id, l.channel_sku, l.buffer, c.buffer, l.coefficient, c.coefficient, l.max_qty, l.end_when,
          l.is_active, c.is_active
"""


def listing_quantity(*, atp: int, buffer: int, coefficient: Decimal, max_qty: int | None, end_when: int | None) -> int:
    """The quantity a channel shows for a listing, from the summed product ATP."""
    q = math.floor(Decimal(max(0, atp - buffer)) * Decimal(coefficient))
    if max_qty is not None:
        q = min(q, max_qty)
    if end_when is not None and q <= end_when:
        q = 0
    return q


@dataclass(frozen=True)
class ListingAvailability:
    listing_id: int
    channel_sku: str
    atp: int  # product ATP summed over the channel's locations
    available: int  # what the channel is told
    # When a location's stock stops counting (a supplier feed reaching its max age), the answer changes
    # without any write; caches must not keep it past this moment.
    valid_until: datetime | None = None


def listings_availability(listing_ids: Sequence[int]) -> dict[int, ListingAvailability]:
    """Availability of many listings in one query, whatever their number."""
    ids = sorted(set(listing_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(LISTING_ATP_SQL, {"listings": ids})
        rows = cursor.fetchall()
    result = {}
    for listing_id, sku, atp, buffer, coefficient, max_qty, end_when, active, valid_until in rows:
        available = (
            listing_quantity(atp=atp, buffer=buffer, coefficient=coefficient, max_qty=max_qty, end_when=end_when)
            if active
            else 0
        )
        result[listing_id] = ListingAvailability(listing_id, sku, int(atp), available, valid_until)
    return result


def listings_availability_cached(listing_ids: Sequence[int]) -> dict[int, ListingAvailability]:
    """``listings_availability`` through the Redis cache; never older than the last committed change.

    See ``apps.channels.availability_cache`` for the invalidation scheme. With Redis unreachable the
    answer comes straight from PostgreSQL.
    """
    from apps.channels.availability_cache import availability_cached

    return availability_cached(listing_ids, compute=listings_availability)


# Listings whose quantity a move of (item_id, location_id) levels can change: every product
# containing the item, in every channel selling from the location. ``{moved}`` is a relation
# aliased ``m`` with item_id and location_id; ``live`` says whether the listing and its channel
# are active.
LISTINGS_REACHED_SQL = """
SELECT DISTINCT l.id AS listing_id, l.channel_id, (l.is_active AND c.is_active) AS live
  FROM {moved}
  JOIN catalog_productcomponent pc ON pc.item_id = m.item_id
  JOIN channels_listing l ON l.product_id = pc.product_id
  JOIN channels_channellocation cl ON cl.channel_id = l.channel_id AND cl.location_id = m.location_id
  JOIN channels_channel c ON c.id = l.channel_id
"""
_MOVED_PAIRS = "unnest(%(items)s::bigint[], %(locations)s::bigint[]) AS m(item_id, location_id)"
LISTINGS_AFFECTED_SQL = LISTINGS_REACHED_SQL.format(moved=_MOVED_PAIRS)


def listings_reached(pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Listings whose quantity can move when these (item_id, location_id) levels move: every product
    containing the item, in every channel that sells from the location. One query."""
    wanted = sorted(set(pairs))
    if not wanted:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            LISTINGS_AFFECTED_SQL, {"items": [i for i, _ in wanted], "locations": [loc for _, loc in wanted]}
        )
        return sorted(row[0] for row in cursor.fetchall())


_SYNC_LAG = """
SELECT c.id, c.code, c.name, c.connector,
       COUNT(w.id) FILTER (WHERE w.state = 'pending') AS pending,
       EXTRACT(EPOCH FROM (now() - MIN(w.enqueued_at) FILTER (WHERE w.state = 'pending')))::float AS oldest,
       c.last_push_at,
       COUNT(w.id) FILTER (WHERE w.state = 'dead') AS dead
  FROM channels_channel c
  LEFT JOIN channels_syncwork w ON w.channel_id = c.id
 WHERE c.is_active OR %(include_inactive)s
 GROUP BY c.id, c.code, c.name, c.connector, c.last_push_at
 ORDER BY c.code
"""


def sync_lag_rows(*, include_inactive: bool = False) -> dict[int, dict[str, Any]]:
    """Per channel id: connector, pending, oldest pending age in seconds, last push, dead letters. One query."""
    with connection.cursor() as cursor:
        cursor.execute(_SYNC_LAG, {"include_inactive": include_inactive})
        rows = cursor.fetchall()
    return {
        channel_id: {
            "channel": code,
            "name": name,
            "connector": connector,
            "pending": int(pending),
            "oldest_pending_seconds": None if oldest is None else max(0.0, float(oldest)),
            "last_push_at": last_push_at,
            "dead": int(dead),
        }
        for channel_id, code, name, connector, pending, oldest, last_push_at, dead in rows
    }


def sync_lag_by_channel() -> list[dict[str, Any]]:
    """For the staff dashboard: one dict per active channel, by code.

    Keys: channel (code), name, connector, pending (int), oldest_pending_seconds (float | None: age
    of the oldest change not pushed yet), last_push_at (datetime | None), dead (int: dead letters),
    and from the sync metrics every worker counts: pushes (requests sent), updates (quantities
    accepted) and throttled (the platform's rate limit refused), each None when they cannot be read.
    """
    rows = list(sync_lag_rows().values())
    totals = push_totals(row["channel"] for row in rows)
    for row in rows:
        counted = totals.get(row["channel"]) if totals is not None else None
        for name, key in (("pushes", "requests"), ("updates", "updates"), ("throttled", "throttled")):
            row[name] = counted[key] if counted is not None else None
    return rows


# Incidents that put every listing of their item to 0 at once (docs/architecture.md, "Orders, holds and incidents").
ZERO_ON_INCIDENT = (Incident.Kind.OVERSELL, Incident.Kind.POS_INTO_RESERVED)

# Listings that must show 0 because of an open incident whose cause still holds, for one of the
# items their product contains (docs/architecture.md, "Limits and edges"). The cause, per kind:
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


PRODUCTS_CHANNEL_ATP_SQL = f"""
WITH per_location AS (
    SELECT pc.product_id, cl.location_id, {product_atp_sql("s", "loc", "pc")} AS atp
      FROM catalog_productcomponent pc
      JOIN channels_channellocation cl ON cl.channel_id = %(channel)s
      JOIN catalog_location loc ON loc.id = cl.location_id AND loc.is_active
      LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = cl.location_id
     WHERE pc.product_id = ANY(%(products)s::bigint[])
     GROUP BY pc.product_id, cl.location_id
)
SELECT product_id, COALESCE(SUM(atp), 0)::bigint FROM per_location GROUP BY product_id
"""


def products_channel_quantity(channel: Any, product_ids: Sequence[int]) -> dict[int, int]:
    """What the channel would be told for these products if each had a listing with no overrides of its own:
    the listing formula (``listing_quantity``) over the channel's locations, with the channel's buffer and
    coefficient. One query whatever the number; a product the channel has no stock of is 0."""
    ids = sorted(set(product_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(PRODUCTS_CHANNEL_ATP_SQL, {"channel": channel.pk, "products": ids})
        atp_by_product = dict(cursor.fetchall())
    active = channel.is_active
    return {
        product: listing_quantity(
            atp=int(atp_by_product.get(product, 0)),
            buffer=channel.buffer,
            coefficient=channel.coefficient,
            max_qty=None,
            end_when=None,
        )
        if active
        else 0
        for product in ids
    }


# A listing's product ATP at each location its channel sells from, with the listing's rules: what each platform
# location of a ``location_map`` shows is computed from the ATP of its own Stockroom locations.
LISTING_PLACE_ATP_SQL = f"""
WITH wanted AS (
    SELECT l.id, l.channel_id, l.product_id
      FROM channels_listing l
     WHERE l.id = ANY(%(listings)s::bigint[])
), per_location AS (
    SELECT w.id AS listing_id, loc.code, {product_atp_sql("s", "loc", "pc")} AS atp
      FROM wanted w
      JOIN channels_channellocation cl ON cl.channel_id = w.channel_id
      JOIN catalog_location loc ON loc.id = cl.location_id AND loc.is_active
      JOIN catalog_productcomponent pc ON pc.product_id = w.product_id
      LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = cl.location_id
     GROUP BY w.id, loc.code
)
SELECT w.id, COALESCE(l.buffer, c.buffer), COALESCE(l.coefficient, c.coefficient), l.max_qty, l.end_when,
       l.is_active AND c.is_active, p.code, p.atp
  FROM wanted w
  JOIN channels_listing l ON l.id = w.id
  JOIN channels_channel c ON c.id = l.channel_id
  LEFT JOIN per_location p ON p.listing_id = w.id
"""


def listings_availability_by_place(
    listing_ids: Sequence[int], places: dict[str, list[str]]
) -> dict[int, dict[str, int]]:
    """What each platform location shows of each listing: ``places`` maps a platform location to the Stockroom
    location codes whose product ATP it sums (empty: every location the channel sells from), each with the
    listing's rules (buffer, coefficient, max, end_when). A code the channel does not sell from counts 0. One
    query."""
    ids = sorted(set(listing_ids))
    if not ids or not places:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(LISTING_PLACE_ATP_SQL, {"listings": ids})
        rows = cursor.fetchall()
    rules: dict[int, tuple[int, Decimal, int | None, int | None, bool]] = {}
    atp: dict[int, dict[str, int]] = {}
    for listing_id, buffer, coefficient, max_qty, end_when, active, code, location_atp in rows:
        rules[listing_id] = (buffer, coefficient, max_qty, end_when, bool(active))
        if code is not None:
            atp.setdefault(listing_id, {})[code] = int(location_atp or 0)
    result: dict[int, dict[str, int]] = {}
    for listing_id, (buffer, coefficient, max_qty, end_when, active) in rules.items():
        own = atp.get(listing_id, {})
        shown = {}
        for place, codes in places.items():
            total = sum(own.values()) if not codes else sum(own.get(code, 0) for code in codes)
            shown[place] = (
                listing_quantity(atp=total, buffer=buffer, coefficient=coefficient, max_qty=max_qty, end_when=end_when)
                if active
                else 0
            )
        result[listing_id] = shown
    return result
