"""The bulk ledger writer for supplier locations: set on_hand of many items at once, with its movements.

A supplier feed says "this is what I have", so each row is an absolute target. Targets are
copied into a temporary table, the levels are locked in (item_id, location_id) order, and one
statement updates the counters that differ and appends one ``supplier_feed`` movement per
change. Tens of thousands of rows cost a few statements, not one round trip per row.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction

from apps.catalog.locks import SUPPLIER_LEVELS_FOR_UPDATE_CTE
from apps.catalog.models import FEED_RUN_REFERENCE, Location, Movement
from apps.catalog.signals import Tier
from apps.catalog.stock.changes import stock_changed_announce


def feed_run_reference(run_id: int) -> str:
    return f"{FEED_RUN_REFERENCE}{run_id}"


_APPLY_SQL = f"""
WITH old AS ({SUPPLIER_LEVELS_FOR_UPDATE_CTE}), changed AS (
    UPDATE catalog_stocklevel l
       SET on_hand = old.target, updated_at = now()
      FROM old
     WHERE l.id = old.id AND old.target <> old.old_on_hand
 RETURNING l.item_id, old.target - old.old_on_hand AS delta
)
INSERT INTO catalog_movement
       (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor, note, idempotency_key, created_at)
SELECT item_id, %(location)s, %(kind)s, delta, 0, %(reference)s, %(actor)s, %(note)s, NULL, now()
  FROM changed
RETURNING item_id
"""


def supplier_levels_set(
    *,
    location: Location,
    targets: Iterable[tuple[int, int]],
    reference: str,
    actor: str,
    note: str = "",
    reason: str = "supplier_feed",
) -> list[int]:
    """Set on_hand of (item_id, target) pairs at a supplier location; returns the item ids that moved.

    Runs in the caller's transaction. Levels that are missing are created first; targets
    equal to the current on_hand write nothing. Channels hear of the moved items with
    background priority.
    """
    assert transaction.get_connection().in_atomic_block, "supplier_levels_set needs a transaction"
    if location.kind != Location.Kind.SUPPLIER:
        raise ValueError("supplier_levels_set only writes supplier locations")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS feed_targets (item_id bigint PRIMARY KEY, target bigint NOT NULL) "
            "ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE feed_targets")
        count = 0
        with cursor.copy("COPY feed_targets (item_id, target) FROM STDIN") as copy:
            for item_id, target in targets:
                if target < 0:
                    raise ValueError(f"negative target for item {item_id}")
                copy.write_row((item_id, target))
                count += 1
        if not count:
            return []
        cursor.execute("ANALYZE feed_targets")
        cursor.execute(
            """
            INSERT INTO catalog_stocklevel (item_id, location_id, on_hand, reserved, safety, allow_negative, updated_at)
            SELECT t.item_id, %(location)s, 0, 0, 0, %(negative)s, now() FROM feed_targets t
             WHERE t.target > 0  -- a missing level already reads 0
               AND NOT EXISTS (SELECT 1 FROM catalog_stocklevel s
                                WHERE s.item_id = t.item_id AND s.location_id = %(location)s)
             ORDER BY t.item_id
            ON CONFLICT (item_id, location_id) DO NOTHING
            """,
            {"location": location.pk, "negative": location.allow_negative},
        )
        cursor.execute(
            _APPLY_SQL,
            {
                "location": location.pk,
                "kind": Movement.Kind.SUPPLIER_FEED,
                "reference": reference[:120],
                "actor": actor[:120],
                "note": note[:500],
            },
        )
        moved = sorted(row[0] for row in cursor.fetchall())
        cursor.execute("DROP TABLE feed_targets")
    if moved:
        stock_changed_announce(
            sender=Movement,
            pairs=[(item_id, location.pk) for item_id in moved],
            priority=Tier.BACKGROUND,
            reason=reason,
        )
    return moved


def location_pairs(*, location: Location) -> list[tuple[int, int]]:
    """Every (item_id, location_id) stocked at a location: what channels must hear when it goes stale or fresh."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT item_id FROM catalog_stocklevel WHERE location_id = %s ORDER BY item_id",
            [location.pk],
        )
        return [(row[0], location.pk) for row in cursor.fetchall()]


def location_validity_changed(*, location: Location, reason: str) -> int:
    """Tell channels that everything at a location changed sellability (stale or fresh again)."""
    pairs = location_pairs(location=location)
    if pairs:
        stock_changed_announce(sender=Location, pairs=pairs, priority=Tier.BACKGROUND, reason=reason)
    return len(pairs)
