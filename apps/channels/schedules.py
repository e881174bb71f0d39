"""Fixed beat jobs of channel sync (merged into CELERY_BEAT_SCHEDULE by the settings).

The sweep pushes tier 3 batches (and tier 2 backstops, retries, anything a lost dispatch
missed) every few seconds; reconciliation reads back what channels show and repairs drift.
"""

from __future__ import annotations

import os

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "channels-sync-sweep": {
        "task": "channels.sweep",
        "schedule": float(os.environ.get("SYNC_SWEEP_EVERY_S", "10")),
        "options": {"queue": "default", "expires": 30},
    },
    "channels-reconcile": {
        "task": "channels.reconcile_all",
        "schedule": float(os.environ.get("SYNC_RECONCILE_EVERY_S", str(15 * 60))),
        "options": {"queue": "default", "expires": 600},
    },
}
