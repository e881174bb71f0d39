"""Weeks of trading before the first `make run`, so that the forecast has something to learn from.

The demo catalog starts with opening stock only; a forecast of nothing is a dash everywhere. This
writes a few weeks of typical trade into the ledger, once: till sales in the two stores (opening
hours, lunch and evening peaks, a busy Saturday) and online orders fulfilled from the warehouse
(reserved, then shipped). Every week's sales were delivered on the Monday of that week, so the
history sums to zero per item and location: no level changes, no channel hears of it, and the
ledger still reproduces every level. Then the forecast is computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import structlog
from django.db.models import Count, Sum
from django.utils import timezone

from apps.catalog.models import Item, Location, Movement, StockLevel
from apps.catalog.services.past_trade import PastMovement, history_import
from apps.forecasting.models import ReorderRule
from apps.forecasting.services.demand import week_start
from apps.forecasting.services.overrides import safety_current_slot_apply
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.services.reorder import reorder_points_recompute, reorder_rule_update

log = structlog.get_logger("stockroom.demo")

HISTORY_REFERENCE = "demo:history"
HISTORY_WEEKS = 6
STORES = {"S1": 1.0, "S2": 0.6}  # the second store sells a little over half as much
WAREHOUSE = "WH"
OPEN_HOURS = range(9, 20)  # tills ring from 09:00 to 19:59, Monday to Saturday
# Per item: base units per sale at a till, till sales per open day at the busier store,
# base units per online order, online orders per day (shipped from the warehouse).
TRADE = {
    "HOOD-S": (1, 1.2, 1, 1.0),
    "HOOD-M": (1, 2.0, 1, 1.5),
    "HOOD-L": (1, 1.0, 1, 0.8),
    "CAP": (1, 1.8, 1, 1.2),
    "SOCK": (2, 3.0, 3, 2.0),
    "COFFEE": (250, 10.0, 500, 3.0),
    "OIL": (750, 2.0, 750, 1.0),
}
# How the demo's suppliers pack what they sell: orders come in whole packs.
PACKS = {"COFFEE": 1000, "OIL": 5000, "SOCK": 12, "CAP": 6}


def _hour_weight(weekday: int, hour: int) -> float:
    """How busy a store is in this hour of the week, relative to an average open hour."""
    if weekday == 6 or hour not in OPEN_HOURS:
        return 0.0
    weight = 1.6 if hour in (12, 13, 17, 18) else 0.8
    return weight * (1.5 if weekday == 5 else 1.0)


def _online_weight(hour: int) -> float:
    """Online orders come at any hour, most in the evening."""
    return 0.3 if hour < 7 else (1.6 if 18 <= hour <= 22 else 1.0)


@dataclass(frozen=True)
class SeedResult:
    movements: int
    weeks: int
    seeded: bool  # False when the history was there already


def demo_history_seed(*, now: datetime | None = None, weeks: int = HISTORY_WEEKS, seed: int = 7) -> SeedResult:
    """Write the demo's past weeks of trade into the ledger, once (later calls find it and write nothing)."""
    now = now or timezone.now()
    if Movement.objects.filter(reference=HISTORY_REFERENCE).exists():
        return SeedResult(movements=0, weeks=weeks, seeded=False)
    items = dict(Item.objects.filter(sku__in=list(TRADE)).values_list("sku", "id"))
    places = dict(Location.objects.filter(code__in=[*STORES, WAREHOUSE]).values_list("code", "id"))
    rng = np.random.default_rng(seed)
    start = week_start(now) - timedelta(weeks=weeks)
    until = now - timedelta(minutes=5)  # nothing in the very last minutes: the live demo takes over
    rows: list[PastMovement] = []
    for sku, (till_units, till_per_day, online_units, online_per_day) in TRADE.items():
        if sku not in items:
            continue
        item_id = items[sku]
        for code, share in STORES.items():
            if code in places:
                sales = _hourly(rng, start, until, per_hour=till_per_day * share / len(OPEN_HOURS), online=False)
                rows += _week_by_week(
                    item_id, places[code], sales, units=till_units, kind=Movement.Kind.POS_SALE, start=start
                )
        if WAREHOUSE in places:
            orders = _hourly(rng, start, until, per_hour=online_per_day / 24, online=True)
            rows += _week_by_week(
                item_id, places[WAREHOUSE], orders, units=online_units, kind=Movement.Kind.FULFIL, start=start
            )
    written = history_import(movements=rows, reference=HISTORY_REFERENCE, actor="demo")
    log.info("demo_history_seeded", movements=written, weeks=weeks, since=start.isoformat())
    return SeedResult(movements=written, weeks=weeks, seeded=True)


def _hourly(
    rng: np.random.Generator, start: datetime, until: datetime, *, per_hour: float, online: bool
) -> list[datetime]:
    """Times of sales, hour by hour: a Poisson count per hour, each at a random minute in it."""
    times = []
    hour = start
    while hour < until:
        local = timezone.localtime(hour)
        weight = _online_weight(local.hour) if online else _hour_weight(local.weekday(), local.hour)
        for _ in range(int(rng.poisson(per_hour * weight))):
            at = hour + timedelta(seconds=float(rng.uniform(0, 3600)))
            if at < until:
                times.append(at)
        hour += timedelta(hours=1)
    return sorted(times)


def _week_by_week(
    item_id: int, location_id: int, sales: list[datetime], *, units: int, kind: str, start: datetime
) -> list[PastMovement]:
    """The sales, each week's delivered first thing on its Monday; an online order is reserved, then shipped."""
    rows: list[PastMovement] = []
    by_week: dict[datetime, list[datetime]] = {}
    for at in sales:
        by_week.setdefault(week_start(at), []).append(at)
    for monday, times in sorted(by_week.items()):
        delivered = max(monday, start)
        rows.append(PastMovement(delivered, item_id, location_id, Movement.Kind.RECEIPT, len(times) * units))
        for at in times:
            if kind == Movement.Kind.FULFIL:
                ordered = max(delivered, at - timedelta(minutes=30))
                rows.append(PastMovement(ordered, item_id, location_id, Movement.Kind.RESERVE, reserved_delta=units))
                rows.append(PastMovement(at, item_id, location_id, kind, on_hand_delta=-units, reserved_delta=-units))
            else:
                rows.append(PastMovement(at, item_id, location_id, kind, on_hand_delta=-units))
    return rows


@dataclass(frozen=True)
class StartResult:
    history: SeedResult | None
    forecasts: int
    safety_changed: int
    reorder_rules: int
    at: datetime | None = None
    safety_levels: int = 0  # levels whose safety stock the forecast sets
    safety_holding: int = 0  # of them, those holding units back this hour
    safety_units: int = 0  # units held back this hour, all levels (base units)


def demo_forecast_start(*, seed_history: bool, now: datetime | None = None) -> StartResult:
    """What `make run` does before the shop opens: the history (in demo mode), then the forecast and its points."""
    history = demo_history_seed(now=now) if seed_history else None
    forecast = forecast_recompute(now=now)
    applied = safety_current_slot_apply(at=now)
    reorder = reorder_points_recompute(now=now)
    if history is not None and history.seeded:
        _demo_packs()
    log.info(
        "demo_forecast_computed",
        forecasts=forecast.forecasts,
        methods=forecast.methods,
        safety_changed=applied.changed,
        reorder_rules=reorder.rules,
    )
    held = StockLevel.objects.filter(safety__gt=0).aggregate(levels=Count("id"), units=Sum("safety"))
    return StartResult(
        history=history,
        forecasts=forecast.forecasts,
        safety_changed=applied.changed,
        reorder_rules=reorder.rules,
        at=timezone.localtime(now or timezone.now()),
        safety_levels=applied.levels,
        safety_holding=held["levels"],
        safety_units=held["units"] or 0,
    )


def _demo_packs() -> None:
    """At the first start, bulk items and small goods get their suppliers' pack sizes (the merchant may change them)."""
    rules = ReorderRule.objects.filter(item__sku__in=list(PACKS), pack_size=1).select_related("item")
    for rule in rules:
        reorder_rule_update(rule_id=rule.pk, fields={"pack_size": PACKS[rule.item.sku]}, actor="demo")
