"""The only place in this app that takes locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import structlog
from django.db import connection, transaction

from apps.suppliers.models import FeedRun

log = structlog.get_logger("stockroom.suppliers.locks")

# How long PostgreSQL waits before probing a silent poller's socket, then how often and how many
# times: a poller on a machine that died without closing its connection loses the lock in about a
# minute (a killed process closes its socket at once). Ignored on unix sockets (same machine).
_KEEPALIVE = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}


def poll_interval_lock(*, every_s: int) -> None:
    """Serialise finding-or-creating the beat interval of this length for the rest of the transaction.

    The scheduler's interval table has no unique key, so two suppliers created at once with the
    same interval would otherwise each insert one.
    """
    assert transaction.get_connection().in_atomic_block, "poll_interval_lock needs a transaction"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", [f"poll-interval\x1f{every_s}"])


def poll_lock_key(supplier_id: int) -> str:
    return f"supplier-poll\x1f{supplier_id}"


@contextmanager
def supplier_poll_lock(*, supplier_id: int) -> Iterator[bool]:
    """Hold the supplier's poll lock for the block if nobody else does; yields whether it was taken.

    A PostgreSQL session-level advisory lock on this thread's own database connection, rather
    than a lease in Redis: the server drops it the moment the session ends, so a worker killed
    mid-poll (SIGKILL, OOM, a Celery time limit) frees its supplier at once, without a TTL to
    guess or a heartbeat thread to renew it. It fits Django's connection handling: a session lock
    ignores transactions (commits and rollbacks in the poll keep it), and Celery closes a task's
    connection only between tasks (CONN_MAX_AGE is checked before and after a task), never during
    one; prefork children each open their own connection. Session locks are re-entrant within a
    session, so the same thread cannot exclude itself; other threads and processes are excluded.
    Needs a session-pooling (or no) proxy in front of PostgreSQL, as the feed lock does already.
    """
    key = poll_lock_key(supplier_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0)), "
            + ", ".join(f"set_config('{name}', '{value}', false)" for name, value in _KEEPALIVE.items()),
            [key],
        )
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            _poll_unlock(key, supplier_id=supplier_id)


def _poll_unlock(key: str, *, supplier_id: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
            released = cursor.fetchone()[0]
    except Exception:
        # The session is unusable (a broken connection, an aborted transaction): end it, and the
        # server drops the lock with it.
        log.warning("supplier_poll_unlock_failed", supplier_id=supplier_id, exc_info=True)
        connection.close()
        return
    if not released:  # the connection was replaced during the poll; the old session took the lock with it
        log.warning("supplier_poll_lock_lost", supplier_id=supplier_id)


def feed_runs_stale_for_update(*, supplier_id: int, heartbeat_before: datetime) -> list[FeedRun]:
    """The supplier's running runs whose heartbeat stopped, locked; a run row another transaction holds is skipped.

    A run being closed right now (its last transaction is open) is alive, so it is left alone.
    """
    assert transaction.get_connection().in_atomic_block, "feed_runs_stale_for_update needs a transaction"
    return list(
        FeedRun.objects.select_for_update(skip_locked=True)
        .filter(supplier_id=supplier_id, status=FeedRun.Status.RUNNING, heartbeat_at__lt=heartbeat_before)
        .order_by("pk")
    )


@contextmanager
def supplier_feed_lock(*, supplier_id: int) -> Iterator[None]:
    """One feed of a supplier at a time (a webhook and a file import may race): the delta needs a stable snapshot."""
    key = f"supplier-feed:{supplier_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
