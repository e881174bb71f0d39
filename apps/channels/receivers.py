"""Channel sync hears every change that can move a listing's quantity, in the writer's transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from apps.catalog.models import Incident
from apps.catalog.signals import (
    ListingsReached,
    SyncPriority,
    incident_cause_changed,
    incident_opened,
    products_changed,
    stock_changed,
)
from apps.channels.selectors import ZERO_ON_INCIDENT
from apps.channels.services.work import sync_work_enqueue, sync_work_enqueued


@receiver(stock_changed, dispatch_uid="channels.stock_changed")
def on_stock_changed(
    sender: Any,
    *,
    pairs: list[tuple[int, int]],
    priority: SyncPriority,
    reason: str,
    reached: ListingsReached | None = None,
    **_: Any,
) -> None:
    if reached is None:
        sync_work_enqueue(pairs=list(pairs), priority=priority, reason=reason)
    else:  # the writer's own statement upserted the work; only the dispatch is left
        sync_work_enqueued(channel_ids=reached.sync_channel_ids, priority=priority)


@receiver(products_changed, dispatch_uid="channels.products_changed")
def on_products_changed(sender: Any, *, product_ids: list[int], priority: SyncPriority, reason: str, **_: Any) -> None:
    sync_work_enqueue(product_ids=list(product_ids), priority=priority, reason=reason)


@receiver(incident_opened, dispatch_uid="channels.incident_opened")
def on_incident_opened(sender: Any, *, incident_id: int, **_: Any) -> None:
    """An oversell (or a store sale into reserved stock): push at tier 1 to every listing selling the item.

    The pusher decides the 0 when it pushes, from whether the incident's cause still holds.
    """
    incident = Incident.objects.filter(pk=incident_id).only("kind", "item_id").first()
    if incident is None or incident.kind not in ZERO_ON_INCIDENT or incident.item_id is None:
        return
    with transaction.atomic():
        sync_work_enqueue(
            item_ids=[incident.item_id],
            priority=SyncPriority.SALE,
            reason=f"incident:{incident.kind}",
            repush=True,
        )


@receiver(incident_cause_changed, dispatch_uid="channels.incident_cause_changed")
def on_incident_cause_changed(sender: Any, *, item_ids: list[int], reason: str, **_: Any) -> None:
    """An incident's cause may be gone without a stock move (an oversold order closed, staff resolved it):
    every listing of the items is pushed again at tier 1, with the truth once nothing holds it at 0."""
    sync_work_enqueue(item_ids=list(item_ids), priority=SyncPriority.SALE, reason=reason)
