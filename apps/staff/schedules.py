"""Fixed beat jobs of the staff app, merged into CELERY_BEAT_SCHEDULE by the settings.

Read while the settings load, so the interval comes from the environment itself.
"""

from __future__ import annotations

import os

# How often stock at or below its safety level is looked for (each item and location mailed once).
LOW_STOCK_SCAN_SECONDS = float(os.environ.get("LOW_STOCK_SCAN_SECONDS", "600"))

# How often the worker logs its one-line `summary` of the business (orders, pushes, feeds, incidents); 0: never.
ACTIVITY_SUMMARY_SECONDS = float(os.environ.get("ACTIVITY_SUMMARY_SECONDS", "60"))

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "staff-low-stock-scan": {
        "task": "staff.low_stock_scan",
        "schedule": LOW_STOCK_SCAN_SECONDS,
        "options": {"expires": LOW_STOCK_SCAN_SECONDS / 2},
    },
}

if ACTIVITY_SUMMARY_SECONDS > 0:
    BEAT_SCHEDULE["staff-activity-summary"] = {
        "task": "staff.activity_summary",
        "schedule": ACTIVITY_SUMMARY_SECONDS,
        "kwargs": {"window_s": int(ACTIVITY_SUMMARY_SECONDS)},
        "options": {"expires": ACTIVITY_SUMMARY_SECONDS / 2},
    }
