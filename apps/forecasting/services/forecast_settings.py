"""The forecast's knobs: one row that a merchant changes; the safety stock follows at once."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import structlog
from django.db import transaction

from apps.forecasting.models import ForecastSettings

log = structlog.get_logger("stockroom.safety")


@transaction.atomic
def forecast_settings_update(*, fields: Mapping[str, Any], actor: str) -> ForecastSettings:
    """Change the knobs; a change recomputes the forecast and applies it after commit, not at the next night."""
    from apps.forecasting.tasks import safety_recompute_task  # tasks call services: imported at use

    current = ForecastSettings.current()
    changed = sorted(name for name, value in fields.items() if getattr(current, name) != value)
    for name in changed:
        setattr(current, name, fields[name])
    if changed:
        current.full_clean()
        current.save(update_fields=changed)
        transaction.on_commit(partial(safety_recompute_task.delay))
    log.info("forecast_settings_updated", fields=changed, actor=actor)
    return current
