"""Purchase orders: what the merchant buys from one supplier, announced as receipts due.

A purchase order is made from the ticked rows of the "To reorder" list (docs/forecasting.md,
"Reordering"). Its goods arrive where each row asked for them, so it becomes one receipt per
location, expected after the longest lead time among its lines; staff receive those on the
receiving page like any other delivery, and the reorder list counts them as on order at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import structlog
from django.db import transaction
from django.utils import timezone

from apps.catalog.errors import InvalidMovement
from apps.catalog.models import Item, Location, Receipt
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.suppliers.models import PurchaseOrder, Supplier

log = structlog.get_logger("stockroom.purchase_orders")


@dataclass(frozen=True)
class PurchaseLine:
    """Units of an item to buy for a location, and the days until they are there."""

    item: Item
    location: Location
    quantity: int
    lead_time_days: int = 0


@transaction.atomic
def purchase_order_place(
    *, supplier: Supplier, lines: Sequence[PurchaseLine], actor: str, note: str = "", today: date | None = None
) -> PurchaseOrder:
    """One purchase order from ``supplier``: a receipt due per location, referenced by the order's number."""
    if not lines:
        raise InvalidMovement("A purchase order needs at least one line.")
    pairs = [(line.item.pk, line.location.pk) for line in lines]
    if len(set(pairs)) != len(pairs):
        raise InvalidMovement("Each item appears once per location on a purchase order.")
    if any(line.quantity <= 0 for line in lines):
        raise InvalidMovement("Each line of a purchase order buys at least one unit.")
    today = today or timezone.localdate()
    order = PurchaseOrder.objects.create(supplier=supplier, note=note, created_by=actor)
    receipts: list[Receipt] = []
    by_place: dict[int, list[PurchaseLine]] = {}
    for line in lines:
        by_place.setdefault(line.location.pk, []).append(line)
    for place_lines in sorted(by_place.values(), key=lambda group: group[0].location.code):
        receipts.append(
            receipt_create(
                location=place_lines[0].location,
                lines=[ReceiptLineSpec(item=line.item, expected=line.quantity) for line in place_lines],
                actor=actor,
                supplier=supplier.name,
                reference=order.number,
                expected_on=today + timedelta(days=max(line.lead_time_days for line in place_lines)),
                note=note or f"Purchase order {order.number} to {supplier.name}",
            )
        )
    order.receipts.set(receipts)
    log.info(
        "purchase_order_placed",
        order=order.number,
        supplier=supplier.code,
        receipts=len(receipts),
        lines=len(lines),
        actor=actor,
    )
    return order
