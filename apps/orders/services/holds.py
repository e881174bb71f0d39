"""Holds that lapse: checkout reservations that were never confirmed give their stock back.

A run takes the same locks as an order placement, in the same order, so it can never deadlock
with one (or with a cancel, a fulfilment or a pusher):

1. the orders of a small batch, skipping any another transaction holds (``SKIP LOCKED``): that
   transaction decides their fate, and the next run finds them if they still lapse;
2. the stock levels of the whole batch at once, in the one global (item_id, location_id) order;
3. the sync work, by one ledger write for the whole batch, whose upsert locks it in listing order.

One run at a time across all hosts (a PostgreSQL advisory lock, which a killed worker's session
drops): a run that finds another still going returns at once. Each batch is its own short
transaction, so a run holds no lock for long and a batch that fails leaves the others done.
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Movement, ProductComponent
from apps.catalog.signals import Tier, incident_cause_changed
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.orders.locks import expired_holds_for_update, hold_expiry_run_lock
from apps.orders.models import Order, Reservation

log = structlog.get_logger("stockroom.orders")

ACTOR = "hold expiry"


def _setting(name: str, default: int) -> int:
    return int(settings.STOCKROOM.get(name, default))


def hold_release_expired(
    *, now: datetime | None = None, batch: int | None = None, budget_s: float | None = None
) -> int:
    """Release every hold past its expiry, a small batch per transaction; returns how many orders expired.

    Returns 0 at once when another run holds the run lock. Stops after ``budget_s`` seconds (the
    next run goes on), so that a run never outlasts the beat interval.
    """
    batch = batch or _setting("HOLD_EXPIRY_BATCH", 50)
    budget_s = budget_s if budget_s is not None else float(_setting("HOLD_EXPIRY_BUDGET_S", 40))
    released = 0
    with hold_expiry_run_lock() as acquired:
        if not acquired:
            log.debug("holds_expiry_already_running")
            return 0
        started = time.monotonic()
        cutoff = now or timezone.now()
        while True:
            with transaction.atomic():
                orders = expired_holds_for_update(now=cutoff, limit=batch)
                _expire(orders)
            released += len(orders)
            if len(orders) < batch or time.monotonic() - started > budget_s:
                break
    if released:
        log.info("holds_expired", orders=released, seconds=round(time.monotonic() - started, 2))
    return released


def _expire(orders: list[Order]) -> None:
    """Expire these locked orders in one go: their levels locked once, one ledger write."""
    if not orders:
        return
    by_id = {order.pk: order for order in orders}
    reservations = [
        r
        for r in Reservation.objects.filter(line__order__in=list(by_id)).select_related("line").order_by("id")
        if r.open_quantity
    ]
    levels_for_update([(r.item_id, r.location_id) for r in reservations])
    specs = []
    for r in reservations:
        quantity = r.open_quantity
        specs.append(
            MovementSpec(
                r.item_id,
                r.location_id,
                Movement.Kind.RELEASE,
                reserved_delta=-quantity,
                reference=f"order:{r.line.order_id}",
            )
        )
        r.released += quantity
    if reservations:
        Reservation.objects.bulk_update(reservations, ["released"])
    Order.objects.filter(pk__in=list(by_id)).update(status=Order.Status.EXPIRED, updated_at=timezone.now())
    if specs:
        movements_apply(movements=specs, actor=ACTOR, priority=Tier.SALE, reason="hold expired")
    _shortfalls_settled([order for order in orders if order.flagged])


def _shortfalls_settled(flagged: list[Order]) -> None:
    """Units no stock covered are no longer promised (see ``lifecycle._shortfall_settled``), for the batch."""
    if not flagged:
        return
    item_ids = set(
        ProductComponent.objects.filter(
            product__order_lines__order__in=flagged, product__order_lines__unallocated_quantity__gt=0
        ).values_list("item_id", flat=True)
    )
    if item_ids:
        incident_cause_changed.send(sender=Order, item_ids=sorted(item_ids), reason="oversold order expired")
