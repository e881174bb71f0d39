"""Fixed beat jobs of channel sync (merged into CELERY_BEAT_SCHEDULE by the settings).

The sweep pushes tier 3 batches (and tier 2 backstops, retries, anything a lost dispatch
missed) every few seconds; reconciliation reads back what channels show and repairs drift.
The settings set both intervals from SYNC_SWEEP_EVERY_S and SYNC_RECONCILE_EVERY_S.
"""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "channels-sync-sweep": {
        "task": "channels.sweep",
        "schedule": 10.0,
        "options": {"queue": "default", "expires": 30},
    },
    # Freshness states that change without a stock move reach open availability streams (docs/stream.md).
    "channels-stream-refresh": {
        "task": "channels.stream_refresh",
        "schedule": 5.0,
        "options": {"queue": "default", "expires": 5},
    },
    "channels-reconcile": {
        "task": "channels.reconcile_all",
        "schedule": 15 * 60.0,
        "options": {"queue": "default", "expires": 600},
    },
}
