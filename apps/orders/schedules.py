"""Fixed beat jobs of the orders app (merged into CELERY_BEAT_SCHEDULE by the settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Every HOLD_EXPIRY_EVERY_S (15 s by default; the settings module applies it): one run at a time.
    "orders-holds-release-expired": {
        "task": "orders.holds_release_expired",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    # A platform's orders are polled every minute (a backfill behind its webhooks, or the only intake).
    "orders-platform-orders-poll": {
        "task": "orders.platform_orders_poll_all",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Open platform orders the platform has not shown for a while are re-read (the interval is the
    # setting ORDERS_SWEEP_EVERY_S, applied by the settings module).
    "orders-platform-orders-sweep": {
        "task": "orders.platform_orders_sweep_all",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    "orders-platform-order-tombstones-prune": {
        "task": "orders.platform_order_tombstones_prune",
        "schedule": crontab(hour=3, minute=50),
        "options": {"expires": 3600},
    },
    "orders-webhook-deliveries-prune": {
        "task": "orders.webhook_deliveries_prune",
        "schedule": crontab(hour=3, minute=40),
        "options": {"expires": 3600},
    },
}
