"""The fast path of a reservation as one prepared SQL statement.

One round trip locks every level the order could touch (in (item_id, location_id) order),
checks that each planned level still has ``on_hand - reserved - safety >= q`` in the locked
rows, and only then, all or nothing, writes the order, adds to ``reserved``, writes its lines,
reservations and ledger rows, finds the listings the move reaches and upserts their sync
work. When a level no longer covers its quantity the statement writes nothing. When the
channel already has an order with this external id (``ON CONFLICT DO NOTHING``, which waits
for a concurrent insert of it), nothing is written either and the order id comes back empty.
The order's id is drawn before (``Resolution.order_id``), so that the caller's idempotent
answer can be recorded in the same statement (``CLAIM_IN_STATEMENT``): a key another call
holds aborts the whole statement. The row locks are held for this one statement and its
commit. (Data-modifying CTEs run to completion whether or not the final SELECT reads them.)

The text does not depend on the number of lines (arrays, not VALUES lists), so PostgreSQL
plans it once per session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.catalog.locks import LEVELS_FOR_UPDATE_CTE
from apps.catalog.selectors import LISTINGS_REACHED_SQL
from apps.channels.services.work import SYNC_WORK_UPSERT
from apps.core.db import Statement, prepared_cursor
from apps.core.idempotency import CLAIM_IN_STATEMENT, NO_CLAIM_PARAMS
from apps.orders.services.allocation import Plan, ResolvedLine, pair_totals

RESERVE_SQL = f"""
WITH wanted AS (
    SELECT * FROM unnest(%(level_items)s::bigint[], %(level_locations)s::bigint[], %(level_q)s::int[])
           AS w(item_id, location_id, q)
), locked AS ({LEVELS_FOR_UPDATE_CTE.format(wanted="wanted")}
), verdict AS (
    SELECT count(*) FILTER (WHERE q > 0 AND atp >= q) = %(needed)s AS ok FROM locked
), new_order AS (
    INSERT INTO orders_order (id, channel_id, external_id, mode, status, expires_at, flagged, flag_reason,
                              created_at, updated_at)
    SELECT %(order_id)s::bigint, %(channel_id)s::bigint, %(external_id)s::varchar, %(mode)s::varchar,
           %(status)s::varchar, %(expires_at)s::timestamptz, false, '', %(created_at)s::timestamptz,
           %(created_at)s::timestamptz
      FROM verdict WHERE ok
        ON CONFLICT (channel_id, external_id) DO NOTHING
    RETURNING id
), moved AS (
    UPDATE catalog_stocklevel AS s
       SET reserved = s.reserved + l.q, updated_at = now()
      FROM locked l, new_order o
     WHERE l.q > 0 AND s.id = l.id
    RETURNING s.item_id, s.location_id, l.q
), wanted_lines AS (
    SELECT * FROM unnest(%(line_idx)s::int[], %(line_listings)s::bigint[], %(line_skus)s::varchar[],
                         %(line_products)s::bigint[], %(line_quantities)s::int[])
           AS w(idx, listing_id, sku, product_id, quantity)
), new_lines AS (
    INSERT INTO orders_orderline (order_id, listing_id, channel_sku, product_id, quantity,
                                  fulfilled_quantity, returned_quantity, unallocated_quantity)
    SELECT o.id, w.listing_id, w.sku, w.product_id, w.quantity, 0, 0, 0
      FROM new_order o, wanted_lines w ORDER BY w.idx
    RETURNING id, channel_sku
), held AS (
    SELECT * FROM unnest(%(held_idx)s::int[], %(held_items)s::bigint[], %(held_locations)s::bigint[],
                         %(held_per_unit)s::int[], %(held_quantities)s::int[])
           AS h(idx, item_id, location_id, per_unit, quantity)
), new_reservations AS (
    INSERT INTO orders_reservation (line_id, item_id, location_id, per_unit, quantity, fulfilled, released,
                                    returned, created_at)
    SELECT nl.id, h.item_id, h.location_id, h.per_unit, h.quantity, 0, 0, 0, now()
      FROM held h JOIN wanted_lines w ON w.idx = h.idx JOIN new_lines nl ON nl.channel_sku = w.sku
    RETURNING id
), ledger AS (
    INSERT INTO catalog_movement (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor,
                                  note, idempotency_key, created_at)
    SELECT m.item_id, m.location_id, %(kind)s::varchar, 0, m.q, 'order:' || o.id, %(actor)s::varchar, '', NULL, now()
      FROM moved m, new_order o
    RETURNING id
), claim AS ({CLAIM_IN_STATEMENT.format(source="new_order")}
), reached AS ({LISTINGS_REACHED_SQL.format(moved="moved AS m")}
), synced AS ({SYNC_WORK_UPSERT.format(source="SELECT listing_id, channel_id FROM reached WHERE live")}
)
SELECT v.ok,
       (SELECT id FROM new_order),
       (SELECT json_object_agg(channel_sku, id) FROM new_lines),
       (SELECT coalesce(array_agg(listing_id ORDER BY listing_id), '{{}}') FROM reached),
       (SELECT coalesce(array_agg(DISTINCT channel_id), '{{}}') FROM synced)
  FROM verdict v
"""
RESERVE = Statement.of(RESERVE_SQL)


@dataclass(frozen=True)
class FastWrite:
    covered: bool  # False: a level no longer covered its quantity and nothing was written
    written: bool  # False: nothing was written (not covered, or the external id is taken)
    line_ids: dict[str, int] | None = None  # channel_sku -> line id
    listing_ids: list[int] | None = None  # listings the move reaches
    sync_channel_ids: list[int] | None = None  # channels whose sync work the statement upserted


def reserve_params(
    *,
    order_id: int,
    created_at: datetime,
    channel_id: int,
    external_id: str,
    mode: str,
    status: str,
    expires_at: datetime | None,
    actor: str,
    kind: str,
    lines: Sequence[ResolvedLine],
    plan: Plan,
    pairs: Sequence[tuple[int, int]],
    priority: int,
    claim: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters of RESERVE_SQL: ``pairs`` are every level the order could touch (all are locked)."""
    totals = pair_totals(lines=lines, allocations=plan.allocations)
    levels = sorted(set(pairs) | set(totals))
    held = [
        (allocation.line_index, item, allocation.location_id, per_unit, allocation.units * per_unit)
        for allocation in plan.allocations
        for item, per_unit in lines[allocation.line_index].components
    ]
    return {
        "order_id": order_id,
        "created_at": created_at,
        "level_items": [item for item, _ in levels],
        "level_locations": [loc for _, loc in levels],
        "level_q": [totals.get(pair, 0) for pair in levels],
        "needed": len(totals),
        "channel_id": channel_id,
        "external_id": external_id,
        "mode": mode,
        "status": status,
        "expires_at": expires_at,
        "line_idx": list(range(len(lines))),
        "line_listings": [line.listing_id for line in lines],
        "line_skus": [line.sku for line in lines],
        "line_products": [line.product_id for line in lines],
        "line_quantities": [line.quantity for line in lines],
        "held_idx": [row[0] for row in held],
        "held_items": [row[1] for row in held],
        "held_locations": [row[2] for row in held],
        "held_per_unit": [row[3] for row in held],
        "held_quantities": [row[4] for row in held],
        "kind": kind,
        "actor": actor,
        # the sync work upsert (SYNC_WORK_UPSERT)
        "priority": int(priority),
        "reason": kind[:60],
        "repush": False,
        **(claim or NO_CLAIM_PARAMS),
    }


def reserve_execute(**kwargs: Any) -> FastWrite:
    with prepared_cursor(raw=True) as cursor:
        cursor.execute(RESERVE.text, RESERVE.args(reserve_params(**kwargs)))
        ok, order_id, line_ids, listing_ids, channel_ids = cursor.fetchone()
    if not ok or order_id is None:
        return FastWrite(covered=bool(ok), written=False)
    if isinstance(line_ids, str):
        line_ids = json.loads(line_ids)
    return FastWrite(
        covered=True,
        written=True,
        line_ids=line_ids,
        listing_ids=list(listing_ids),
        sync_channel_ids=list(channel_ids),
    )
