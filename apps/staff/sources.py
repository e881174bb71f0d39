"""Figures the dashboard borrows from channels and suppliers; a failing one blanks its panel, not the page."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from apps.channels.selectors import sync_lag_by_channel
from apps.suppliers.selectors import feed_freshness

log = structlog.get_logger("stockroom.dashboard")


def _panel(read: Callable[[], Iterable[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    try:
        return list(read())
    except Exception as err:  # a broken panel must not take the page down
        log.warning("dashboard_source_failed", source=read.__name__, error=str(err))
        return None


def channel_sync_lag() -> list[dict[str, Any]] | None:
    """Per channel: channel, name, pending, oldest_pending_seconds, last_push_at, dead; None if it failed."""
    return _panel(sync_lag_by_channel)


def supplier_feed_freshness() -> list[dict[str, Any]] | None:
    """Per supplier: supplier, name, last_success_at, age_minutes, max_age_minutes, stale, failures_in_row, breaker."""
    return _panel(feed_freshness)
