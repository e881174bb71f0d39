"""Recompute the forecast safety stock of every slot, for every stocked item at every location.

Stores and warehouses are covered for the configured exposure window; a drop-ship supplier's
location for its feed's max age, the longest one feed's figure may go on selling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import structlog
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Location, StockLevel
from apps.forecasting.models import SLOTS_PER_WEEK, ForecastSettings, SafetyForecast
from apps.forecasting.services.demand import demand_history, first_seen, slot_matrix, week_start
from apps.forecasting.services.math import safety_levels, weighted_stats

log = structlog.get_logger("stockroom.forecast")

METHOD_SLOT = "slot"  # the slot's own weighted history
METHOD_ITEM_RATE = "item_rate"  # too few weeks: the pair's all-slot rate, Poisson spread
METHOD_DEFAULT = "default"  # no history at all: the configured cold-start rate
MIN_RATE_HOURS = 24  # hours of history before a pair's overall rate is trusted
ITEMS_PER_CHUNK = 200

Progress = Callable[[int, int], None]


@dataclass
class RecomputeResult:
    pairs: int = 0
    forecasts: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    computed_at: datetime | None = None


@dataclass(frozen=True)
class PairForecast:
    """Forecast rows for a set of pairs, in (item, location, slot) order."""

    index: pd.MultiIndex
    value: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    method: np.ndarray
    weeks: np.ndarray
    window_hours: np.ndarray
    online: np.ndarray  # online fulfilments per hour, weighted as ``mean`` (reorder points count them)


def forecast_pairs(
    *,
    pairs: Sequence[tuple[int, int]],
    bounds: dict[int, tuple[int, int | None]],
    settings: ForecastSettings,
    now: datetime,
    service_level: float | None = None,
    history: pd.DataFrame | None = None,
    seen: dict[tuple[int, int], datetime] | None = None,
    windows: dict[tuple[int, int], float] | None = None,
) -> PairForecast:
    """Forecast every slot of these pairs as of ``now`` (only weeks that ended before ``now`` count).

    ``windows`` gives a pair its own exposure window in hours; the others use the settings' one.
    """
    level = float(settings.service_level) if service_level is None else service_level
    this_week = week_start(now)
    n_weeks = int(settings.history_weeks)
    weeks = [this_week - timedelta(weeks=k) for k in range(n_weeks, 0, -1)]
    since = weeks[0]
    item_ids = sorted({item for item, _ in pairs})
    location_ids = sorted({loc for _, loc in pairs})
    if history is None:
        history = demand_history(since=since, until=now, item_ids=item_ids, location_ids=location_ids)
    else:
        history = history[(history["week"] >= pd.Timestamp(since)) & (history["week"] < pd.Timestamp(now))]
    if seen is None:
        seen = first_seen(item_ids=item_ids, location_ids=location_ids)
    matrix = slot_matrix(history, pairs=pairs, weeks=weeks, seen=seen)
    stats = weighted_stats(matrix.demand, matrix.observed, float(settings.half_life_weeks))
    online_matrix = slot_matrix(history, pairs=pairs, weeks=weeks, seen=seen, column="online")
    online_stats = weighted_stats(online_matrix.demand, online_matrix.observed, float(settings.half_life_weeks))

    # Cold start: the pair's overall rate per hour, over the hours it has existed in the window.
    totals = (
        history[history["week"] < pd.Timestamp(now)].groupby(["item_id", "location_id"])[["offline", "online"]].sum()
        if not history.empty
        else pd.DataFrame(columns=["offline", "online"], dtype="float64")
    )
    rate = np.zeros(len(pairs))
    online_rate = np.zeros(len(pairs))
    hours = np.zeros(len(pairs))
    for i, pair in enumerate(pairs):
        start = max(since, seen[pair]) if pair in seen else now
        hours[i] = max(0.0, (now - start).total_seconds() / 3600)
        if hours[i] >= MIN_RATE_HOURS and pair in totals.index:
            rate[i] = float(totals.at[pair, "offline"]) / hours[i]
            online_rate[i] = float(totals.at[pair, "online"]) / hours[i]
    rate_rows = np.repeat(rate, SLOTS_PER_WEEK)
    hours_rows = np.repeat(hours, SLOTS_PER_WEEK)

    use_slot = stats.weeks >= int(settings.min_slot_weeks)
    use_rate = ~use_slot & (hours_rows >= MIN_RATE_HOURS)
    default_rate = float(settings.cold_start_rate_per_hour)
    mean = np.where(use_slot, stats.mean, np.where(use_rate, rate_rows, default_rate))
    online = np.where(use_slot, online_stats.mean, np.where(use_rate, np.repeat(online_rate, SLOTS_PER_WEEK), 0.0))
    # Poisson spread (variance = mean) where the slot's own spread is not known yet.
    var = np.where(use_slot, stats.var, mean)
    method = np.where(use_slot, METHOD_SLOT, np.where(use_rate, METHOD_ITEM_RATE, METHOD_DEFAULT))

    lows = np.repeat([bounds[item][0] for item, _ in pairs], SLOTS_PER_WEEK).astype(np.float64)
    highs = np.repeat(
        [np.nan if bounds[item][1] is None else bounds[item][1] for item, _ in pairs], SLOTS_PER_WEEK
    ).astype(np.float64)
    window = np.repeat([(windows or {}).get(pair, settings.window_hours) for pair in pairs], SLOTS_PER_WEEK)
    value = safety_levels(
        mean_per_hour=mean,
        var_per_hour=var,
        window_hours=window,
        service_level=level,
        safety_min=lows,
        safety_max=highs,
    )
    return PairForecast(
        index=matrix.index,
        value=value,
        mean=mean,
        std=np.sqrt(var),
        method=method,
        weeks=stats.weeks,
        window_hours=window.astype(np.float64),
        online=online,
    )


def forecast_scope(item_ids: Sequence[int] | None = None) -> list[tuple[int, int, int, int | None, int | None]]:
    """(item_id, location_id, safety_min, safety_max, max_age_minutes) of every level a forecast is kept for.

    ``max_age_minutes`` is the owning supplier's at a drop-ship location and None elsewhere; a
    supplier location that no supplier owns has no feed to learn from and is left out.
    """
    levels = StockLevel.objects.filter(item__is_active=True, location__is_active=True).exclude(
        location__kind=Location.Kind.SUPPLIER, location__supplier__isnull=True
    )
    if item_ids is not None:
        levels = levels.filter(item_id__in=list(item_ids))
    return list(
        levels.order_by("item_id", "location_id").values_list(
            "item_id", "location_id", "item__safety_min", "item__safety_max", "location__supplier__max_age_minutes"
        )
    )


def forecast_recompute(
    *, now: datetime | None = None, item_ids: Sequence[int] | None = None, progress: Progress | None = None
) -> RecomputeResult:
    """Recompute and store the forecast of every slot; a full run also drops forecasts of pairs out of scope."""
    now = now or timezone.now()
    settings = ForecastSettings.current()
    scope = forecast_scope(item_ids)
    result = RecomputeResult(pairs=len(scope), computed_at=now)
    items = sorted({row[0] for row in scope})
    done = 0
    if progress:
        progress(0, len(scope))
    for start in range(0, len(items), ITEMS_PER_CHUNK):
        chunk_items = set(items[start : start + ITEMS_PER_CHUNK])
        rows = [row for row in scope if row[0] in chunk_items]
        pairs = [(item, loc) for item, loc, _, _, _ in rows]
        bounds = {item: (low, high) for item, _, low, high, _ in rows}
        windows = {(item, loc): age / 60 for item, loc, _, _, age in rows if age is not None}
        forecast = forecast_pairs(pairs=pairs, bounds=bounds, settings=settings, now=now, windows=windows)
        _store(forecast, settings=settings, now=now)
        result.forecasts += len(forecast.value)
        for name, count in zip(*np.unique(forecast.method, return_counts=True), strict=True):
            result.methods[str(name)] = result.methods.get(str(name), 0) + int(count)
        done += len(pairs)
        if progress:
            progress(done, len(scope))
    if item_ids is None:
        SafetyForecast.objects.filter(computed_at__lt=now).delete()
    log.info("forecast_recomputed", pairs=result.pairs, forecasts=result.forecasts, methods=result.methods)
    return result


def _store(forecast: PairForecast, *, settings: ForecastSettings, now: datetime) -> None:
    common = {
        "service_level": float(settings.service_level),
        "half_life_weeks": float(settings.half_life_weeks),
        "history_weeks": int(settings.history_weeks),
    }
    objs = [
        SafetyForecast(
            item_id=item,
            location_id=loc,
            slot=slot,
            value=int(value),
            mean_per_hour=round(float(mean), 6),
            std_per_hour=round(float(std), 6),
            online_per_hour=round(float(online), 6),
            inputs={**common, "window_seconds": round(window * 3600), "method": str(method), "weeks": int(weeks)},
            computed_at=now,
        )
        for (item, loc, slot), value, mean, std, online, method, weeks, window in zip(
            forecast.index,
            forecast.value,
            forecast.mean,
            forecast.std,
            forecast.online,
            forecast.method,
            forecast.weeks,
            forecast.window_hours,
            strict=True,
        )
    ]
    with transaction.atomic():
        SafetyForecast.objects.bulk_create(
            objs,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["item", "location", "slot"],
            update_fields=["value", "mean_per_hour", "std_per_hour", "online_per_hour", "inputs", "computed_at"],
        )
