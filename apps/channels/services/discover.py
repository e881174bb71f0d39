"""Read a platform's whole catalog in the background: a ``CatalogRead`` per read, with its progress.

A whole catalog takes long to read (about a minute for 50,000 Shopify variants, more on slower platforms):
too long for a web request. ``catalog_read_start`` records a read and queues the task
(``channels.catalog_read``), which calls ``catalog_read_run``: the connector reads the catalog, the row
shows how far it is (variants read, of how many, then requests and errors), and once done it keeps the
variants. The link, opening-stock and go-live previews of the channel then use that read while it is
fresh (``services.link.channel_catalog``, ``CATALOG_FRESH_S``) instead of reading the platform again.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from apps.channels.locks import channel_for_update
from apps.channels.models import CatalogRead, Channel
from apps.channels.services.link import (
    CATALOG_FRESH_S,
    MAX_REASON,
    catalog_entries_dump,
    catalog_read_fresh,
    catalog_read_running,
    channel_catalog_read,
)
from apps.core.errors import DomainError

log = structlog.get_logger("stockroom.channels")

PROGRESS_EVERY_S = 0.5  # at most this often the row is written while reading
# A read queued or reading for longer than this is taken as lost (a worker killed mid-read): a new one starts.
STALE_S = 20 * 60
KEPT_READS = 3  # reads kept per channel: the latest few, for their figures; the older ones are deleted


def catalog_read_start(*, channel: Channel, actor: str = "", again: bool = False) -> CatalogRead:
    """Queue a background read of the channel's catalog and return it. One at a time per channel: a read
    under way is returned as it is; without ``again`` a fresh finished one is returned too."""
    with transaction.atomic():
        channel_for_update(channel.pk)  # two starts at once take turns
        running = catalog_read_running(channel)
        if running is not None and running.created_at >= timezone.now() - timedelta(seconds=STALE_S):
            return running
        if running is not None:
            CatalogRead.objects.filter(pk=running.pk).update(
                state=CatalogRead.State.FAILED, error="Lost: no worker finished it.", finished_at=timezone.now()
            )
        if not again:
            fresh = catalog_read_fresh(channel)
            if fresh is not None:
                return fresh
        read = CatalogRead.objects.create(channel=channel, requested_by=actor[:150])
        old = list(CatalogRead.objects.filter(channel=channel).values_list("pk", flat=True)[KEPT_READS:])
        if old:
            CatalogRead.objects.filter(pk__in=old).delete()
        transaction.on_commit(partial(_enqueue, read.pk))
    log.info("catalog_read_queued", channel=channel.code, read=read.pk, by=actor)
    return read


def _enqueue(read_id: int) -> None:
    from apps.channels.tasks import channel_catalog_read as task

    task.apply_async(args=[read_id])


def catalog_read_run(*, read_id: int) -> CatalogRead | None:
    """Do a queued read: the connector reads the catalog, the row shows the progress, then keeps the
    variants (``done``) or the reason it failed (``failed``). A read finished already is left alone."""
    claimed = CatalogRead.objects.filter(
        pk=read_id, state__in=[CatalogRead.State.QUEUED, CatalogRead.State.RUNNING]
    ).update(state=CatalogRead.State.RUNNING, started_at=timezone.now(), done=0)
    if not claimed:
        return None
    read = CatalogRead.objects.select_related("channel").defer("entries").get(pk=read_id)
    last = 0.0

    def progress(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S and (total is None or done < total):
            return
        last = now
        fields: dict[str, Any] = {"done": done}
        if total is not None:
            fields["total"] = total
        CatalogRead.objects.filter(pk=read_id, state=CatalogRead.State.RUNNING).update(**fields)

    started = time.monotonic()
    try:
        catalog = channel_catalog_read(channel=read.channel, progress=progress)
    except DomainError as err:
        CatalogRead.objects.filter(pk=read_id).update(
            state=CatalogRead.State.FAILED,
            errors=read.errors + 1,
            error=str(err.detail)[:MAX_REASON],
            finished_at=timezone.now(),
        )
        log.info("catalog_read_failed", channel=read.channel.code, read=read_id, error=str(err.detail))
        return CatalogRead.objects.defer("entries").get(pk=read_id)
    variants = len(catalog.entries)
    CatalogRead.objects.filter(pk=read_id).update(
        state=CatalogRead.State.DONE,
        done=variants,
        total=variants,
        requests=catalog.requests,
        entries=catalog_entries_dump(catalog),
        finished_at=timezone.now(),
    )
    log.info(
        "catalog_read_done",
        channel=read.channel.code,
        read=read_id,
        variants=variants,
        requests=catalog.requests,
        seconds=round(time.monotonic() - started, 1),
    )
    return CatalogRead.objects.defer("entries").get(pk=read_id)


def catalog_read_dict(read: CatalogRead | None) -> dict[str, Any] | None:
    """A read as the API and the onboarding page show it (never its variants)."""
    if read is None:
        return None
    now = timezone.now()
    fresh = (
        read.state == CatalogRead.State.DONE
        and read.finished_at is not None
        and (now - read.finished_at).total_seconds() < CATALOG_FRESH_S
    )
    return {
        "id": read.pk,
        "state": read.state,
        "done": read.done,
        "total": read.total,
        "requests": read.requests,
        "errors": read.errors,
        "error": read.error,
        "fresh": fresh,
        "fresh_until": (read.finished_at + timedelta(seconds=CATALOG_FRESH_S)).isoformat()
        if read.finished_at is not None and read.state == CatalogRead.State.DONE
        else None,
        "created_at": read.created_at.isoformat(),
        "started_at": read.started_at.isoformat() if read.started_at else None,
        "finished_at": read.finished_at.isoformat() if read.finished_at else None,
    }


def catalog_read_under_way(channel: Channel) -> CatalogRead | None:
    """The channel's read under way (queued or reading), unless it is older than ``STALE_S`` (lost)."""
    running = catalog_read_running(channel)
    if running is None or running.created_at < timezone.now() - timedelta(seconds=STALE_S):
        return None
    return running


def catalog_read_latest(channel: Channel) -> CatalogRead | None:
    """The channel's latest background read (without its variants)."""
    return CatalogRead.objects.filter(channel=channel).defer("entries").order_by("-created_at", "-id").first()
