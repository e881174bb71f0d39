"""Fixed beat jobs of the catalog, merged into CELERY_BEAT_SCHEDULE by the settings."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    "ledger-reconcile-nightly": {
        "task": "catalog.ledger_reconcile",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 6 * 60 * 60},
    },
}
