"""Expected deliveries and receiving them at a location, in one or more parts, through the ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import transaction
from django.db.models import F

from apps.catalog.errors import InvalidMovement, OverDeliveryUnconfirmed, StockWorkRefused
from apps.catalog.locks import levels_for_update, receipt_for_update
from apps.catalog.models import DOCUMENT_KEY_SCOPE, Item, Location, Movement, Receipt, ReceiptLine
from apps.catalog.services.movements import MAX_QUANTITY
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply

OPEN = (Receipt.Status.EXPECTED, Receipt.Status.PARTIAL)


@dataclass(frozen=True)
class ReceiptLineSpec:
    item: Item
    expected: int


@dataclass(frozen=True)
class ReceiveResult:
    receipt: Receipt
    units: int
    replayed: bool
    over_delivered: int = 0  # units booked beyond what was still due


def _check_lines(lines: Sequence[ReceiptLineSpec]) -> None:
    if not lines:
        raise InvalidMovement("A receipt needs at least one line.")
    if len({line.item.pk for line in lines}) != len(lines):
        raise InvalidMovement("Each item may appear once on a receipt.")
    for line in lines:
        if not 0 <= line.expected <= MAX_QUANTITY:
            raise InvalidMovement(f"Expected quantity of {line.item.sku} must be between 0 and {MAX_QUANTITY}.")


def _check_location(location: Location) -> None:
    # A supplier's location follows its feed (absolute levels); goods are received at a store or warehouse.
    if location.kind == Location.Kind.SUPPLIER:
        raise StockWorkRefused(f"{location.code} is a supplier's drop-ship location; stock there follows its feed.")


@transaction.atomic
def receipt_create(
    *,
    location: Location,
    lines: Sequence[ReceiptLineSpec],
    actor: str,
    supplier: str = "",
    reference: str = "",
    expected_on: date | None = None,
    note: str = "",
) -> Receipt:
    """Announce a delivery: what should arrive at this location. Nothing moves until it is received."""
    _check_location(location)
    _check_lines(lines)
    receipt = Receipt.objects.create(
        location=location,
        supplier=supplier,
        reference=reference,
        expected_on=expected_on,
        note=note,
        created_by=actor,
    )
    ReceiptLine.objects.bulk_create(
        [ReceiptLine(receipt=receipt, item=line.item, expected=line.expected) for line in lines]
    )
    return receipt


@transaction.atomic
def receipt_update(*, receipt: Receipt, lines: Sequence[ReceiptLineSpec] | None = None, **fields: Any) -> Receipt:
    """Change the header, or the lines while nothing has been received yet."""
    receipt = receipt_for_update(receipt.pk)
    if "location" in fields and fields["location"] != receipt.location:
        if receipt.status != Receipt.Status.EXPECTED:
            raise StockWorkRefused("The location of a receipt cannot change once goods were received.")
        _check_location(fields["location"])
    if fields:
        for name, value in fields.items():
            setattr(receipt, name, value)
        receipt.save(update_fields=list(fields))
    if lines is not None:
        if receipt.status != Receipt.Status.EXPECTED:
            raise StockWorkRefused("The lines of a receipt cannot change once goods were received.")
        _check_lines(lines)
        receipt.lines.all().delete()
        ReceiptLine.objects.bulk_create(
            [ReceiptLine(receipt=receipt, item=line.item, expected=line.expected) for line in lines]
        )
    return receipt


def receipt_receive(
    *,
    receipt_id: int,
    quantities: Mapping[int, int],
    actor: str,
    submission: str,
    note: str = "",
    over_confirmed: Mapping[int, int] | None = None,
) -> ReceiveResult:
    """Book what arrived now ({line id: units}) as receipts on the ledger, and what is still due.

    ``submission`` names this receiving (the form's own key): sending the same one again books
    nothing twice. More than is still due may arrive (suppliers over-deliver) and is booked as
    counted, but only once staff confirmed it: ``over_confirmed`` ({line id: units above what is
    due}) must cover every line's excess as it stands under the lock, else ``OverDeliveryUnconfirmed``
    lists the lines and nothing is booked.
    """
    wanted = {line_id: qty for line_id, qty in quantities.items() if qty}
    if any(qty < 0 or qty > MAX_QUANTITY for qty in wanted.values()):
        raise InvalidMovement(f"Received quantities must be between 0 and {MAX_QUANTITY}.")
    if not wanted:
        raise InvalidMovement("Enter at least one quantity received.")
    with transaction.atomic():
        receipt = receipt_for_update(receipt_id)
        keys = {line_id: f"receipt:{receipt.pk}:{submission}:{line_id}" for line_id in wanted}
        if Movement.objects.filter(key_scope=DOCUMENT_KEY_SCOPE, idempotency_key__in=list(keys.values())).exists():
            return ReceiveResult(receipt=receipt, units=0, replayed=True)
        if receipt.status not in OPEN:
            raise StockWorkRefused(f"{receipt} is {receipt.get_status_display().lower()}; nothing more can arrive.")
        lines = {line.pk: line for line in receipt.lines.select_related("item")}
        unknown = sorted(set(wanted) - set(lines))
        if unknown:
            raise InvalidMovement(f"Lines {unknown} are not on {receipt}.")
        _check_over_delivery(receipt, lines, wanted, over_confirmed or {})
        levels_for_update([(lines[line_id].item_id, receipt.location_id) for line_id in wanted])
        movements_apply(
            movements=[
                MovementSpec(
                    item_id=lines[line_id].item_id,
                    location_id=receipt.location_id,
                    kind=Movement.Kind.RECEIPT,
                    on_hand_delta=qty,
                    reference=receipt.ledger_reference,
                    note=note or receipt.reference,
                    idempotency_key=keys[line_id],
                )
                for line_id, qty in sorted(wanted.items())
            ],
            actor=actor,
            priority=Tier.MANUAL,
            reason=Movement.Kind.RECEIPT,
        )
        for line_id, qty in wanted.items():
            ReceiptLine.objects.filter(pk=line_id).update(received=F("received") + qty)
        complete = not receipt.lines.filter(received__lt=F("expected")).exists()
        receipt.status = Receipt.Status.RECEIVED if complete else Receipt.Status.PARTIAL
        receipt.save(update_fields=["status"])
    over = sum(max(0, qty - lines[line_id].due) for line_id, qty in wanted.items())
    return ReceiveResult(receipt=receipt, units=sum(wanted.values()), replayed=False, over_delivered=over)


def _over_delivery(*, lines: Mapping[int, ReceiptLine], quantities: Mapping[int, int]) -> list[dict[str, Any]]:
    """The lines where more arrives now than is still due: line id, sku, due, arrived and the excess."""
    return [
        {
            "line": line_id,
            "sku": lines[line_id].item.sku,
            "due": lines[line_id].due,
            "arrived": qty,
            "over": qty - lines[line_id].due,
        }
        for line_id, qty in sorted(quantities.items())
        if line_id in lines and qty > lines[line_id].due
    ]


def _check_over_delivery(
    receipt: Receipt, lines: Mapping[int, ReceiptLine], wanted: Mapping[int, int], confirmed: Mapping[int, int]
) -> None:
    # Read under the receipt lock: a colleague's receiving in between makes the excess grow, and asks again.
    unconfirmed = [
        row for row in _over_delivery(lines=lines, quantities=wanted) if confirmed.get(row["line"], 0) < row["over"]
    ]
    if unconfirmed:
        detail = ", ".join(f"{row['sku']}: {row['arrived']} arrived, {row['due']} due" for row in unconfirmed)
        raise OverDeliveryUnconfirmed(
            f"More arrived than is still due on {receipt} ({detail}); confirm the extra units to book them.",
            lines=unconfirmed,
        )


@transaction.atomic
def receipt_close(*, receipt_id: int) -> Receipt:
    """Nothing more will arrive: a part-received receipt is closed short, an untouched one cancelled."""
    receipt = receipt_for_update(receipt_id)
    if receipt.status not in OPEN:
        raise StockWorkRefused(f"{receipt} is already {receipt.get_status_display().lower()}.")
    receipt.status = Receipt.Status.RECEIVED if receipt.status == Receipt.Status.PARTIAL else Receipt.Status.CANCELLED
    receipt.save(update_fields=["status"])
    return receipt
