"""Feed runs alive and dead: the heartbeat a working run moves, and the job that abandons runs whose worker died."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.suppliers import metrics
from apps.suppliers.locks import feed_runs_stale_for_update, supplier_poll_lock
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.health import supplier_health_record
from apps.suppliers.services.suppliers import POLLED_CONNECTORS

log = structlog.get_logger("stockroom.suppliers.runs")

Progress = Callable[[str], None]


def feed_run_stale_after() -> timedelta:
    return timedelta(seconds=settings.FEED_RUN_STALE_S)


def feed_run_heartbeat(run: FeedRun) -> None:
    """Tell the abandoned-run job that this run still works.

    Written at most every tenth of the stale threshold, so a run of a few milliseconds (a webhook
    push) writes nothing beyond its creation, and a million-row feed a handful of rows.
    """
    now = timezone.now()
    if now - run.heartbeat_at < feed_run_stale_after() / 10:
        return
    run.heartbeat_at = now
    FeedRun.objects.filter(pk=run.pk, status=FeedRun.Status.RUNNING).update(heartbeat_at=now)


def feed_run_heartbeat_step(run: FeedRun, progress: Progress | None) -> Progress:
    """A progress callback that moves the run's heartbeat at every stage, then reports the stage."""

    def step(stage: str) -> None:
        feed_run_heartbeat(run)
        if progress is not None:
            progress(stage)

    return step


def feed_runs_abandon(*, poll_again: Callable[[int], object]) -> list[FeedRun]:
    """Mark running runs whose heartbeat stopped as abandoned, record the failure, and poll their suppliers again.

    A run is dead when its heartbeat is older than FEED_RUN_STALE_S and nobody holds its
    supplier's poll lock: a poll alive in a slow fetch holds the lock (which dies with its
    holder), so it is never taken for dead. ``poll_again(supplier_id)`` queues the new poll.
    """
    cutoff = timezone.now() - feed_run_stale_after()
    supplier_ids = sorted(
        set(
            FeedRun.objects.filter(status=FeedRun.Status.RUNNING, heartbeat_at__lt=cutoff).values_list(
                "supplier_id", flat=True
            )
        )
    )
    abandoned: list[FeedRun] = []
    for supplier_id in supplier_ids:
        with supplier_poll_lock(supplier_id=supplier_id) as nobody_polls:
            if not nobody_polls:
                log.info("feed_runs_stale_but_polling", supplier_id=supplier_id)
                continue
            runs = _abandon(supplier_id=supplier_id, cutoff=cutoff)
        supplier = Supplier.objects.filter(pk=supplier_id).first()
        if not runs or supplier is None:  # nothing left to abandon, or the supplier was just deleted
            continue
        supplier_health_record(supplier=supplier, ok=False, error=runs[-1].error)
        for run in runs:
            metrics.feed_run_recorded(supplier=supplier.code, status=run.status, quarantined=run.rows_quarantined)
            log.warning("feed_run_abandoned", supplier=supplier.code, run=run.pk, heartbeat_at=run.heartbeat_at)
        abandoned.extend(runs)
        if supplier.is_active and supplier.connector in POLLED_CONNECTORS:
            poll_again(supplier.pk)
    return abandoned


def _abandon(*, supplier_id: int, cutoff: datetime) -> list[FeedRun]:
    now = timezone.now()
    with transaction.atomic():
        runs = feed_runs_stale_for_update(supplier_id=supplier_id, heartbeat_before=cutoff)
        for run in runs:
            silent = int((now - run.heartbeat_at).total_seconds())
            run.status = FeedRun.Status.ABANDONED
            run.error = f"abandoned: its worker stopped (no heartbeat for {silent} s); nothing of it was applied"
            run.finished_at = now
            run.duration = now - run.started_at
            # What it had read never reached the stock: its rows count as not accepted.
            run.rows_accepted = run.rows_changed = 0
            run.rows_quarantined = run.rows_read
            run.save(
                update_fields=[
                    "status",
                    "error",
                    "finished_at",
                    "duration",
                    "rows_accepted",
                    "rows_changed",
                    "rows_quarantined",
                ]
            )
    return runs
