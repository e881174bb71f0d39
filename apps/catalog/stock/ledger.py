"""The ledger writer: the one place that changes on_hand/reserved by deltas, always with its movement rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.db import connection, transaction

from apps.catalog import metrics
from apps.catalog.models import DOCUMENT_KEY_SCOPE, Movement
from apps.catalog.signals import Tier
from apps.catalog.stock.changes import stock_changed_announce


@dataclass(frozen=True)
class MovementSpec:
    item_id: int
    location_id: int
    kind: str
    on_hand_delta: int = 0
    reserved_delta: int = 0
    reference: str = ""
    note: str = ""
    idempotency_key: str | None = None
    # Whose key: Stockroom's own documents by default, else the client principal that sent it.
    key_scope: str = DOCUMENT_KEY_SCOPE


def movements_apply(*, movements: Sequence[MovementSpec], actor: str, priority: Tier, reason: str) -> list[Movement]:
    """Apply deltas to the levels and append the movements, in the caller's transaction.

    The caller must already hold the level locks (``locks.levels_for_update``) when it
    checked anything against the current levels; the counters change with one
    ``UPDATE ... FROM (VALUES ...)`` and the ledger rows with one bulk insert.
    Database constraints refuse a negative ``reserved`` or ``on_hand`` where not allowed.
    """
    if not movements:
        return []
    assert transaction.get_connection().in_atomic_block, "movements_apply needs a transaction"
    totals: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for spec in movements:
        total = totals[(spec.item_id, spec.location_id)]
        total[0] += spec.on_hand_delta
        total[1] += spec.reserved_delta
    changed = [(pair, deltas) for pair, deltas in sorted(totals.items()) if deltas != [0, 0]]
    if changed:
        values = ", ".join(["(%s::bigint, %s::bigint, %s::bigint, %s::bigint)"] * len(changed))
        params: list[int] = []
        for (item, loc), (dh, dr) in changed:
            params += [item, loc, dh, dr]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE catalog_stocklevel AS l
                   SET on_hand = l.on_hand + v.dh, reserved = l.reserved + v.dr, updated_at = now()
                  FROM (VALUES {values}) AS v(item_id, location_id, dh, dr)
                 WHERE l.item_id = v.item_id AND l.location_id = v.location_id
                """,
                params,
            )
            if cursor.rowcount != len(changed):
                raise LookupError("movements_apply: a stock level is missing; lock it with levels_for_update first")
    rows = Movement.objects.bulk_create(
        [
            Movement(
                item_id=spec.item_id,
                location_id=spec.location_id,
                kind=spec.kind,
                on_hand_delta=spec.on_hand_delta,
                reserved_delta=spec.reserved_delta,
                reference=spec.reference,
                note=spec.note,
                actor=actor,
                idempotency_key=spec.idempotency_key,
                key_scope=spec.key_scope,
            )
            for spec in movements
            if spec.on_hand_delta or spec.reserved_delta or spec.kind == Movement.Kind.COUNT
        ]
    )
    stock_changed_announce(sender=Movement, pairs=totals, priority=priority, reason=reason)
    # Not robust=True: Django cannot log a failing partial; counting in memory does not fail.
    transaction.on_commit(partial(metrics.movements_committed, [row.kind for row in rows]))
    return rows
