"""Fixed beat jobs of the staff app, merged into CELERY_BEAT_SCHEDULE by the settings.

The settings set the scan's interval from LOW_STOCK_SCAN_SECONDS and the summary's from ACTIVITY_SUMMARY_SECONDS.
"""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # How often stock at or below its safety level is looked for (each item and location mailed once).
    "staff-low-stock-scan": {
        "task": "staff.low_stock_scan",
        "schedule": 600.0,
        "options": {"expires": 300.0},
    },
    # The worker's one-line `summary` of the business (orders, pushes, feeds, incidents); the
    # settings set its interval (ACTIVITY_SUMMARY_SECONDS) or drop it (0).
    "staff-activity-summary": {
        "task": "staff.activity_summary",
        "schedule": 60.0,
        "kwargs": {"window_s": 60},
        "options": {"expires": 30.0},
    },
}
