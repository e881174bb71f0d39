"""Fixed beat jobs of the suppliers app (per-supplier polling is created from each supplier record)."""

from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "suppliers-mapping-validation": {
        "task": "suppliers.mappings_validate",
        "schedule": 30 * 60.0,
        "options": {"expires": 25 * 60},
    },
    "suppliers-staleness": {
        "task": "suppliers.suppliers_staleness",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "suppliers-abandoned-runs": {
        "task": "suppliers.feed_runs_abandon",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}
