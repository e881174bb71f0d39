"""Fixed beat jobs of the staff app, merged into CELERY_BEAT_SCHEDULE by the settings.

Read while the settings load, so the interval comes from the environment itself.
"""

from __future__ import annotations

import os

# How often stock at or below its safety level is looked for (each item and location mailed once).
LOW_STOCK_SCAN_SECONDS = float(os.environ.get("LOW_STOCK_SCAN_SECONDS", "600"))

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "staff-low-stock-scan": {
        "task": "staff.low_stock_scan",
        "schedule": LOW_STOCK_SCAN_SECONDS,
        "options": {"expires": LOW_STOCK_SCAN_SECONDS / 2},
    },
}
