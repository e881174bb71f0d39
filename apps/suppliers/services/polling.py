"""Polling one supplier: never twice at once, never while its breaker is open, every attempt recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import structlog
from django.utils import timezone

from apps.core.redaction import redact
from apps.core.secrets import SecretsUnreadable
from apps.suppliers import metrics
from apps.suppliers.connectors import FeedFetchError, FileSource, FolderSource, SftpSource, rest_fetch
from apps.suppliers.connectors.base import format_of
from apps.suppliers.limits import FeedTooLarge
from apps.suppliers.locks import supplier_poll_lock
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.health import supplier_breaker_allows, supplier_health_record
from apps.suppliers.services.ingest import feed_ingest, feed_run_refuse
from apps.suppliers.services.suppliers import supplier_secret

log = structlog.get_logger("stockroom.suppliers.poll")


def _run_start(supplier: Supplier, *, source: str) -> FeedRun:
    """The run exists (and heartbeats) from the start of the fetch, so a worker dying in it leaves a trace."""
    return FeedRun.objects.create(supplier=supplier, source=source[:500])


def _run_failed(supplier: Supplier, run: FeedRun, *, error: str, started: float) -> FeedRun:
    error = redact(error, [supplier.secret])  # the run's error is shown to staff and logged
    run.status = FeedRun.Status.FAILED
    run.error = error[:2000]
    run.finished_at = timezone.now()
    run.duration = timedelta(seconds=time.perf_counter() - started)
    run.save(update_fields=["status", "error", "finished_at", "duration"])
    supplier_health_record(supplier=supplier, ok=False, error=error)
    metrics.feed_run_recorded(supplier=supplier.code, status=run.status, quarantined=0)
    log.warning("supplier_fetch_failed", supplier=supplier.code, run=run.pk, error=error)
    return run


def _run_refused(supplier: Supplier, run: FeedRun, *, reason: str, started: float) -> FeedRun:
    feed_run_refuse(run=run, supplier=supplier, reason=redact(reason, [supplier.secret]), started=started)
    metrics.feed_run_recorded(supplier=supplier.code, status=run.status, quarantined=run.rows_quarantined)
    return run


def _failed_run(supplier: Supplier, *, source: str, error: str, started: float) -> FeedRun:
    return _run_failed(supplier, _run_start(supplier, source=source), error=error, started=started)


def _file_source(supplier: Supplier, secret: str) -> FileSource:
    if supplier.connector == Supplier.Connector.SFTP:
        return SftpSource(supplier.settings or {}, secret=secret)
    return FolderSource(supplier.settings or {})


def supplier_poll(*, supplier_id: int) -> list[FeedRun]:
    """Fetch and take in a polled supplier's feed. Returns the runs (none when skipped).

    The poll lock dies with its holder (see ``supplier_poll_lock``): a killed worker never
    keeps the next poll of its supplier waiting.
    """
    supplier = Supplier.objects.select_related("location").filter(pk=supplier_id, is_active=True).first()
    if supplier is None or supplier.connector == Supplier.Connector.WEBHOOK:
        return []
    with supplier_poll_lock(supplier_id=supplier.pk) as acquired:
        if not acquired:
            log.info("supplier_poll_skipped", supplier=supplier.code, reason="already polling")
            return []
        if not supplier_breaker_allows(supplier=supplier):
            log.info("supplier_poll_skipped", supplier=supplier.code, reason="breaker open")
            return []
        trial = supplier.breaker_state == Supplier.Breaker.HALF_OPEN
        return _poll(supplier, trial=trial)


def _poll(supplier: Supplier, *, trial: bool) -> list[FeedRun]:
    started = time.perf_counter()
    settings = supplier.settings or {}
    try:
        secret = supplier_secret(supplier)
    except SecretsUnreadable as err:
        return [_failed_run(supplier, source=supplier.connector, error=str(err), started=started)]
    if supplier.connector == Supplier.Connector.REST:
        run = _run_start(supplier, source="rest")
        try:
            feed = rest_fetch(settings=settings, secret=secret, trial=trial)
        except FeedTooLarge as err:
            return [_run_refused(supplier, run, reason=str(err), started=started)]
        except FeedFetchError as err:
            return [_run_failed(supplier, run, error=str(err), started=started)]
        except Exception as err:  # a time limit or a bug: the run ends failed rather than running
            _run_failed(supplier, run, error=f"{type(err).__name__}: {err}", started=started)
            raise
        run.source = f"rest ({feed.pages} pages)"
        FeedRun.objects.filter(pk=run.pk).update(source=run.source)
        return [feed_ingest(supplier=supplier, records=feed.records, run=run)]
    try:
        source = _file_source(supplier, secret)
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
        run = _run_start(supplier, source=f"{supplier.connector}:{name}")
        try:
            raw = source.read(name)
        except FeedTooLarge as err:  # refused whole, and moved aside so that it does not block the next files
            runs.append(_run_refused(supplier, run, reason=str(err), started=started))
            source.finish(name, ok=False)
            continue
        except FeedFetchError as err:  # the source went away: the next poll tries the remaining files
            runs.append(_run_failed(supplier, run, error=str(err), started=started))
            return runs
        except Exception as err:
            _run_failed(supplier, run, error=f"{type(err).__name__}: {err}", started=started)
            raise
        fmt = settings.get("format") or format_of(name)
        run = feed_ingest(supplier=supplier, raw=raw, fmt=fmt, run=run)
        source.finish(name, ok=run.status == FeedRun.Status.SUCCEEDED)
        runs.append(run)
    return runs


def feed_refuse(*, supplier: Supplier, source: str, reason: str) -> FeedRun:
    """Record a feed refused before it was read (over FEED_MAX_BYTES): a refused run with the reason."""
    return _run_refused(supplier, _run_start(supplier, source=source), reason=reason, started=time.perf_counter())


def feed_import_file(
    *, supplier: Supplier, raw: bytes, name: str, fmt: str | None = None, progress: Callable[[str], None] | None = None
) -> FeedRun:
    """Take in one file synchronously (the import_feed command)."""
    return feed_ingest(
        supplier=supplier, raw=raw, fmt=fmt or format_of(name, default="csv"), source=f"file:{name}", progress=progress
    )
