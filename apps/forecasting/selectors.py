"""Reads of this app that span models: the "To reorder" list and its CSV, and how far an override goes.

Stock figures come from the catalog's one definitions: ``levels_with_atp`` (on hand, reserved,
ATP as the availability engine counts it) and ``units_on_order`` (what open receipts still bring).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import BigIntegerField, ExpressionWrapper, F, Max, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest

from apps.catalog.models import StockLevel
from apps.catalog.selectors import levels_with_atp, units_on_order
from apps.forecasting.models import ReorderSuggestion, SafetyForecast

# The CSV a buyer takes to the supplier; docs/forecasting.md lists these columns.
REORDER_CSV_COLUMNS = (
    "sku",
    "item",
    "unit",
    "location",
    "on_hand",
    "reserved",
    "on_order",
    "reorder_point",
    "order_up_to",
    "suggested_quantity",
    "pack_size",
    "lead_time_days",
    "demand_per_day",
    "source",
)


def _levels() -> QuerySet[StockLevel]:
    """The level of the outer rule's item and location, with what is on order there and its position."""
    return (
        levels_with_atp()
        .filter(item_id=OuterRef("item_id"), location_id=OuterRef("location_id"))
        .annotate(on_order=units_on_order("item", "location"))
        .annotate(
            position=ExpressionWrapper(F("on_hand") - F("reserved") + F("on_order"), output_field=BigIntegerField())
        )
    )


def _level_figure(name: str) -> Coalesce:
    return Coalesce(Subquery(_levels().values(name)[:1], output_field=BigIntegerField()), Value(0))


def reorder_list(*, location_ids: Sequence[int] | None = None, due_only: bool = True) -> QuerySet[ReorderSuggestion]:
    """Reorder rules with their stock and what to order, the due ones only unless asked otherwise.

    - ``position`` = on hand - reserved + on order (units promised to orders are gone already);
    - due when ``position`` <= the reorder point and there is something to order;
    - ``suggested`` = what brings the position up to ``order_up_to``, at least ``min_order``,
      rounded up to whole packs.
    """
    rules = (
        ReorderSuggestion.objects.filter(item__is_active=True, location__is_active=True)
        .select_related("item", "location")
        .annotate(
            on_hand=_level_figure("on_hand"),
            reserved=_level_figure("reserved"),
            atp_now=_level_figure("atp_now"),
            on_order=units_on_order("item", "location"),
            position=_level_figure("position"),
        )
        .annotate(
            needed=Greatest(F("order_up_to") - F("position"), F("min_order"), Value(0), output_field=BigIntegerField())
        )
        .annotate(
            suggested=ExpressionWrapper(
                (F("needed") + F("pack_size") - 1) / F("pack_size") * F("pack_size"), output_field=BigIntegerField()
            )
        )
    )
    if location_ids is not None:
        rules = rules.filter(location_id__in=list(location_ids))
    if due_only:
        rules = rules.filter(position__lte=F("reorder_point"), suggested__gt=0)
    return rules.order_by("location__code", "item__sku")


def reorder_csv_rows(rules: Iterable[ReorderSuggestion]) -> Iterator[list[object]]:
    """The header, then one row per rule of ``reorder_list`` (columns: ``REORDER_CSV_COLUMNS``)."""
    yield list(REORDER_CSV_COLUMNS)
    for rule in rules:
        figures: Any = rule  # carries reorder_list's annotations
        yield [
            rule.item.sku,
            rule.item.name,
            rule.item.unit,
            rule.location.code,
            figures.on_hand,
            figures.reserved,
            figures.on_order,
            rule.reorder_point,
            rule.order_up_to,
            figures.suggested,
            rule.pack_size,
            rule.lead_time_days,
            f"{rule.demand_per_day:.2f}",
            rule.source,
        ]


# --- Safety-stock overrides far beyond demand or stock -------------------------------------

OVERRIDE_DEMAND_FACTOR = 10  # an override beyond this many times the forecast's highest safety stock...
OVERRIDE_FLOOR_UNITS = 1  # ...counted as at least this many units, so that "no demand" does not mean "any"


@dataclass(frozen=True)
class OverrideCheck:
    """Why an override value asks for a confirmation: beyond the demand and beyond what is there."""

    value: int
    on_hand: int
    forecast_highest: int | None

    @property
    def message(self) -> str:
        demand = (
            f"the forecast's highest safety stock this week ({self.forecast_highest})"
            if self.forecast_highest is not None
            else "any forecast (there is none yet)"
        )
        return (
            f"{self.value} units is more than {OVERRIDE_DEMAND_FACTOR} times {demand} and more than "
            f"the {self.on_hand} on hand: channels would show none of this item here. Tick to confirm."
        )


def override_far_beyond(*, level: StockLevel, value: int) -> OverrideCheck | None:
    """An OverrideCheck when ``value`` is far beyond both the forecast demand and the stock on hand, else None.

    Far beyond: more than ``OVERRIDE_DEMAND_FACTOR`` x the highest forecast safety stock of the
    level's week (at least ``OVERRIDE_FLOOR_UNITS``) and more than on hand.
    """
    highest = SafetyForecast.objects.filter(item_id=level.item_id, location_id=level.location_id).aggregate(
        highest=Max("value")
    )["highest"]
    demand_limit = OVERRIDE_DEMAND_FACTOR * max(OVERRIDE_FLOOR_UNITS, highest or 0)
    if value > demand_limit and value > level.on_hand:
        return OverrideCheck(value=value, on_hand=level.on_hand, forecast_highest=highest)
    return None
