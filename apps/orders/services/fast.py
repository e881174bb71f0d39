"""The fast path of a reservation as one SQL statement: every insert and the conditional level update.

One round trip writes the order, its lines, its reservations and its ledger rows, and adds to
``reserved`` only where ``on_hand - reserved - safety`` still covers the quantity (rows locked in
(item_id, location_id) order). The statement answers how many levels it moved; when that is
fewer than it needed, the caller rolls the whole transaction back and decides under the lock.
The row locks are therefore held for this one statement and the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from apps.orders.services.allocation import Plan, ResolvedLine, pair_totals


@dataclass(frozen=True)
class FastWrite:
    order_id: int
    created_at: datetime
    line_ids: dict[str, int]  # channel_sku -> line id
    levels_moved: int
    levels_needed: int


def reserve_statement(
    *,
    channel_id: int,
    external_id: str,
    mode: str,
    status: str,
    expires_at: datetime | None,
    actor: str,
    kind: str,
    lines: Sequence[ResolvedLine],
    plan: Plan,
) -> tuple[str, list[Any], int]:
    """SQL and parameters of the whole write; also returns how many levels it must move."""
    totals = pair_totals(lines=lines, allocations=plan.allocations)
    params: list[Any] = [channel_id, external_id, mode, status, expires_at]
    line_values = []
    for index, line in enumerate(lines):
        line_values.append("(%s::int, %s::bigint, %s::varchar, %s::bigint, %s::int)")
        params += [index, line.listing_id, line.sku, line.product_id, line.quantity]
    reservation_values = []
    for allocation in plan.allocations:
        for item, per_unit in lines[allocation.line_index].components:
            reservation_values.append("(%s::int, %s::bigint, %s::bigint, %s::int, %s::int)")
            params += [allocation.line_index, item, allocation.location_id, per_unit, allocation.units * per_unit]
    level_values = []
    for (item, loc), quantity in totals.items():
        level_values.append("(%s::bigint, %s::bigint, %s::bigint)")
        params += [item, loc, quantity]
    params += [kind, actor]
    sql = f"""
    WITH new_order AS (
        INSERT INTO orders_order (channel_id, external_id, mode, status, expires_at, flagged, flag_reason,
                                  created_at, updated_at)
        VALUES (%s, %s, %s, %s, %s, false, '', now(), now())
        RETURNING id, created_at
    ), wanted_lines(idx, listing_id, sku, product_id, quantity) AS (VALUES {", ".join(line_values)}
    ), new_lines AS (
        INSERT INTO orders_orderline (order_id, listing_id, channel_sku, product_id, quantity,
                                      fulfilled_quantity, returned_quantity, unallocated_quantity)
        SELECT o.id, w.listing_id, w.sku, w.product_id, w.quantity, 0, 0, 0
          FROM new_order o, wanted_lines w ORDER BY w.idx
        RETURNING id, channel_sku
    ), held(idx, item_id, location_id, per_unit, quantity) AS (VALUES {", ".join(reservation_values)}
    ), new_reservations AS (
        INSERT INTO orders_reservation (line_id, item_id, location_id, per_unit, quantity, fulfilled, released,
                                        returned, created_at)
        SELECT nl.id, h.item_id, h.location_id, h.per_unit, h.quantity, 0, 0, 0, now()
          FROM held h JOIN wanted_lines w ON w.idx = h.idx JOIN new_lines nl ON nl.channel_sku = w.sku
        RETURNING id
    ), wanted_levels(item_id, location_id, q) AS (VALUES {", ".join(level_values)}
    ), locked AS (
        SELECT s.id FROM catalog_stocklevel s
          JOIN wanted_levels w ON s.item_id = w.item_id AND s.location_id = w.location_id
         ORDER BY s.item_id, s.location_id
           FOR UPDATE OF s
    ), moved AS (
        UPDATE catalog_stocklevel AS s
           SET reserved = s.reserved + w.q, updated_at = now()
          FROM wanted_levels w, catalog_location loc
         WHERE s.id IN (SELECT id FROM locked)
           AND s.item_id = w.item_id AND s.location_id = w.location_id AND loc.id = s.location_id
           AND loc.is_active AND (loc.stock_valid_until IS NULL OR loc.stock_valid_until > now())
           AND s.on_hand - s.reserved - s.safety >= w.q
        RETURNING s.item_id, s.location_id, w.q
    ), ledger AS (
        INSERT INTO catalog_movement (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor,
                                      note, idempotency_key, created_at)
        SELECT m.item_id, m.location_id, %s, 0, m.q, 'order:' || o.id, %s, '', NULL, now()
          FROM moved m, new_order o
        RETURNING id
    )
    SELECT o.id, o.created_at,
           (SELECT json_object_agg(channel_sku, id) FROM new_lines),
           (SELECT count(*) FROM ledger),
           (SELECT count(*) FROM new_reservations)
      FROM new_order o
    """
    return sql, params, len(totals)


def reserve_execute(**kwargs: Any) -> FastWrite:
    sql, params, needed = reserve_statement(**kwargs)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        order_id, created_at, line_ids, moved, _ = cursor.fetchone()
    if isinstance(line_ids, str):
        import json

        line_ids = json.loads(line_ids)
    return FastWrite(order_id, created_at, line_ids, int(moved), needed)
