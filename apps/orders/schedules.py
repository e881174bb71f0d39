"""Fixed beat jobs of the orders app (merged into CELERY_BEAT_SCHEDULE by the settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "orders-holds-release-expired": {
        "task": "orders.holds_release_expired",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # A platform's orders are polled every minute (a backfill behind its webhooks, or the only intake).
    "orders-platform-orders-poll": {
        "task": "orders.platform_orders_poll_all",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "orders-webhook-deliveries-prune": {
        "task": "orders.webhook_deliveries_prune",
        "schedule": crontab(hour=3, minute=40),
        "options": {"expires": 3600},
    },
}
