"""Stale supplier feeds sell 0: the read side honours Location.stock_valid_until; this job tells channels."""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.db import transaction
from django.utils import timezone

from apps.catalog.stock.bulk import location_validity_changed
from apps.suppliers.models import Supplier, WebhookReceipt
from apps.suppliers.services.webhooks import REPLAY_WINDOW

log = structlog.get_logger("stockroom.suppliers.staleness")


def suppliers_staleness_apply() -> list[str]:
    """Mark suppliers whose last good feed is older than their max age as stale, once, and sync their channels.

    Availability already reads 0 for them (the location's validity has passed); the job
    records the state for health pages and sends ``stock_changed`` so that every listing
    selling from the location is pushed its new quantity.
    """
    now = timezone.now()
    newly_stale: list[str] = []
    for supplier in Supplier.objects.select_related("location").filter(is_stale=False, is_active=True):
        if (
            supplier.last_success_at is not None
            and supplier.last_success_at + timedelta(minutes=supplier.max_age_minutes) > now
        ):
            continue
        with transaction.atomic():
            flipped = Supplier.objects.filter(pk=supplier.pk, is_stale=False).update(is_stale=True)
            if not flipped:
                continue
            valid_until = supplier.location.stock_valid_until
            if valid_until is None or valid_until > now:
                # Belt and braces: the location must not sell even if its validity was never set.
                supplier.location.stock_valid_until = now
                supplier.location.save(update_fields=["stock_valid_until"])
            told = location_validity_changed(location=supplier.location, reason="supplier_feed_stale")
        newly_stale.append(supplier.code)
        log.warning("supplier_stale", supplier=supplier.code, last_success_at=supplier.last_success_at, items=told)
    WebhookReceipt.objects.filter(received_at__lt=now - 2 * REPLAY_WINDOW).delete()
    return newly_stale
