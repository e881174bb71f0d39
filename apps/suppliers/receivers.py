"""The suppliers app listens to orders: a reservation at a supplier location gets a drop-ship check."""

from __future__ import annotations

from typing import Any

from apps.catalog.models import Location


def order_reserved_check(sender: Any, *, order_id: int, location_ids: list[int], **_kwargs: Any) -> None:
    """Sent after commit; one order-check task per supplier location that has a check endpoint."""
    from apps.suppliers.models import Supplier
    from apps.suppliers.tasks import supplier_order_check

    supplier_locations = Supplier.objects.filter(
        location_id__in=list(location_ids),
        location__kind=Location.Kind.SUPPLIER,
        settings__has_key="order_check_url",
    ).values_list("location_id", flat=True)
    for location_id in sorted(supplier_locations):
        supplier_order_check.delay(order_id, location_id)
