"""Holds that lapse: checkout reservations that were never confirmed give their stock back."""

from __future__ import annotations

from datetime import datetime

import structlog
from django.db import transaction
from django.utils import timezone

from apps.orders.locks import expired_holds_for_update
from apps.orders.services.lifecycle import order_hold_expire

log = structlog.get_logger("stockroom.orders")

BATCH = 200


def hold_release_expired(*, now: datetime | None = None, batch: int = BATCH) -> int:
    """Release every hold past its expiry, a batch per transaction; returns how many orders expired."""
    now = now or timezone.now()
    released = 0
    while True:
        with transaction.atomic():
            orders = expired_holds_for_update(now=now, limit=batch)
            for order in orders:
                order_hold_expire(order=order)
        released += len(orders)
        if len(orders) < batch:
            break
    if released:
        log.info("holds_expired", orders=released)
    return released
