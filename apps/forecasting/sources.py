"""Figures the dashboard borrows from other apps, through a seam that tolerates their absence.

Channel sync and supplier feeds publish selectors (``sync_lag_by_channel``, ``feed_freshness``);
until they exist, or if one fails, the dashboard says "no data yet" instead of breaking.
"""

from __future__ import annotations

import importlib
from typing import Any

import structlog

log = structlog.get_logger("stockroom.dashboard")


def _call(module: str, name: str) -> list[dict[str, Any]] | None:
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    try:
        return list(function())
    except Exception as err:  # a broken panel must not take the page down
        log.warning("dashboard_source_failed", source=f"{module}.{name}", error=str(err))
        return None


def channel_sync_lag() -> list[dict[str, Any]] | None:
    """Per channel: channel, name, pending, oldest_pending_seconds, last_push_at, dead; None if unavailable."""
    return _call("apps.channels.selectors", "sync_lag_by_channel")


def supplier_feed_freshness() -> list[dict[str, Any]] | None:
    """Per supplier: supplier, name, last_success_at, age_minutes, max_age_minutes, stale, failures_in_row, breaker."""
    return _call("apps.suppliers.selectors", "feed_freshness")
