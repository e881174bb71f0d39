"""Channel sync hears every change that can move a listing's quantity, in the writer's transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from apps.catalog.models import Incident
from apps.catalog.signals import ListingsReached, SyncPriority, incident_opened, products_changed, stock_changed
from apps.channels.services.work import sync_work_enqueue, sync_work_enqueued

ZERO_ON_INCIDENT = (Incident.Kind.OVERSELL, Incident.Kind.POS_INTO_RESERVED)


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
    """An oversell (or a store sale into reserved stock): push 0 at tier 1 for every listing selling the item."""
    incident = Incident.objects.filter(pk=incident_id).only("kind", "item_id").first()
    if incident is None or incident.kind not in ZERO_ON_INCIDENT or incident.item_id is None:
        return
    with transaction.atomic():
        sync_work_enqueue(
            item_ids=[incident.item_id],
            priority=SyncPriority.SALE,
            reason=f"incident:{incident.kind}",
            force_zero=True,
            repush=True,
        )
