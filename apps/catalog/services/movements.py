"""Stock movements staff and stores record: receipts, counts, adjustments, point-of-sale sales."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from apps.catalog.errors import InvalidMovement, NegativeStockRefused, UnknownStockReference
from apps.catalog.locks import levels_for_update
from apps.catalog.models import DOCUMENT_KEY_SCOPE, Incident, Item, Location, Movement, StockLevel
from apps.catalog.services.incidents import incident_open
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply

RECORDABLE_KINDS = (
    Movement.Kind.RECEIPT,
    Movement.Kind.COUNT,
    Movement.Kind.ADJUSTMENT,
    Movement.Kind.POS_SALE,
)
MAX_QUANTITY = 10**12
# The key scope of movements recorded by Stockroom's own code with no principal behind them
# (scripts, management commands): still apart from the document references.
SYSTEM_KEY_SCOPE = "system"


@dataclass(frozen=True)
class MovementResult:
    movement: Movement
    level: StockLevel
    incident: Incident | None
    replayed: bool


def stock_movement_record(
    *,
    location_code: str,
    item_sku: str,
    kind: str,
    quantity: int,
    idempotency_key: str,
    key_scope: str = SYSTEM_KEY_SCOPE,
    actor: str,
    note: str = "",
) -> MovementResult:
    """Record one movement. ``count`` sets on_hand; ``pos_sale`` removes; receipt adds; adjustment adds +/-.

    A point-of-sale sale is a fact and is always recorded; when it eats into reserved
    stock an incident opens and channels get a tier-1 sync. Replays of the same key
    return the first movement.
    """
    if kind not in RECORDABLE_KINDS:
        raise InvalidMovement(f"kind must be one of {', '.join(RECORDABLE_KINDS)}.")
    if abs(quantity) > MAX_QUANTITY:
        raise InvalidMovement(f"quantity must be within ±{MAX_QUANTITY}.")
    if kind != Movement.Kind.ADJUSTMENT and quantity < 0:
        raise InvalidMovement(f"quantity must not be negative for {kind}; use an adjustment to remove stock.")
    if kind in (Movement.Kind.RECEIPT, Movement.Kind.POS_SALE, Movement.Kind.ADJUSTMENT) and quantity == 0:
        raise InvalidMovement("quantity must not be zero.")
    if key_scope == DOCUMENT_KEY_SCOPE:
        raise ValueError("a recorded movement's key belongs to a principal, not to Stockroom's documents")
    existing = Movement.objects.filter(key_scope=key_scope, idempotency_key=idempotency_key).first()
    if existing is not None:
        return _replay(existing, location_code, item_sku, kind)
    location = Location.objects.filter(code=location_code).first()
    item = Item.objects.filter(sku=item_sku).first()
    if location is None or item is None:
        missing = "location" if location is None else "item"
        raise UnknownStockReference(f"Unknown {missing}.", field=missing)
    try:
        with transaction.atomic():
            return _record(location, item, kind, quantity, idempotency_key, key_scope, actor, note)
    except IntegrityError as err:
        # The same key raced us; the winner's movement is the answer.
        existing = Movement.objects.filter(key_scope=key_scope, idempotency_key=idempotency_key).first()
        if existing is None:
            raise NegativeStockRefused() from err
        return _replay(existing, location_code, item_sku, kind)


def _replay(existing: Movement, location_code: str, item_sku: str, kind: str) -> MovementResult:
    from apps.core.errors import IdempotencyKeyReused

    if existing.kind != kind or existing.location.code != location_code or existing.item.sku != item_sku:
        raise IdempotencyKeyReused(key=existing.idempotency_key)
    level = StockLevel.objects.get(item_id=existing.item_id, location_id=existing.location_id)
    return MovementResult(movement=existing, level=level, incident=None, replayed=True)


def _record(
    location: Location, item: Item, kind: str, quantity: int, key: str, key_scope: str, actor: str, note: str
) -> MovementResult:
    (level,) = levels_for_update([(item.id, location.id)])
    delta = {
        Movement.Kind.RECEIPT: quantity,
        Movement.Kind.ADJUSTMENT: quantity,
        Movement.Kind.POS_SALE: -quantity,
        Movement.Kind.COUNT: quantity - level.on_hand,
    }[Movement.Kind(kind)]
    after = level.on_hand + delta
    if after < 0 and not level.allow_negative:
        raise NegativeStockRefused(on_hand=level.on_hand, requested=delta)
    # Below zero with nothing promised (a store that may go negative) is no one's loss: no incident.
    eats_reserved = delta < 0 and level.reserved > 0 and after < level.reserved
    priority = Tier.SALE if kind == Movement.Kind.POS_SALE or eats_reserved else Tier.MANUAL
    (movement,) = movements_apply(
        movements=[
            MovementSpec(
                item_id=item.id,
                location_id=location.id,
                kind=kind,
                on_hand_delta=delta,
                reference=f"{kind}:{key}",
                note=note,
                idempotency_key=key,
                key_scope=key_scope,
            )
        ],
        actor=actor,
        priority=priority,
        reason=kind,
    )
    incident = None
    if eats_reserved:
        shortfall = min(level.reserved, level.reserved - after)
        incident = incident_open(
            kind=Incident.Kind.POS_INTO_RESERVED,
            item_id=item.id,
            location_id=location.id,
            shortfall=shortfall,
            reference=f"movement:{movement.pk}",
            detail=f"{kind} of {abs(delta)} at {location.code} left on_hand {after} under reserved {level.reserved}.",
        )
    level.refresh_from_db()
    return MovementResult(movement=movement, level=level, incident=incident, replayed=False)
