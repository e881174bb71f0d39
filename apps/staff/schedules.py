"""Fixed beat jobs of the staff app, merged into CELERY_BEAT_SCHEDULE by the settings.

The settings set the scan's interval from LOW_STOCK_SCAN_SECONDS.
"""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # How often stock at or below its safety level is looked for (each item and location mailed once).
    "staff-low-stock-scan": {
        "task": "staff.low_stock_scan",
        "schedule": 600.0,
        "options": {"expires": 300.0},
    },
}
