"""Transfers between locations: out of the source when shipped, in transit, into the destination when received."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.catalog.errors import InvalidMovement, StockWorkRefused
from apps.catalog.locks import levels_for_update, transfer_for_update
from apps.catalog.models import Item, Location, Movement, Transfer, TransferLine
from apps.catalog.services.stock import MAX_QUANTITY
from apps.catalog.signals import ChangePriority
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


def _book(transfer: Transfer, *, at: Location, kind: str, sign: int, actor: str) -> list[TransferLine]:
    lines = list(transfer.lines.select_related("item"))
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
                on_hand_delta=sign * line.quantity,
                reference=transfer.ledger_reference,
                idempotency_key=f"{transfer.ledger_reference}:{kind}:{line.pk}",
            )
            for line in lines
        ],
        actor=actor,
        priority=ChangePriority.MANUAL,
        reason=kind,
    )
    return lines


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
def transfer_receive(*, transfer_id: int, actor: str) -> Transfer:
    """The goods arrive: transfer_in movements at the destination."""
    transfer = transfer_for_update(transfer_id)
    if transfer.status != Transfer.Status.IN_TRANSIT:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; only goods in transit arrive.")
    _book(transfer, at=transfer.destination, kind=Movement.Kind.TRANSFER_IN, sign=1, actor=actor)
    transfer.status = Transfer.Status.RECEIVED
    transfer.received_at = timezone.now()
    transfer.save(update_fields=["status", "received_at"])
    return transfer


@transaction.atomic
def transfer_cancel(*, transfer_id: int) -> Transfer:
    """Drop a draft; goods already shipped must be received (and sent back with a new transfer)."""
    transfer = transfer_for_update(transfer_id)
    if transfer.status != Transfer.Status.DRAFT:
        raise StockWorkRefused(f"{transfer} is {transfer.get_status_display().lower()}; only a draft can be cancelled.")
    transfer.status = Transfer.Status.CANCELLED
    transfer.save(update_fields=["status"])
    return transfer
