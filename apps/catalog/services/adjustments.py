"""Adjustments with a reason (damaged, lost, found, correction), booked as one ledger movement each."""

from __future__ import annotations

from django.db import transaction

from apps.catalog.errors import InvalidMovement, StockWorkRefused
from apps.catalog.models import Adjustment, Item, Location, Movement
from apps.catalog.services.movements import SYSTEM_KEY_SCOPE, stock_movement_record

# Which way each reason moves stock: damaged and lost goods leave, found goods come back.
REASON_SIGN = {
    Adjustment.Reason.DAMAGED: -1,
    Adjustment.Reason.LOST: -1,
    Adjustment.Reason.FOUND: 1,
    Adjustment.Reason.CORRECTION: 0,  # either way
}


def adjustment_record(
    *,
    location: Location,
    item: Item,
    quantity: int,
    reason: str,
    actor: str,
    idempotency_key: str,
    key_scope: str = SYSTEM_KEY_SCOPE,
    note: str = "",
) -> Adjustment:
    """Add (+) or remove (-) units for a reason, through the ledger (``stock_movement_record``).

    An adjustment that takes on_hand under what is reserved opens an incident and syncs the
    channels at once, as any movement does. Sending the same key again returns the first one;
    the key is the sender's (``key_scope``, e.g. ``staff:<user id>``).
    """
    if reason not in REASON_SIGN:
        raise InvalidMovement(f"reason must be one of {', '.join(REASON_SIGN)}.")
    sign = REASON_SIGN[Adjustment.Reason(reason)]
    if quantity == 0 or (sign and quantity * sign < 0):
        way = {-1: "remove units (negative)", 1: "add units (positive)", 0: "change something"}[sign]
        raise InvalidMovement(f"A {reason} adjustment must {way}.")
    if location.kind == Location.Kind.SUPPLIER:
        raise StockWorkRefused(f"{location.code} is a supplier's drop-ship location; stock there follows its feed.")
    with transaction.atomic():
        result = stock_movement_record(
            location_code=location.code,
            item_sku=item.sku,
            kind=Movement.Kind.ADJUSTMENT,
            quantity=quantity,
            idempotency_key=idempotency_key,
            key_scope=key_scope,
            actor=actor,
            note=f"{reason}: {note}" if note else reason,
        )
        adjustment, _ = Adjustment.objects.get_or_create(
            movement=result.movement,
            defaults={
                "location": location,
                "item": item,
                "quantity": quantity,
                "reason": reason,
                "note": note,
                "actor": actor,
            },
        )
    return adjustment
