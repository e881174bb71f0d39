"""Which stock serves an order: SKUs resolved to products and components, then units allocated.

A product unit is always served from one location (a bundle is never split across
locations); locations are tried in the channel's priority order, each taking as many units
as its ATP allows before the next one is tried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from apps.catalog.stock.atp import atp_sql, product_atp_at
from apps.core.db import prepared_cursor
from apps.orders.errors import UnknownSku

# One round trip: every listed SKU with its components, the channel's locations in priority
# order, and the unlocked ATP of each (component, location) (``stock.atp``). It also draws the id a
# new order will have (evaluated once, an init plan), so that the answer to a reservation can
# be written in the same statement as the order.
RESOLVE_SQL = f"""
SELECT l.id, l.channel_sku, l.product_id, (l.is_active AND p.is_active), pc.item_id, pc.quantity,
       cl.location_id,
       {atp_sql("s", "loc")},
       (SELECT nextval('orders_order_id_seq'))
  FROM channels_listing l
  JOIN catalog_product p ON p.id = l.product_id
  LEFT JOIN catalog_productcomponent pc ON pc.product_id = l.product_id
  LEFT JOIN channels_channellocation cl ON cl.channel_id = l.channel_id
  LEFT JOIN catalog_location loc ON loc.id = cl.location_id
  LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = cl.location_id
 WHERE l.channel_id = %s::bigint AND l.channel_sku = ANY(%s::varchar[])
 ORDER BY cl.priority, cl.location_id, pc.item_id
"""


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


@dataclass
class ResolvedLine:
    sku: str
    quantity: int
    listing_id: int
    product_id: int
    sellable: bool
    components: list[tuple[int, int]] = field(default_factory=list)  # (item_id, base units per product unit)


@dataclass
class Resolution:
    lines: list[ResolvedLine]
    location_ids: list[int]  # the channel's locations, in the order orders take from them
    atp: dict[tuple[int, int], int]  # unlocked snapshot, per (item_id, location_id)
    order_id: int | None = None  # drawn for a new order (sequence values are never reused)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Every (item, location) the order could touch, in lock order."""
        return sorted({(item, loc) for line in self.lines for item, _ in line.components for loc in self.location_ids})


@dataclass(frozen=True)
class Allocation:
    line_index: int
    location_id: int
    units: int


@dataclass
class Plan:
    allocations: list[Allocation]
    shortfall: dict[int, int]  # line index -> units no stock covers

    @property
    def complete(self) -> bool:
        return not any(self.shortfall.values())


def lines_resolve(*, channel_id: int, requests: Sequence[LineRequest]) -> Resolution:
    """Resolve SKUs of this channel; unknown ones are a 400 with a field error per line."""
    skus = [r.sku for r in requests]
    with prepared_cursor() as cursor:
        cursor.execute(RESOLVE_SQL, [channel_id, skus])
        rows = cursor.fetchall()
    listings: dict[str, tuple[int, int, bool]] = {}
    components: dict[str, dict[int, int]] = defaultdict(dict)
    locations: list[int] = []
    atp: dict[tuple[int, int], int] = {}
    order_id = rows[0][8] if rows else None
    for listing_id, sku, product_id, sellable, item_id, per_unit, location_id, item_atp, _ in rows:
        listings[sku] = (listing_id, product_id, bool(sellable))
        if item_id is not None:
            components[sku][item_id] = per_unit
        if location_id is not None:
            if location_id not in locations:
                locations.append(location_id)
            if item_id is not None:
                atp[(item_id, location_id)] = int(item_atp)
    unknown = [r.sku for r in requests if r.sku not in listings]
    if unknown:
        raise UnknownSku(
            errors={
                "lines": [{"sku": ["Unknown SKU for this channel."]} if r.sku in unknown else {} for r in requests]
            },
            skus=unknown,
        )
    lines = []
    for r in requests:
        listing_id, product_id, sellable = listings[r.sku]
        lines.append(
            ResolvedLine(
                sku=r.sku,
                quantity=r.quantity,
                listing_id=listing_id,
                product_id=product_id,
                sellable=sellable,
                components=sorted(components[r.sku].items()),
            )
        )
    return Resolution(lines=lines, location_ids=locations, atp=atp, order_id=order_id)


def units_allocate(
    *, lines: Sequence[ResolvedLine], location_ids: Sequence[int], atp: Mapping[tuple[int, int], int]
) -> Plan:
    """Greedy allocation: per line, per location in priority order, as many whole units as fit."""
    left = dict(atp)
    allocations: list[Allocation] = []
    shortfall: dict[int, int] = {}
    for index, line in enumerate(lines):
        remaining = line.quantity
        if line.sellable and line.components:
            for loc in location_ids:
                if remaining == 0:
                    break
                fits = product_atp_at(components=line.components, atp=left, location_id=loc)
                take = min(remaining, fits)
                if take <= 0:
                    continue
                for item, per_unit in line.components:
                    left[(item, loc)] -= take * per_unit
                allocations.append(Allocation(index, loc, take))
                remaining -= take
        shortfall[index] = remaining
    return Plan(allocations=allocations, shortfall=shortfall)


def pair_totals(*, lines: Sequence[ResolvedLine], allocations: Sequence[Allocation]) -> dict[tuple[int, int], int]:
    """Base units per (item, location) that these allocations hold, in lock order."""
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for allocation in allocations:
        for item, per_unit in lines[allocation.line_index].components:
            totals[(item, allocation.location_id)] += allocation.units * per_unit
    return dict(sorted(totals.items()))
