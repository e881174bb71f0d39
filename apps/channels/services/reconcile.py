"""Reconciliation: read back what a channel shows and repair drift by queueing a push.

The read-back goes through the channel's connector (``Connector.read_back``: for our own
protocol ``GET {push_url}?sku=A&sku=B...``, for a platform its API). Reads take tokens from
the same bucket as pushes, so the channel's rate limit holds; a platform that throttles a read
pauses that bucket too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.db import transaction
from django.utils import timezone

from apps.catalog.signals import Tier
from apps.channels import limits
from apps.channels.conf import sync_setting
from apps.channels.connectors.base import ChannelRef, Connector, ConnectorError, ConnectorThrottled, QuantityUpdate
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import ListingAvailability, listings_availability, listings_zeroed_by_incident
from apps.channels.services.connection import channel_push_configured
from apps.channels.services.work import sync_work_enqueue

log = structlog.get_logger("stockroom.sync")


@dataclass
class ReconcileReport:
    channel_id: int
    checked: int = 0
    drifted: int = 0
    unreadable_pages: int = 0


def channel_reconcile(*, channel_id: int, started: datetime | None = None) -> ReconcileReport:
    """Compare every active listing without pending work against the channel; queue pushes for drift."""
    report = ReconcileReport(channel_id)
    channel = Channel.objects.filter(pk=channel_id, is_active=True, state=Channel.State.LIVE).first()
    ready = channel_push_configured(channel) if channel is not None else None
    if channel is None or ready is None:
        return report
    connector, ref = ready
    started = started or timezone.now()
    page = int(sync_setting("SYNC_RECONCILE_PAGE"))
    listing_ids = list(
        Listing.objects.filter(channel=channel, is_active=True, created_at__lte=started)
        .exclude(pk__in=SyncWork.objects.filter(channel=channel).values("listing_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    bucket = limits.channel_bucket(channel)
    for start in range(0, len(listing_ids), page):
        chunk = listing_ids[start : start + page]
        while (wait := bucket.take()) > 0:
            time.sleep(min(wait, 30.0))
        truth, zeroed = listings_availability(chunk), listings_zeroed_by_incident(chunk)
        shown = _read_back(channel, connector, ref, list(truth.values()), bucket)
        if shown is None:
            report.unreadable_pages += 1
            continue
        drifted = []
        for availability in truth.values():
            seen = shown.get(availability.listing_id)
            expected = 0 if availability.listing_id in zeroed else availability.available
            if channel.has_orders_pending and seen is not None and seen < expected:
                continue  # a raise would wait for the order import anyway
            if seen != expected:
                drifted.append(availability.listing_id)
        report.checked += len(truth)
        if drifted:
            with transaction.atomic():
                sync_work_enqueue(listing_ids=drifted, priority=Tier.MANUAL, reason="reconcile", repush=True)
            report.drifted += len(drifted)
    # Nothing drifted: housekeeping. A drift is news (each listing was pushed again).
    (log.info if report.drifted else log.debug)(
        "channel_reconciled", channel=channel.code, checked=report.checked, drifted=report.drifted
    )
    return report


def _read_back(
    channel: Channel,
    connector: Connector,
    ref: ChannelRef,
    listings: list[ListingAvailability],
    bucket: limits.TokenBucket,
) -> dict[int, int | None] | None:
    """What the platform shows for these listings (listing id -> quantity), or None when unreadable now."""
    if not listings:
        return {}
    external_ids = dict(
        Listing.objects.filter(pk__in=[a.listing_id for a in listings]).values_list("pk", "external_id")
    )
    asked = [
        QuantityUpdate(
            listing_id=a.listing_id,
            sku=a.channel_sku,
            external_id=external_ids.get(a.listing_id, ""),
            available=0,
            last_pushed=None,
        )
        for a in listings
    ]
    try:
        return connector.read_back(ref, asked)
    except ConnectorThrottled as err:
        bucket.pause(err.wait_s)
        log.warning("channel_read_back_throttled", channel=channel.code, retry_after=err.wait_s)
    except ConnectorError as err:
        log.warning("channel_read_back_failed", channel=channel.code, error=ref.redact(str(err)))
    except Exception:  # a connector's bug makes the page unreadable, not the job
        log.exception("channel_read_back_failed", channel=channel.code)
    return None
