"""The only place in this app that builds select_for_update querysets.

Lock order across the system: an order row first, then its stock levels
(``apps.catalog.locks.levels_for_update``, always in (item_id, location_id) order).
"""

from __future__ import annotations

from django.db import connection

from apps.orders.errors import OrderNotFound
from apps.orders.models import Order


def order_for_update(*, order_id: int, channel_id: int | None = None) -> Order:
    """Lock one order (of this channel, when given); a foreign or missing id is the same 404."""
    queryset = Order.objects.select_for_update(of=("self",)).filter(pk=order_id)
    if channel_id is not None:
        queryset = queryset.filter(channel_id=channel_id)
    order = queryset.first()
    if order is None:
        raise OrderNotFound()
    return order


def expired_holds_for_update(*, now, limit: int) -> list[Order]:
    """Lapsed holds, skipping those another transaction is working on (it will decide their fate)."""
    return list(
        Order.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(status=Order.Status.RESERVED, expires_at__lte=now)
        .order_by("expires_at", "id")[:limit]
    )


def order_stream_lock(*, channel_id: int, external_id: str) -> None:
    """Serialise the events of one marketplace order for the rest of the transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", [f"order-events\x1f{channel_id}\x1f{external_id}"]
        )
