"""The order truth sweep: open platform orders are re-read from the platform and brought to what it shows.

Webhooks get lost, come twice or out of order, and the poll looks back only minutes; so every
imported order still open (reserved, confirmed or partly fulfilled) that the platform has not
shown for ``ORDERS_SWEEP_AGE_S`` is fetched again (``Connector.orders_get``, in batches of the
connector's ``orders_get_batch``) and applied like any webhook (``platform_order_apply``): a cancel
releases, a shipment fulfils, edited lines change the reservation. One sweeper per channel
(``platform_orders_sweep_lock``); a platform error leaves everything as it was for the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import Connector, ConnectorError
from apps.channels.models import Channel
from apps.channels.services.connection import channel_ref
from apps.core.secrets import SecretsUnreadable
from apps.orders.locks import platform_orders_sweep_lock
from apps.orders.models import Order
from apps.orders.services.intake import platform_order_apply

log = structlog.get_logger("stockroom.orders")


@dataclass
class SweepReport:
    channel_id: int
    busy: bool = False
    unsupported: bool = False
    asked: int = 0  # open orders asked about
    shown: int = 0  # of which the platform showed
    results: dict[str, int] = field(default_factory=dict)
    error: str = ""


def platform_order_sweeps_due() -> list[int]:
    """Active platform channels with imported orders still open (the beat fans out one sweep per channel)."""
    open_orders = Order.objects.filter(mode=Order.Mode.IMPORT, status__in=Order.OPEN_STATUSES)
    channel_ids = set(open_orders.values_list("channel_id", flat=True).distinct())
    channels = Channel.objects.filter(is_active=True, pk__in=channel_ids).exclude(connector="stockroom")
    return sorted(channels.values_list("pk", flat=True))


def platform_orders_sweep(*, channel_id: int, limit: int | None = None) -> SweepReport:
    """Re-read the channel's open imported orders the platform has not shown for a while, and apply them."""
    report = SweepReport(channel_id)
    channel = Channel.objects.filter(pk=channel_id, is_active=True).exclude(connector="stockroom").first()
    if channel is None:
        return report
    try:
        connector: Connector = connector_named(channel.connector)
        ref = channel_ref(channel)
    except (LookupError, ImportError, SecretsUnreadable) as err:
        report.error = str(err) or type(err).__name__
        log.error("platform_orders_sweep_unusable", channel=channel.code, error=report.error)
        return report
    if not connector.configured(ref):
        return report
    with platform_orders_sweep_lock(channel_id=channel.pk) as acquired:
        if not acquired:
            report.busy = True
            return report
        age = timedelta(seconds=int(settings.STOCKROOM["ORDERS_SWEEP_AGE_S"]))
        most = int(settings.STOCKROOM["ORDERS_SWEEP_MAX"]) if limit is None else limit
        external_ids = list(
            Order.objects.filter(channel=channel, mode=Order.Mode.IMPORT, status__in=Order.OPEN_STATUSES)
            .filter(Q(platform_seen_at__isnull=True) | Q(platform_seen_at__lt=timezone.now() - age))
            .order_by(F("platform_seen_at").asc(nulls_first=True), "id")  # never seen, then least recently seen
            .values_list("external_id", flat=True)[:most]
        )
        batch = max(1, int(connector.orders_get_batch))
        actor = f"sweep:{connector.name}"
        for start in range(0, len(external_ids), batch):
            ids = external_ids[start : start + batch]
            try:
                orders = connector.orders_get(ref, ids)
            except NotImplementedError:
                report.unsupported = True
                log.info("platform_orders_sweep_unsupported", channel=channel.code, connector=connector.name)
                return report
            except ConnectorError as err:
                report.error = str(err) or type(err).__name__
                log.warning("platform_orders_sweep_failed", channel=channel.code, error=report.error)
                return report
            report.asked += len(ids)
            wanted = set(ids)
            for order in orders:
                if order.external_id not in wanted:
                    continue  # the platform answered about an order Stockroom did not ask for
                applied = platform_order_apply(channel=channel, order=order, actor=actor, source="sweep")
                report.shown += 1
                report.results[applied.result] = report.results.get(applied.result, 0) + 1
    log.info(
        "platform_orders_swept",
        channel=channel.code,
        asked=report.asked,
        shown=report.shown,
        **report.results,
    )
    return report
