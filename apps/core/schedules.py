"""Fixed beat jobs of the core app, merged into CELERY_BEAT_SCHEDULE by the settings."""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "core-planner-statistics": {
        "task": "core.planner_statistics_refresh",
        "schedule": 60 * 60.0,
        "options": {"expires": 55 * 60},
    },
}
