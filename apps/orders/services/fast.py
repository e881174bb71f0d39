"""The fast path of a reservation: the order's part of one statement the stock owner composes and runs.

The owner (``apps.catalog.stock.statement``) locks every level the order could touch (in
(item_id, location_id) order), checks ATP in the locked rows, moves ``reserved``, writes the
ledger rows and lets listeners (channel sync) add their part. This module adds the order's own
writes, made only when every planned level still covers its quantity: the order, its lines and
reservations, and the caller's idempotent answer (``CLAIM_IN_STATEMENT``: a key another call
holds aborts the whole statement). When the channel already has an order with this external id
(``ON CONFLICT DO NOTHING``, which waits for a concurrent insert of it), nothing is written
either. The order's id is drawn before (``Resolution.order_id``), so that the answer can be
recorded in the same statement. Called outside a transaction, the statement is its own: the
row locks are held for this one statement and its commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from apps.catalog.stock.statement import HoldStatement, hold_execute, hold_params, hold_statement
from apps.core.db import int_array
from apps.core.idempotency import CLAIM_IN_STATEMENT, NO_CLAIM_PARAMS
from apps.orders.services.allocation import Plan, ResolvedLine, pair_totals

ORDER_CTES = f"""new_order AS (
    INSERT INTO orders_order (id, channel_id, external_id, mode, status, expires_at, flagged, flag_reason,
                              created_at, updated_at)
    SELECT %(order_id)s::bigint, %(channel_id)s::bigint, %(external_id)s::varchar, %(mode)s::varchar,
           %(status)s::varchar, %(expires_at)s::timestamptz, false, '', %(created_at)s::timestamptz,
           %(created_at)s::timestamptz
      FROM verdict WHERE ok
        ON CONFLICT (channel_id, external_id) DO NOTHING
    RETURNING id
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
), claim AS ({CLAIM_IN_STATEMENT.format(source="new_order")}
)"""


@cache
def reserve_statement() -> HoldStatement:
    """Composed on first use, once every listener has registered its part."""
    return hold_statement(
        gate="new_order",
        gate_ctes=ORDER_CTES,
        reference="'order:' || g.id",
        results=["(SELECT json_object_agg(channel_sku, id) FROM new_lines)"],
    )


@dataclass(frozen=True)
class FastWrite:
    covered: bool  # False: a level no longer covered its quantity and nothing was written
    written: bool  # False: nothing was written (not covered, or the external id is taken)
    line_ids: dict[str, int] | None = None  # channel_sku -> line id


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
    hold: Mapping[tuple[int, int], int] | None = None,
) -> dict[str, Any]:
    """Parameters of the statement: ``pairs`` are every level the order could touch (all are locked),
    ``hold`` the units each planned level holds (``pair_totals`` of the plan, computed when not given)."""
    held = [
        (allocation.line_index, item, allocation.location_id, per_unit, allocation.units * per_unit)
        for allocation in plan.allocations
        for item, per_unit in lines[allocation.line_index].components
    ]
    return {
        **hold_params(
            levels=pairs,
            hold=pair_totals(lines=lines, allocations=plan.allocations) if hold is None else hold,
            kind=kind,
            actor=actor,
            priority=priority,
        ),
        "order_id": order_id,
        "created_at": created_at,
        "channel_id": channel_id,
        "external_id": external_id,
        "mode": mode,
        "status": status,
        "expires_at": expires_at,
        # Integer arrays go as their text (``int_array``: cheaper to send than lists); SKUs as a list.
        "line_idx": int_array(range(len(lines))),
        "line_listings": int_array(line.listing_id for line in lines),
        "line_skus": [line.sku for line in lines],
        "line_products": int_array(line.product_id for line in lines),
        "line_quantities": int_array(line.quantity for line in lines),
        "held_idx": int_array(row[0] for row in held),
        "held_items": int_array(row[1] for row in held),
        "held_locations": int_array(row[2] for row in held),
        "held_per_unit": int_array(row[3] for row in held),
        "held_quantities": int_array(row[4] for row in held),
        **(claim or NO_CLAIM_PARAMS),
    }


def reserve_execute(**kwargs: Any) -> FastWrite:
    hold = pair_totals(lines=kwargs["lines"], allocations=kwargs["plan"].allocations)
    params = reserve_params(**kwargs, hold=hold)
    done = hold_execute(reserve_statement(), params=params, hold=hold, reason=kwargs["kind"])
    if not done.written:
        return FastWrite(covered=done.covered, written=False)
    (line_ids,) = done.results
    if isinstance(line_ids, str):
        line_ids = json.loads(line_ids)
    return FastWrite(covered=True, written=True, line_ids=line_ids)
