"""Fixed beat jobs of this app; the settings merge BEAT_SCHEDULE into CELERY_BEAT_SCHEDULE (and set the
nightly recompute's hour and minute from SAFETY_RECOMPUTE_HOUR and SAFETY_RECOMPUTE_MINUTE)."""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Nightly, when stores are closed: rebuild every slot's forecast from the ledger.
    "forecasting-safety-recompute": {
        "task": "forecasting.safety_recompute",
        "schedule": crontab(minute="15", hour="2"),
        "options": {"expires": 3 * 3600},
    },
    # Slots are hours of the week: follow the slot as it turns, and catch expired overrides in between.
    "forecasting-safety-apply": {
        "task": "forecasting.safety_apply_current_slot",
        "schedule": crontab(minute="0,15,30,45"),
        "options": {"expires": 600},
    },
}
