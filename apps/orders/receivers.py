"""What the orders app does when other apps change: a listing linked applies the platform order lines
that were waiting for it (refused or taken in part for want of a listing)."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from django.db import transaction
from django.db.models.signals import post_save

from apps.channels.models import Listing
from apps.orders.models import PlatformOrderRejection

log = structlog.get_logger("stockroom.orders")


# A save that may link a listing to lines waiting for it (other saves, such as sync bookkeeping, cannot).
LINKING_FIELDS = frozenset({"channel_sku", "external_id", "product", "product_id", "is_active"})


def _listing_saved(sender: type[Listing], instance: Listing, created: bool, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return  # a fixture load
    update_fields = kwargs.get("update_fields")
    if not created and update_fields is not None and not LINKING_FIELDS & set(update_fields):
        return
    if not PlatformOrderRejection.objects.filter(channel_id=instance.channel_id, resolved_at__isnull=True).exists():
        return
    transaction.on_commit(partial(_orders_waiting_apply, instance.pk), robust=True)


def _orders_waiting_apply(listing_id: int) -> None:
    from apps.orders.services.intake import platform_order_rejections_for_listing

    platform_order_rejections_for_listing(listing_id=listing_id)


def connect_receivers() -> None:
    post_save.connect(_listing_saved, sender=Listing, dispatch_uid="orders.listing_saved")
