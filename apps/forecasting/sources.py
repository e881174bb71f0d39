"""Figures the dashboard borrows from other apps: channel sync lag and supplier feed freshness.

A panel whose source fails says "no data yet" instead of taking the page down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from apps.channels.selectors import sync_lag_by_channel
from apps.suppliers.selectors import feed_freshness

log = structlog.get_logger("stockroom.dashboard")


def _call(function: Callable[[], Iterable[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    try:
        return list(function())
    except Exception as err:  # a broken panel must not take the page down
        log.warning("dashboard_source_failed", source=f"{function.__module__}.{function.__name__}", error=str(err))
        return None


def channel_sync_lag() -> list[dict[str, Any]] | None:
    """Per channel: channel, name, pending, oldest_pending_seconds, last_push_at, dead; None if unavailable."""
    return _call(sync_lag_by_channel)


def supplier_feed_freshness() -> list[dict[str, Any]] | None:
    """Per supplier: supplier, name, last_success_at, age_minutes, max_age_minutes, stale, failures_in_row, breaker."""
    return _call(feed_freshness)
