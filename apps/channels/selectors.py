"""Reads of channel sync that span models: sync lag for the staff dashboard and the admin."""

from __future__ import annotations

from typing import Any

from django.db import connection

_SYNC_LAG = """
SELECT c.id, c.code, c.name,
       COUNT(w.id) FILTER (WHERE w.state = 'pending') AS pending,
       EXTRACT(EPOCH FROM (now() - MIN(w.enqueued_at) FILTER (WHERE w.state = 'pending')))::float AS oldest,
       c.last_push_at,
       COUNT(w.id) FILTER (WHERE w.state = 'dead') AS dead
  FROM channels_channel c
  LEFT JOIN channels_syncwork w ON w.channel_id = c.id
 WHERE c.is_active OR %(include_inactive)s
 GROUP BY c.id, c.code, c.name, c.last_push_at
 ORDER BY c.code
"""


def sync_lag_rows(*, include_inactive: bool = False) -> dict[int, dict[str, Any]]:
    """Per channel id: pending, oldest pending age in seconds, last push, dead letters. One query."""
    with connection.cursor() as cursor:
        cursor.execute(_SYNC_LAG, {"include_inactive": include_inactive})
        rows = cursor.fetchall()
    return {
        channel_id: {
            "channel": code,
            "name": name,
            "pending": int(pending),
            "oldest_pending_seconds": None if oldest is None else max(0.0, float(oldest)),
            "last_push_at": last_push_at,
            "dead": int(dead),
        }
        for channel_id, code, name, pending, oldest, last_push_at, dead in rows
    }


def sync_lag_by_channel() -> list[dict[str, Any]]:
    """For the staff dashboard: one dict per active channel, by code.

    Keys: channel (code), name, pending (int), oldest_pending_seconds (float | None: age of the
    oldest change not pushed yet), last_push_at (datetime | None), dead (int: dead letters).
    """
    return list(sync_lag_rows().values())
