"""Past movements with their own dates: sales history brought in from before Stockroom (or a demo's weeks).

Only balanced history is taken: per item and location its movements sum to zero on hand and zero
reserved (what was sold was received in the same history), so no level changes, no channel
hears of anything, and summing the ledger still reproduces every level. The rows are appended
(the ledger stays append-only) in one statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.models import Movement, StockLevel


@dataclass(frozen=True)
class PastMovement:
    at: datetime
    item_id: int
    location_id: int
    kind: str
    on_hand_delta: int = 0
    reserved_delta: int = 0
    note: str = ""


def history_append(*, movements: Sequence[PastMovement], reference: str, actor: str) -> int:
    """Append balanced past movements under one reference, in the caller's transaction; returns how many.

    Refuses (ValueError) rows dated in the future, rows that move nothing, pairs without a level,
    and any pair whose rows do not sum to zero.
    """
    assert transaction.get_connection().in_atomic_block, "history_append needs a transaction"
    if not movements:
        return 0
    now = timezone.now()
    totals: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for row in movements:
        if row.at > now:
            raise ValueError(f"history_append: a movement dated {row.at.isoformat()} is in the future")
        if not (row.on_hand_delta or row.reserved_delta):
            raise ValueError("history_append: a movement must move something")
        Movement.Kind(row.kind)  # an unknown kind raises ValueError
        total = totals[(row.item_id, row.location_id)]
        total[0] += row.on_hand_delta
        total[1] += row.reserved_delta
    unbalanced = sorted(pair for pair, total in totals.items() if total != [0, 0])
    if unbalanced:
        raise ValueError(f"history_append: history must sum to zero per item and location, not at {unbalanced}")
    items = sorted({item for item, _ in totals})
    levels = set(StockLevel.objects.filter(item_id__in=items).values_list("item_id", "location_id"))
    missing = sorted(set(totals) - levels)
    if missing:
        raise ValueError(f"history_append: no stock level for {missing}")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalog_movement
                (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor, note, created_at)
            SELECT r.item_id, r.location_id, r.kind, r.on_hand_delta, r.reserved_delta, %s, %s, r.note, r.at
              FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::text[],
                          %s::timestamptz[])
                   AS r(item_id, location_id, kind, on_hand_delta, reserved_delta, note, at)
            """,
            [
                reference,
                actor,
                [m.item_id for m in movements],
                [m.location_id for m in movements],
                [m.kind for m in movements],
                [m.on_hand_delta for m in movements],
                [m.reserved_delta for m in movements],
                [m.note for m in movements],
                [m.at for m in movements],
            ],
        )
    return len(movements)
