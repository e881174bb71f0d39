"""Fixed beat jobs of this app; the settings merge BEAT_SCHEDULE into CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import os

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Nightly, when stores are closed: rebuild every slot's forecast from the ledger.
    "forecasting-safety-recompute": {
        "task": "forecasting.safety_recompute",
        "schedule": crontab(
            minute=os.environ.get("SAFETY_RECOMPUTE_MINUTE", "15"), hour=os.environ.get("SAFETY_RECOMPUTE_HOUR", "2")
        ),
        "options": {"expires": 3 * 3600},
    },
    # Slots are hours of the week: follow the slot as it turns, and catch expired overrides in between.
    "forecasting-safety-apply": {
        "task": "forecasting.safety_apply_current_slot",
        "schedule": crontab(minute="0,15,30,45"),
        "options": {"expires": 600},
    },
}
