"""Fixed beat jobs of the orders app (merged into CELERY_BEAT_SCHEDULE by the settings)."""

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "orders-holds-release-expired": {
        "task": "orders.holds_release_expired",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}
