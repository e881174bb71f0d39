"""Opening stock: quantities taken over from somewhere else (a platform's stock when a channel goes live),
booked as ``count`` movements, once per item and key.

A count sets on hand to what was found: the movement books ``quantity - on hand`` of the moment of
booking. Each item's movement carries its own idempotency key, so booking the same opening again
books nothing for the items already booked (and says which). Items not stocked at the location yet
get their level here (``locks.levels_for_update`` creates missing levels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from django.db import connection, transaction

from apps.catalog.errors import InvalidMovement
from apps.catalog.locks import levels_for_update
from apps.catalog.models import Incident, Location, Movement, StockLevel
from apps.catalog.services.incidents import incident_open
from apps.catalog.services.movements import MAX_QUANTITY
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply

log = structlog.get_logger("stockroom.catalog")
# Levels locked per statement: a whole platform's catalog (tens of thousands of items) stays within the
# database's limit of parameters per statement.
LOCK_CHUNK = 2000
ANALYZE_AFTER_LEVELS = 1000


@dataclass(frozen=True)
class OpeningBooked:
    """What ``opening_counts_book`` did: the movements it wrote and the items it had booked before."""

    movements: list[Movement] = field(default_factory=list)
    already_booked: set[int] = field(default_factory=set)  # item ids whose key was used already


def opening_count_key(prefix: str, item_id: int) -> str:
    """The idempotency key of one item's opening count (``prefix``: who takes the stock over, e.g. a channel)."""
    return f"{prefix}:{item_id}"


def opening_counts_booked(*, key_prefix: str, item_ids: list[int]) -> set[int]:
    """Which of these items have their opening count booked under ``key_prefix`` already. One query."""
    keys = {opening_count_key(key_prefix, item): item for item in item_ids}
    if not keys:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idempotency_key FROM catalog_movement WHERE idempotency_key = ANY(%s::text[])", [list(keys)]
        )
        return {keys[key] for (key,) in cursor.fetchall()}


def opening_counts_book(
    *, location: Location, quantities: Mapping[int, int], reference: str, key_prefix: str, actor: str
) -> OpeningBooked:
    """Set on hand at ``location`` to ``quantities`` ({item id: units}) as one ``count`` movement per item.

    Once per item and ``key_prefix``: items booked before are left alone and returned in
    ``already_booked``. A count that leaves on hand under what is reserved opens a
    ``pos_into_reserved`` incident, as any movement into reserved stock does. Locks the levels in
    (item, location) order and checks everything under them.
    """
    bad = {item: qty for item, qty in quantities.items() if qty < 0 or qty > MAX_QUANTITY}
    if bad:
        raise InvalidMovement(f"Opening quantities must be within 0..{MAX_QUANTITY}: items {sorted(bad)[:10]}.")
    with transaction.atomic():
        items = sorted(quantities)
        locked: dict[int, StockLevel] = {}
        for start in range(0, len(items), LOCK_CHUNK):  # in item order, as every writer locks
            chunk = items[start : start + LOCK_CHUNK]
            locked.update({level.item_id: level for level in levels_for_update([(i, location.pk) for i in chunk])})
        if len(items) >= ANALYZE_AFTER_LEVELS:
            # Levels just made for thousands of items are unknown to the planner: the channels' share of the
            # movements (which listings they reach) would loop over them row by row. ANALYZE counts them.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE catalog_stocklevel")
        already = opening_counts_booked(key_prefix=key_prefix, item_ids=items)
        todo = [item for item in items if item not in already]
        specs = [
            MovementSpec(
                item_id=item,
                location_id=location.pk,
                kind=Movement.Kind.COUNT,
                on_hand_delta=quantities[item] - locked[item].on_hand,
                reference=reference,
                note=f"opening stock {quantities[item]} (was {locked[item].on_hand})",
                idempotency_key=opening_count_key(key_prefix, item),
            )
            for item in todo
        ]
        short = [item for item in todo if locked[item].reserved > quantities[item]]
        movements = movements_apply(
            movements=specs,
            actor=actor,
            priority=Tier.SALE if short else Tier.MANUAL,
            reason=Movement.Kind.COUNT,
        )
        by_item = {movement.item_id: movement for movement in movements}
        for item in short:
            level = locked[item]
            incident_open(
                kind=Incident.Kind.POS_INTO_RESERVED,
                item_id=item,
                location_id=location.pk,
                shortfall=level.reserved - quantities[item],
                reference=f"movement:{by_item[item].pk}",
                detail=f"Opening stock {quantities[item]} at {location.code} is under reserved {level.reserved}.",
            )
    log.info(
        "opening_stock_booked",
        location=location.code,
        reference=reference,
        booked=len(movements),
        already=len(already),
        by=actor,
    )
    return OpeningBooked(movements=movements, already_booked=already)
