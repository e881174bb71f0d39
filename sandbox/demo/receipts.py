"""Deliveries the merchant expects when the demo opens, so that "Receive" has something to receive."""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.utils import timezone

from apps.catalog.models import Item, Location, Receipt
from apps.catalog.services.receipts import OPEN, ReceiptLineSpec, receipt_create

log = structlog.get_logger("stockroom.demo")

DEMO_ACTOR = "demo"
# (location, supplier, reference, due in days, lines as (sku, expected base units))
DUE = (
    ("WH", "Acme Apparel", "PO-DEMO-1", 0, (("HOOD-S", 6), ("HOOD-M", 10), ("HOOD-L", 6))),
    ("WH", "Bulk & Co", "PO-DEMO-2", 1, (("SOCK", 48), ("COFFEE", 5000))),
    ("S1", "Acme Apparel", "PO-DEMO-3", 0, (("CAP", 12),)),
)


def demo_receipts_due() -> int:
    """A few expected deliveries, made when no delivery of the demo is open; returns how many are open now."""
    open_now = Receipt.objects.filter(created_by=DEMO_ACTOR, status__in=OPEN).count()
    if open_now:
        return open_now
    today = timezone.localdate()
    items = {item.sku: item for item in Item.objects.filter(sku__in={sku for *_, lines in DUE for sku, _ in lines})}
    locations = {location.code: location for location in Location.objects.filter(code__in={row[0] for row in DUE})}
    made = 0
    for code, supplier, reference, days, lines in DUE:
        specs = [ReceiptLineSpec(item=items[sku], expected=qty) for sku, qty in lines if sku in items]
        if code not in locations or not specs:
            continue
        receipt_create(
            location=locations[code],
            lines=specs,
            actor=DEMO_ACTOR,
            supplier=supplier,
            reference=reference,
            expected_on=today + timedelta(days=days),
            note="made by the demo: receive it under Receipts",
        )
        made += 1
    log.info("demo_receipts_due", receipts=made)
    return made
