"""The suppliers app listens to orders: a reservation at a supplier location gets a drop-ship check."""

from __future__ import annotations

import time
from typing import Any

from apps.catalog.models import Location

# Which locations are suppliers with an order-check endpoint, refreshed every few seconds, so
# that an ordinary order (no supplier stock) costs no query here.
_CHECKED_LOCATIONS_TTL_S = 5.0
_checked_locations: tuple[float, frozenset[int]] = (0.0, frozenset())


def checked_supplier_locations() -> frozenset[int]:
    global _checked_locations
    fetched_at, ids = _checked_locations
    if time.monotonic() - fetched_at > _CHECKED_LOCATIONS_TTL_S:
        from apps.suppliers.models import Supplier

        ids = frozenset(
            Supplier.objects.filter(
                location__kind=Location.Kind.SUPPLIER, settings__has_key="order_check_url", is_active=True
            ).values_list("location_id", flat=True)
        )
        _checked_locations = (time.monotonic(), ids)
    return ids


def forget_checked_locations(**_kwargs: Any) -> None:
    """A supplier changed in this process: look again on the next order."""
    global _checked_locations
    _checked_locations = (0.0, frozenset())


def order_reserved_check(sender: Any, *, order_id: int, location_ids: list[int], **_kwargs: Any) -> None:
    """Sent after commit; one order-check task per supplier location that has a check endpoint."""
    from apps.suppliers.tasks import supplier_order_check

    for location_id in sorted(set(location_ids) & checked_supplier_locations()):
        supplier_order_check.delay(order_id, location_id)
