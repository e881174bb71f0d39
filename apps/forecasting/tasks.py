"""Thin Celery tasks: the nightly forecast recompute (safety stock and reorder points) and the slot-by-slot apply."""

from __future__ import annotations

from celery import shared_task

from apps.forecasting.services.overrides import safety_current_slot_apply
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.services.reorder import reorder_points_recompute


@shared_task(name="forecasting.safety_recompute", acks_late=True, time_limit=3600, soft_time_limit=3300)
def safety_recompute_task() -> dict[str, object]:
    result = forecast_recompute()
    # The new forecast is worth nothing until the levels follow it.
    applied = safety_current_slot_apply()
    # Reorder points that follow the forecast move with it; those set by hand stay.
    reorder = reorder_points_recompute()
    return {
        "pairs": result.pairs,
        "forecasts": result.forecasts,
        "changed": applied.changed,
        "reorder_rules_changed": reorder.changed,
    }


@shared_task(
    name="forecasting.safety_apply_current_slot",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=3,
    time_limit=600,
    soft_time_limit=540,
)
def safety_apply_task() -> dict[str, int]:
    result = safety_current_slot_apply()
    return {"levels": result.levels, "changed": result.changed, "expired": result.expired}
