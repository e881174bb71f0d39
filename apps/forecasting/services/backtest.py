"""Backtest: replay recent weeks as if the forecast had been in force, at several service levels.

For each replayed week the forecast is made only from the weeks before it (no peeking). Time is
cut into exposure windows (sync latency + reaction time); in each, the offline units sold are
compared with the safety stock of that window's slot:
- sold more than the safety stock: a breach. Channels may still have been selling units that had
  gone over the counter, an oversell risk; the units beyond the safety stock are counted too;
- the safety stock itself is what channels were not shown: units hidden, a possible lost sale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.utils import timezone

from apps.catalog.models import Item, Location
from apps.forecasting.models import ForecastSettings
from apps.forecasting.services.demand import OFFLINE_KINDS, demand_buckets, demand_history, first_seen, week_start
from apps.forecasting.services.recompute import forecast_pairs

SERVICE_LEVELS = (0.80, 0.90, 0.95, 0.98, 0.99)


@dataclass(frozen=True)
class LevelOutcome:
    service_level: float
    windows: int
    breaches: int
    breached_units: int
    hidden_unit_hours: float  # units held back, integrated over time
    mean_hidden: float  # units held back on average

    @property
    def breach_rate(self) -> float:
        return self.breaches / self.windows if self.windows else 0.0

    @property
    def breach_percent(self) -> float:
        return 100 * self.breach_rate

    @property
    def label(self) -> str:
        return (
            f"{self.service_level:.0%}"
            if round(self.service_level, 2) == self.service_level
            else f"{self.service_level:.1%}"
        )


@dataclass
class BacktestResult:
    item: Item
    location: Location
    weeks: int
    window_seconds: int
    chosen_level: float
    outcomes: list[LevelOutcome] = field(default_factory=list)
    # Daily replay at the chosen level: day -> peak window demand, highest safety, breaches.
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)
    units_sold: int = 0

    @property
    def chosen(self) -> LevelOutcome | None:
        return next((o for o in self.outcomes if abs(o.service_level - self.chosen_level) < 1e-9), None)


def item_backtest(
    *,
    item: Item,
    location: Location,
    weeks: int = 8,
    now: datetime | None = None,
    service_levels: tuple[float, ...] = SERVICE_LEVELS,
) -> BacktestResult:
    now = now or timezone.now()
    settings = ForecastSettings.current()
    chosen = float(settings.service_level)
    levels = tuple(sorted({*service_levels, chosen}))
    this_week = week_start(now)
    test_weeks = [this_week - timedelta(weeks=k) for k in range(weeks, 0, -1)]
    history_since = test_weeks[0] - timedelta(weeks=int(settings.history_weeks))
    pair = (item.pk, location.pk)
    history = demand_history(since=history_since, until=this_week, item_ids=[item.pk], location_ids=[location.pk])
    seen = first_seen(item_ids=[item.pk], location_ids=[location.pk])
    result = BacktestResult(
        item=item, location=location, weeks=weeks, window_seconds=settings.window_seconds, chosen_level=chosen
    )
    width = settings.window_seconds
    buckets = demand_buckets(
        item_id=item.pk,
        location_id=location.pk,
        since=test_weeks[0],
        until=this_week,
        width_seconds=width,
        kinds=OFFLINE_KINDS,
    )
    buckets = buckets[(buckets.index >= pd.Timestamp(test_weeks[0])) & (buckets.index < pd.Timestamp(this_week))]
    result.units_sold = int(buckets.sum())
    if buckets.empty:
        return result
    local = buckets.index.tz_convert(timezone.get_current_timezone_name())
    slots = np.asarray(local.day_of_week * 24 + local.hour)
    week_of = np.asarray(((buckets.index - pd.Timestamp(test_weeks[0])) // pd.Timedelta(weeks=1)).astype(int))
    # Before the pair existed there was nothing to protect; those windows do not count.
    alive = np.ones(len(buckets), dtype=bool)
    if pair in seen:
        alive = np.asarray(buckets.index >= pd.Timestamp(seen[pair]))
    demand = buckets.to_numpy()
    bounds = {item.pk: (item.safety_min, item.safety_max)}
    hours = width / 3600
    daily_frames = None
    for level in levels:
        safety = np.zeros(len(buckets), dtype=np.int64)
        for w, start in enumerate(test_weeks):
            forecast = forecast_pairs(
                pairs=[pair],
                bounds=bounds,
                settings=settings,
                now=start,
                service_level=level,
                history=history,
                seen=seen,
            )
            in_week = week_of == w
            safety[in_week] = forecast.value[slots[in_week]]
        counted = alive
        breach = (demand > safety) & counted
        outcome = LevelOutcome(
            service_level=level,
            windows=int(counted.sum()),
            breaches=int(breach.sum()),
            breached_units=int((demand - safety)[breach].sum()),
            hidden_unit_hours=float(safety[counted].sum() * hours),
            mean_hidden=float(safety[counted].mean()) if counted.any() else 0.0,
        )
        result.outcomes.append(outcome)
        if abs(level - chosen) < 1e-9:
            frame = pd.DataFrame(
                {"demand": demand, "safety": safety, "breach": breach.astype(int)},
                index=local,
            )[counted]
            daily_frames = frame.resample("1D").agg({"demand": "max", "safety": "max", "breach": "sum"})
    if daily_frames is not None:
        result.daily = daily_frames.fillna(0)
    return result
