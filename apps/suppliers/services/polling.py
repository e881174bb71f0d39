"""Polling one supplier: never twice at once, never while its breaker is open, every attempt recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import structlog
from django.core.cache import cache
from django.utils import timezone

from apps.suppliers import metrics
from apps.suppliers.connectors import FeedFetchError, FileSource, FolderSource, SftpSource, rest_fetch
from apps.suppliers.connectors.base import format_of
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.health import supplier_breaker_allows, supplier_health_record
from apps.suppliers.services.ingest import feed_ingest

log = structlog.get_logger("stockroom.suppliers.poll")


def poll_lock_key(supplier_id: int) -> str:
    return f"supplier-poll-lock:{supplier_id}"


def _failed_run(supplier: Supplier, *, source: str, error: str, started: float) -> FeedRun:
    now = timezone.now()
    run = FeedRun.objects.create(
        supplier=supplier,
        source=source[:500],
        status=FeedRun.Status.FAILED,
        error=error[:2000],
        finished_at=now,
        duration=timedelta(seconds=time.perf_counter() - started),
    )
    supplier_health_record(supplier=supplier, ok=False, error=error)
    metrics.feed_run_recorded(supplier=supplier.code, status=run.status, rejected=0)
    log.warning("supplier_fetch_failed", supplier=supplier.code, run=run.pk, error=error)
    return run


def _file_source(supplier: Supplier) -> FileSource:
    if supplier.connector == Supplier.Connector.SFTP:
        return SftpSource(supplier.settings or {}, secret=supplier.secret)
    return FolderSource(supplier.settings or {})


def supplier_poll(*, supplier_id: int, lock_seconds: int | None = None) -> list[FeedRun]:
    """Fetch and take in a polled supplier's feed. Returns the runs (none when skipped)."""
    supplier = Supplier.objects.select_related("location").filter(pk=supplier_id, is_active=True).first()
    if supplier is None or supplier.connector == Supplier.Connector.WEBHOOK:
        return []
    ttl = lock_seconds or max(60, supplier.poll_interval_s * 4)
    # django-redis: a Redis lock under the cache's key prefix (the cache here is always Redis).
    lock = cast(Any, cache).lock(poll_lock_key(supplier.pk), timeout=ttl, thread_local=False)
    if not lock.acquire(blocking=False):
        log.info("supplier_poll_skipped", supplier=supplier.code, reason="already polling")
        return []
    try:
        if not supplier_breaker_allows(supplier=supplier):
            log.info("supplier_poll_skipped", supplier=supplier.code, reason="breaker open")
            return []
        trial = supplier.breaker_state == Supplier.Breaker.HALF_OPEN
        return _poll(supplier, trial=trial)
    finally:
        try:
            lock.release()
        except Exception:  # the lock expired under a very slow poll; the next poll may already run
            log.warning("supplier_poll_lock_lost", supplier=supplier.code)


def _poll(supplier: Supplier, *, trial: bool) -> list[FeedRun]:
    started = time.perf_counter()
    settings = supplier.settings or {}
    if supplier.connector == Supplier.Connector.REST:
        try:
            feed = rest_fetch(settings=settings, secret=supplier.secret, trial=trial)
        except FeedFetchError as err:
            return [_failed_run(supplier, source="rest", error=str(err), started=started)]
        return [feed_ingest(supplier=supplier, records=feed.records, source=f"rest ({feed.pages} pages)")]
    try:
        source = _file_source(supplier)
    except FeedFetchError as err:
        return [_failed_run(supplier, source=supplier.connector, error=str(err), started=started)]
    runs: list[FeedRun] = []
    try:
        return _take_files(supplier, source, runs, started)
    except FeedFetchError as err:
        runs.append(_failed_run(supplier, source=supplier.connector, error=str(err), started=started))
        return runs
    finally:
        source.close()


def _take_files(supplier: Supplier, source: FileSource, runs: list[FeedRun], started: float) -> list[FeedRun]:
    settings = supplier.settings or {}
    for name in source.pending():
        raw = source.read(name)
        fmt = settings.get("format") or format_of(name)
        run = feed_ingest(supplier=supplier, raw=raw, fmt=fmt, source=f"{supplier.connector}:{name}")
        source.finish(name, ok=run.status == FeedRun.Status.SUCCEEDED)
        runs.append(run)
    return runs


def feed_import_file(
    *, supplier: Supplier, raw: bytes, name: str, fmt: str | None = None, progress: Callable[[str], None] | None = None
) -> FeedRun:
    """Take in one file synchronously (the import_feed command)."""
    return feed_ingest(
        supplier=supplier, raw=raw, fmt=fmt or format_of(name, default="csv"), source=f"file:{name}", progress=progress
    )
