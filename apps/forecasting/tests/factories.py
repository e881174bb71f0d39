"""Ledger history at chosen times, for forecasts and backtests.

The ledger is append-only and stamps rows with the time of insertion, so history in the past
is written with one raw INSERT, and the level is moved by the same totals so that summing the
ledger still reproduces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection, transaction

from apps.catalog.locks import ensure_levels
from apps.catalog.models import Item, Location, StockLevel


def ledger_at(
    item: Item, location: Location, rows: Sequence[tuple[datetime, str, int]], *, reference: str = ""
) -> None:
    """Append movements (created_at, kind, on_hand_delta) as if they had happened then."""
    if not rows:
        return
    with transaction.atomic():
        ensure_levels([(item.pk, location.pk)])
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO catalog_movement
                    (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor, note, created_at)
                SELECT %s, %s, r.kind, r.delta, 0, %s, 'history', '', r.at
                  FROM unnest(%s::timestamptz[], %s::text[], %s::bigint[]) AS r(at, kind, delta)
                """,
                [item.pk, location.pk, reference, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )
        total = sum(r[2] for r in rows)
        level = StockLevel.objects.get(item=item, location=location)
        StockLevel.objects.filter(pk=level.pk).update(on_hand=level.on_hand + total)
