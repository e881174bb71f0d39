"""Transfers between locations: out of the source when shipped, in transit, into the destination when received.

Goods in transit count nowhere. A transfer cancelled in transit books what has not arrived back
into the source, and writes it off there as a ``lost`` adjustment when it will not come back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.catalog.errors import InvalidMovement, StockWorkRefused
from apps.catalog.locks import levels_for_update, transfer_for_update
from apps.catalog.models import DOCUMENT_KEY_SCOPE, Adjustment, Item, Location, Movement, Transfer, TransferLine
from apps.catalog.services.movements import MAX_QUANTITY
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply


@dataclass(frozen=True)
class TransferLineSpec:
    item: Item
    quantity: int


def _check(source: Location, destination: Location, lines: Sequence[TransferLineSpec]) -> None:
    if source.pk == destination.pk:
        raise InvalidMovement("A transfer goes between two different locations.")
    for place in (source, destination):
        if place.kind == Location.Kind.SUPPLIER:
            raise StockWorkRefused(f"{place.code} is a supplier's drop-ship location; stock there follows its feed.")
    if not lines:
        raise InvalidMovement("A transfer needs at least one line.")
    if len({line.item.pk for line in lines}) != len(lines):
        raise InvalidMovement("Each item may appear once on a transfer.")
    for line in lines:
        if not 0 < line.quantity <= MAX_QUANTITY:
            raise InvalidMovement(f"The quantity of {line.item.sku} must be between 1 and {MAX_QUANTITY}.")


@transaction.atomic
def transfer_create(
    *, source: Location, destination: Location, lines: Sequence[TransferLineSpec], actor: str, reference: str = ""
) -> Transfer:
    """A draft transfer: nothing moves until it is shipped."""
    _check(source, destination, lines)
    transfer = Transfer.objects.create(source=source, destination=destination, reference=reference, created_by=actor)
    TransferLine.objects.bulk_create(
        [TransferLine(transfer=transfer, item=line.item, quantity=line.quantity) for line in lines]
    )
    return transfer


@transaction.atomic
def transfer_update(*, transfer: Transfer, lines: Sequence[TransferLineSpec] | None = None, **fields: Any) -> Transfer:
    """Change a draft transfer (its places, reference or lines)."""
    transfer = transfer_for_update(transfer.pk)
    if transfer.status != Transfer.Status.DRAFT:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; only a draft can change.")
    for name, value in fields.items():
        setattr(transfer, name, value)
    current = [TransferLineSpec(item=line.item, quantity=line.quantity) for line in transfer.lines.all()]
    _check(transfer.source, transfer.destination, current if lines is None else lines)
    if fields:
        transfer.save(update_fields=list(fields))
    if lines is not None:
        transfer.lines.all().delete()
        TransferLine.objects.bulk_create(
            [TransferLine(transfer=transfer, item=line.item, quantity=line.quantity) for line in lines]
        )
    return transfer


def _book(
    transfer: Transfer,
    *,
    at: Location,
    kind: str,
    sign: int,
    actor: str,
    quantities: Mapping[int, int] | None = None,
    key: str = "",
) -> None:
    """Book ``quantities`` ({line id: units}; by default every line's whole quantity) at ``at``."""
    lines = list(transfer.lines.select_related("item"))
    moving = {line.pk: line.quantity for line in lines} if quantities is None else dict(quantities)
    lines = [line for line in lines if moving.get(line.pk)]
    levels = {level.item_id: level for level in levels_for_update([(line.item_id, at.pk) for line in lines])}
    if sign < 0 and not at.allow_negative:
        # Shipping never takes stock promised to orders: only what is on hand and not reserved leaves.
        short = [
            {"sku": line.item.sku, "requested": line.quantity, "free": levels[line.item_id].offline_usable}
            for line in lines
            if levels[line.item_id].offline_usable < line.quantity
        ]
        if short:
            detail = ", ".join(f"{row['sku']}: {row['requested']} wanted, {row['free']} free" for row in short)
            raise StockWorkRefused(f"Not enough unreserved stock at {at.code} ({detail}).", lines=short)
    movements_apply(
        movements=[
            MovementSpec(
                item_id=line.item_id,
                location_id=at.pk,
                kind=kind,
                on_hand_delta=sign * moving[line.pk],
                reference=transfer.ledger_reference,
                idempotency_key=f"{transfer.ledger_reference}:{kind}:{key + ':' if key else ''}{line.pk}",
            )
            for line in lines
        ],
        actor=actor,
        priority=Tier.MANUAL,
        reason=kind,
    )


@transaction.atomic
def transfer_ship(*, transfer_id: int, actor: str) -> Transfer:
    """The goods leave the source: transfer_out movements there; they are in transit until received."""
    transfer = transfer_for_update(transfer_id)
    if transfer.status != Transfer.Status.DRAFT:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; only a draft can be shipped.")
    _book(transfer, at=transfer.source, kind=Movement.Kind.TRANSFER_OUT, sign=-1, actor=actor)
    transfer.status = Transfer.Status.IN_TRANSIT
    transfer.shipped_at = timezone.now()
    transfer.save(update_fields=["status", "shipped_at"])
    return transfer


@transaction.atomic
def transfer_receive(
    *, transfer_id: int, actor: str, quantities: Mapping[int, int] | None = None, submission: str = ""
) -> Transfer:
    """The goods arrive: transfer_in movements at the destination.

    By default everything still in transit arrives. ``quantities`` ({line id: units}) books a part
    of it; ``submission`` then names this receiving, so that sending it again books nothing twice.
    The transfer is received once nothing is left in transit.
    """
    transfer = transfer_for_update(transfer_id)
    lines = {line.pk: line for line in transfer.lines.all()}
    if quantities is not None:
        if not submission:
            raise InvalidMovement("A part receiving needs its submission key.")
        keys = [f"{transfer.ledger_reference}:{Movement.Kind.TRANSFER_IN}:{submission}:{pk}" for pk in quantities]
        if Movement.objects.filter(key_scope=DOCUMENT_KEY_SCOPE, idempotency_key__in=keys).exists():
            return transfer
    if transfer.status != Transfer.Status.IN_TRANSIT:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; only goods in transit arrive.")
    if quantities is None:
        arriving = {pk: line.in_transit for pk, line in lines.items() if line.in_transit}
    else:
        arriving = {pk: qty for pk, qty in quantities.items() if qty}
        unknown = sorted(set(arriving) - set(lines))
        if unknown:
            raise InvalidMovement(f"Lines {unknown} are not on {transfer}.")
        if not arriving or any(not 0 < qty <= lines[pk].in_transit for pk, qty in arriving.items()):
            raise InvalidMovement("Each line can receive at most what is still in transit on it, and something must.")
    _book(
        transfer,
        at=transfer.destination,
        kind=Movement.Kind.TRANSFER_IN,
        sign=1,
        actor=actor,
        quantities=arriving,
        key=submission if quantities is not None else "",
    )
    for pk, qty in arriving.items():
        TransferLine.objects.filter(pk=pk).update(received=F("received") + qty)
    if all(line.in_transit == arriving.get(pk, 0) for pk, line in lines.items()):
        transfer.status = Transfer.Status.RECEIVED
        transfer.received_at = timezone.now()
        transfer.save(update_fields=["status", "received_at"])
    return transfer


@dataclass(frozen=True)
class CancelResult:
    transfer: Transfer
    units: int  # units in transit the cancelling booked back (returned) or wrote off (lost)
    replayed: bool


@transaction.atomic
def transfer_cancel(*, transfer_id: int, actor: str = "", outcome: str = "") -> CancelResult:
    """Cancel a draft (nothing moved), or a shipped transfer whose goods are still in transit.

    In transit, ``outcome`` says what became of what has not arrived (a part received stays at the
    destination): ``returned`` books it back into the source; ``lost`` books it back and writes it
    off there as a ``lost`` adjustment, reported with the other adjustments. Every ledger row it
    books carries the transfer's reference. Cancelling again with the same outcome books nothing twice.
    """
    transfer = transfer_for_update(transfer_id)
    if transfer.status == Transfer.Status.CANCELLED:
        if outcome == transfer.cancel_outcome:
            return CancelResult(transfer=transfer, units=0, replayed=True)
        done = transfer.get_cancel_outcome_display().lower() if transfer.cancel_outcome else "cancelled as a draft"
        raise StockWorkRefused(f"{transfer} was already cancelled ({done}).")
    if transfer.status == Transfer.Status.DRAFT:
        if outcome:
            raise InvalidMovement("A draft moved nothing: it is cancelled without an outcome.")
        units = 0
    elif transfer.status == Transfer.Status.IN_TRANSIT:
        if outcome not in Transfer.CancelOutcome.values:
            choices = " or ".join(Transfer.CancelOutcome.values)
            raise InvalidMovement(f"Say what became of the goods in transit: {choices}.")
        units = _back_from_transit(transfer, outcome=outcome, actor=actor)
        transfer.cancel_outcome = outcome
    else:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; it can no longer be cancelled.")
    transfer.status = Transfer.Status.CANCELLED
    transfer.cancelled_at = timezone.now()
    transfer.cancelled_by = actor
    transfer.save(update_fields=["status", "cancel_outcome", "cancelled_at", "cancelled_by"])
    return CancelResult(transfer=transfer, units=units, replayed=False)


def _back_from_transit(transfer: Transfer, *, outcome: str, actor: str) -> int:
    """What is still in transit comes back on the source's books; lost goods are written off there."""
    lines = [line for line in transfer.lines.select_related("item") if line.in_transit]
    source, reference = transfer.source, transfer.ledger_reference
    what = f"{transfer} to {transfer.destination.code}"
    lost = outcome == Transfer.CancelOutcome.LOST
    specs = []
    for line in lines:
        specs.append(
            MovementSpec(
                item_id=line.item_id,
                location_id=source.pk,
                kind=Movement.Kind.TRANSFER_CANCEL,
                on_hand_delta=line.in_transit,
                reference=reference,
                note=f"{'lost in transit' if lost else 'returned to source'}: {what}",
                idempotency_key=f"{reference}:{Movement.Kind.TRANSFER_CANCEL}:{line.pk}",
            )
        )
        if lost:
            specs.append(
                MovementSpec(
                    item_id=line.item_id,
                    location_id=source.pk,
                    kind=Movement.Kind.ADJUSTMENT,
                    on_hand_delta=-line.in_transit,
                    reference=reference,
                    note=f"{Adjustment.Reason.LOST}: in transit on {what}",
                    idempotency_key=f"{reference}:{Adjustment.Reason.LOST}:{line.pk}",
                )
            )
    # Locked in the fixed order after the transfer, as shipping and receiving do.
    levels_for_update([(line.item_id, source.pk) for line in lines])
    booked = movements_apply(movements=specs, actor=actor, priority=Tier.MANUAL, reason=Movement.Kind.TRANSFER_CANCEL)
    if lost:
        Adjustment.objects.bulk_create(
            [
                Adjustment(
                    location=source,
                    item_id=row.item_id,
                    quantity=row.on_hand_delta,
                    reason=Adjustment.Reason.LOST,
                    note=f"In transit on {what}, cancelled as lost.",
                    movement=row,
                    actor=actor,
                )
                for row in booked
                if row.kind == Movement.Kind.ADJUSTMENT
            ]
        )
    return sum(line.in_transit for line in lines)
