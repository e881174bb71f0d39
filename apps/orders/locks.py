"""The only place in this app that builds select_for_update querysets.

Lock order across the system: an order row first, then its stock levels
(``apps.catalog.locks.levels_for_update``, always in (item_id, location_id) order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from django.db import connection

from apps.orders.errors import OrderNotFound
from apps.orders.models import Order

log = structlog.get_logger("stockroom.orders")


def order_for_update(*, order_id: int, channel_id: int | None = None) -> Order:
    """Lock one order (of this channel, when given); a foreign or missing id is the same 404."""
    queryset = Order.objects.select_for_update(of=("self",)).filter(pk=order_id)
    if channel_id is not None:
        queryset = queryset.filter(channel_id=channel_id)
    order = queryset.first()
    if order is None:
        raise OrderNotFound()
    return order


def expired_holds_for_update(*, now, limit: int) -> list[Order]:
    """Lapsed holds, skipping those another transaction is working on (it will decide their fate)."""
    return list(
        Order.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(status=Order.Status.RESERVED, expires_at__lte=now)
        .order_by("expires_at", "id")[:limit]
    )


@contextmanager
def hold_expiry_run_lock() -> Iterator[bool]:
    """One hold-expiry run at a time across all hosts; yields whether this one may run.

    A session-level advisory lock taken outside any transaction (each batch commits on its own);
    a worker killed mid-run frees it with its session.
    """
    with _session_lock("orders-hold-expiry", channel_id=None) as acquired:
        yield acquired


def order_stream_lock(*, channel_id: int, external_id: str) -> None:
    """Serialise the events of one marketplace order for the rest of the transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", [f"order-events\x1f{channel_id}\x1f{external_id}"]
        )


@contextmanager
def platform_orders_poll_lock(*, channel_id: int) -> Iterator[bool]:
    """Hold the channel's order-poll lock for the block if nobody else does; yields whether it was taken.

    One poller per channel, wherever the workers run: a PostgreSQL session-level advisory lock on this
    thread's connection, which the server drops the moment the session ends (a worker killed mid-poll
    frees its channel at once). Commits and rollbacks inside the block keep it.
    """
    with _session_lock(f"platform-orders-poll\x1f{channel_id}", channel_id=channel_id) as acquired:
        yield acquired


@contextmanager
def platform_orders_sweep_lock(*, channel_id: int) -> Iterator[bool]:
    """One order truth sweep per channel at a time, like ``platform_orders_poll_lock`` (a key of its own,
    so that a sweep and a poll of the same channel may run together: each order has its stream lock)."""
    with _session_lock(f"platform-orders-sweep\x1f{channel_id}", channel_id=channel_id) as acquired:
        yield acquired


@contextmanager
def _session_lock(key: str, *, channel_id: int | None) -> Iterator[bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
            except Exception:
                # An unusable session (a broken connection): end it, and the server drops the lock with it.
                log.warning("platform_orders_unlock_failed", channel_id=channel_id, key=key, exc_info=True)
                connection.close()
