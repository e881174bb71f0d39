"""The only writer of StockLevel.safety: forecasts and staff overrides both land here.

Safety stock is not a ledger quantity (nothing physical moved), so no Movement rows are
written; channels still hear of it through ``stock_changed`` because ATP moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from django.db import connection, transaction

from apps.catalog.locks import levels_for_update
from apps.catalog.models import StockLevel
from apps.catalog.signals import Tier
from apps.catalog.stock.atp import atp, locations_selling
from apps.catalog.stock.changes import stock_changed_announce

log = structlog.get_logger("stockroom.safety")

MAX_SAFETY = 10**12


@dataclass(frozen=True)
class SafetyChange:
    item_id: int
    location_id: int
    old: int
    new: int
    old_atp: int
    new_atp: int


def safety_apply(
    *,
    values: Mapping[tuple[int, int], int],
    reason: str,
    priority: Tier = Tier.BACKGROUND,
) -> list[SafetyChange]:
    """Set the safety stock of these (item_id, location_id) levels; return what actually changed.

    Runs in the caller's transaction when there is one (a staff override saves its audit in
    the same one), else in its own. Levels are read first without a lock, and only those whose
    value differs are locked (in the fixed order) and rewritten, so the hourly job over every
    level holds few locks. The change is announced with ``priority``; channel sync itself makes
    a listing that this closes (its quantity reaching 0) a tier 1 push, so channels stop selling
    within seconds.
    """
    wanted = {pair: int(value) for pair, value in values.items()}
    for pair, value in wanted.items():
        if not 0 <= value <= MAX_SAFETY:
            raise ValueError(f"safety for {pair} must be within 0..{MAX_SAFETY}, not {value}")
    if not wanted:
        return []
    current = _current_safety(sorted(wanted))
    candidates = sorted(pair for pair, value in wanted.items() if current.get(pair) != value)
    if not candidates:
        return []
    with transaction.atomic():
        changes: list[SafetyChange] = []
        levels = levels_for_update(candidates)
        selling = locations_selling(level.location_id for level in levels)
        for level in levels:
            pair = (level.item_id, level.location_id)
            new = wanted[pair]
            if level.safety == new:
                continue
            sells = level.location_id in selling
            changes.append(
                SafetyChange(
                    item_id=level.item_id,
                    location_id=level.location_id,
                    old=level.safety,
                    new=new,
                    old_atp=atp(
                        on_hand=level.on_hand, reserved=level.reserved, safety=level.safety, location_sells=sells
                    ),
                    new_atp=atp(on_hand=level.on_hand, reserved=level.reserved, safety=new, location_sells=sells),
                )
            )
        if not changes:
            return []
        _write(changes)
        # One announcement, so that listeners lock their rows in one pass (two passes over
        # interleaved listings could deadlock with another writer). Channel sync promotes the
        # listings this closes (quantity reaching 0) to tier 1 by itself.
        stock_changed_announce(
            sender=StockLevel,
            pairs=[(c.item_id, c.location_id) for c in changes],
            priority=priority,
            reason=reason,
        )
    log.info("safety_applied", reason=reason, changed=len(changes), requested=len(wanted))
    return changes


def _current_safety(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT l.item_id, l.location_id, l.safety
              FROM catalog_stocklevel l
              JOIN unnest(%s::bigint[], %s::bigint[]) AS w(item_id, location_id)
                ON w.item_id = l.item_id AND w.location_id = l.location_id
            """,
            [[item for item, _ in pairs], [loc for _, loc in pairs]],
        )
        return {(item, loc): safety for item, loc, safety in cursor.fetchall()}


def _write(changes: list[SafetyChange]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE catalog_stocklevel AS l
               SET safety = w.safety, updated_at = now()
              FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS w(item_id, location_id, safety)
             WHERE l.item_id = w.item_id AND l.location_id = w.location_id
            """,
            [[c.item_id for c in changes], [c.location_id for c in changes], [c.new for c in changes]],
        )
