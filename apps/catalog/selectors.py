"""Availability: ATP per item and location, per product, and the quantity a listing shows.

Formulas (design section 2):
- ATP(item, location) and ATP(product, location): ``apps.catalog.stock.atp``;
- a listing's quantity: ATP summed over the channel's locations, then
  q = floor(max(0, atp - buffer) * coefficient), q = min(q, max_qty), 0 if q <= end_when.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import QuerySet

from apps.catalog.stock.atp import atp_expression, atp_sql

if TYPE_CHECKING:
    from apps.catalog.models import StockLevel

PRODUCT_ATP_BY_LOCATION_SQL = f"""
WITH wanted AS (
    SELECT unnest(%(products)s::bigint[]) AS product_id
), per_location AS (
    SELECT pc.product_id, loc.id AS location_id,
           MIN(({atp_sql("s", "loc")}) / pc.quantity) AS atp
      FROM wanted w
      JOIN catalog_productcomponent pc ON pc.product_id = w.product_id
      CROSS JOIN catalog_location loc
      LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = loc.id
     WHERE loc.id = ANY(%(locations)s::bigint[]) AND loc.is_active
     GROUP BY pc.product_id, loc.id
)
SELECT product_id, location_id, atp FROM per_location
"""

LISTING_ATP_SQL = f"""
WITH wanted AS (
    SELECT l.id, l.channel_id, l.product_id
      FROM channels_listing l
     WHERE l.id = ANY(%(listings)s::bigint[])
), per_location AS (
    SELECT w.id AS listing_id, cl.location_id, MAX(loc.stock_valid_until) AS valid_until,
           MIN(({atp_sql("s", "loc")}) / pc.quantity) AS atp
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

    See ``apps.catalog.availability_cache`` for the invalidation scheme. With Redis unreachable the
    answer comes straight from PostgreSQL.
    """
    from apps.catalog.availability_cache import availability_cached

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


def listings_affected(pairs: Iterable[tuple[int, int]]) -> list[int]:
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


def products_atp_by_location(product_ids: Iterable[int], location_ids: Iterable[int]) -> dict[tuple[int, int], int]:
    """ATP of each product at each location: {(product_id, location_id): atp}, one query."""
    products, locations = sorted(set(product_ids)), sorted(set(location_ids))
    if not products or not locations:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(PRODUCT_ATP_BY_LOCATION_SQL, {"products": products, "locations": locations})
        return {(product, location): int(atp) for product, location, atp in cursor.fetchall()}


def levels_with_atp() -> QuerySet[StockLevel]:
    """Stock levels with ``atp_now``: ATP as the availability engine counts it (``stock.atp``)."""
    from apps.catalog.models import StockLevel

    return StockLevel.objects.select_related("item", "location").annotate(atp_now=atp_expression())
