"""Thin tasks: ids in, a service call, declared limits. Push tasks run on the channel's shard queue."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

# A push gives its slot back after its slice, plus at most one request's timeout in flight.
_PUSH_S = settings.STOCKROOM["SYNC_PUSH_SLICE_S"] + settings.STOCKROOM["SYNC_HTTP_TIMEOUT_S"]


@shared_task(
    name="channels.push",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=_PUSH_S + 30,
    time_limit=_PUSH_S + 60,
)
def channel_push(channel_id: int, kicked: str | None = None) -> None:
    from apps.channels.services.push import channel_push as push

    push(channel_id=channel_id, kicked=kicked)


@shared_task(name="channels.sweep", acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def sync_sweep() -> None:
    from apps.channels.services.work import sync_sweep as sweep

    sweep()


@shared_task(name="channels.stream_refresh", ignore_result=True, soft_time_limit=30, time_limit=60)
def stream_refresh() -> None:
    from apps.channels.stream.publish import streams_refresh

    streams_refresh()


@shared_task(name="channels.reconcile_all", acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def channels_reconcile() -> None:
    """Fan out: one reconciliation per active channel, on that channel's shard (an unconfigured one does nothing)."""
    from apps.channels.models import Channel
    from apps.channels.services.work import channel_queue

    channels = Channel.objects.filter(is_active=True).exclude(connector="stockroom", push_url="")
    for channel_id in channels.values_list("pk", flat=True):
        channel_reconcile.apply_async(args=[channel_id], queue=channel_queue(channel_id))


@shared_task(name="channels.reconcile", acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def channel_reconcile(channel_id: int) -> None:
    from apps.channels.services.reconcile import channel_reconcile as reconcile

    reconcile(channel_id=channel_id)


@shared_task(name="channels.catalog_read", acks_late=True, ignore_result=True, soft_time_limit=900, time_limit=960)
def channel_catalog_read(read_id: int) -> None:
    """Read a platform's whole catalog in the background (``services.discover.catalog_read_run``)."""
    from apps.channels.services.discover import catalog_read_run

    catalog_read_run(read_id=read_id)
