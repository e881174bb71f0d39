"""Reads of this app that span models: the "To reorder" list, its plan (transfers first, then
purchases) and CSV, and how far an override goes.

Stock figures come from the catalog's one definitions: ``levels_with_atp`` (on hand, reserved,
ATP as the availability engine counts it) and ``units_on_order`` (what open receipts still bring);
transfers on their way (drafted or in transit) count as on order too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import BigIntegerField, ExpressionWrapper, F, Max, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce, Greatest

from apps.catalog.models import Location, StockLevel, Transfer, TransferLine
from apps.catalog.selectors import levels_with_atp, units_on_order
from apps.forecasting.models import ReorderRule, ReorderSuggestion, SafetyForecast
from apps.suppliers.models import Supplier, SupplierProduct

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
    # Added with the plan: transfers from spare stock first, then what to buy and from whom.
    "transfer_from",
    "transfer_quantity",
    "purchase_quantity",
    "supplier",
    "supplier_lead_time_days",
)

# Transfers still bringing goods to a location: drafted (not shipped yet) or on the road.
TRANSFERS_ON_THE_WAY = (Transfer.Status.DRAFT, Transfer.Status.IN_TRANSIT)


def units_coming_by_transfer(item: str = "item", location: str = "location") -> Coalesce:
    """Units on drafted or in-transit transfers to a location (not yet received), as a subquery."""
    per_pair = (
        TransferLine.objects.filter(
            item_id=OuterRef(item),
            transfer__destination_id=OuterRef(location),
            transfer__status__in=list(TRANSFERS_ON_THE_WAY),
        )
        .order_by()
        .values("item_id")
        .annotate(units=Cast(Sum(F("quantity") - F("received")), BigIntegerField()))
        .values("units")
    )
    return Coalesce(Subquery(per_pair, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField())


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

    - ``position`` = on hand - reserved + on order + coming by transfer (units promised to orders
      are gone already; a drafted transfer counts from the moment it is drafted);
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
            coming=units_coming_by_transfer("item", "location"),
        )
        .annotate(position=ExpressionWrapper(_level_figure("position") + F("coming"), output_field=BigIntegerField()))
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


@dataclass(frozen=True)
class TransferSuggestion:
    """Units of spare stock to send from ``source``."""

    source: Location
    quantity: int


@dataclass
class ReorderPlan:
    """How one due rule is covered: transfers from spare stock first, then a purchase for the rest."""

    rule_id: int
    shortfall: int  # what brings the position up to order-up-to
    transfers: list[TransferSuggestion] = field(default_factory=list)
    purchase: int = 0  # the rest, in whole packs and at least the minimum order
    supplier: Supplier | None = None
    lead_time_days: int = 0  # the supplier's for this item, else the rule's

    @property
    def transfer_quantity(self) -> int:
        return sum(suggestion.quantity for suggestion in self.transfers)

    @property
    def transfer_from(self) -> str:
        return " ".join(f"{suggestion.source.code}:{suggestion.quantity}" for suggestion in self.transfers)


def spare_stock(item_ids: Sequence[int]) -> dict[tuple[int, int], tuple[Location, int]]:
    """Stock a store or warehouse can give away, per (item_id, location_id): (location, units).

    Spare is what is on hand and not reserved beyond the location's own reorder point (its safety
    stock where it has no rule), less what drafted transfers will take out, keeping the location
    above its point, so that giving never makes the giver due (and nothing is sent back and forth).
    """
    levels = list(
        StockLevel.objects.filter(
            item_id__in=list(item_ids),
            location__is_active=True,
            location__kind__in=[Location.Kind.STORE, Location.Kind.WAREHOUSE],
        ).select_related("location")
    )
    points = dict(
        ((item_id, location_id), point)
        for item_id, location_id, point in ReorderRule.objects.filter(item_id__in=list(item_ids)).values_list(
            "item_id", "location_id", "reorder_point"
        )
    )
    leaving = {
        (row["item_id"], row["transfer__source_id"]): int(row["units"] or 0)
        for row in TransferLine.objects.filter(item_id__in=list(item_ids), transfer__status=Transfer.Status.DRAFT)
        .order_by()
        .values("item_id", "transfer__source_id")
        .annotate(units=Sum("quantity"))
    }
    spare: dict[tuple[int, int], tuple[Location, int]] = {}
    for level in levels:
        pair = (level.item_id, level.location_id)
        keep = points.get(pair, level.safety) + 1
        units = level.on_hand - level.reserved - leaving.get(pair, 0) - keep
        if units > 0:
            spare[pair] = (level.location, units)
    return spare


def preferred_suppliers(item_ids: Sequence[int]) -> dict[int, tuple[Supplier, int]]:
    """The supplier to buy each item from (active mapping, active supplier, by priority) and its lead time."""
    mappings = (
        SupplierProduct.objects.filter(
            item_id__in=list(item_ids), status=SupplierProduct.Status.ACTIVE, supplier__is_active=True
        )
        .select_related("supplier")
        .order_by("supplier__priority", "supplier__code", "id")
    )
    chosen: dict[int, tuple[Supplier, int]] = {}
    for mapping in mappings:
        if mapping.item_id is not None and mapping.item_id not in chosen:
            chosen[mapping.item_id] = (mapping.supplier, mapping.lead_time_days)
    return chosen


def reorder_plan(rules: Iterable[ReorderSuggestion]) -> dict[int, ReorderPlan]:
    """For each rule of ``reorder_list`` (due ones), transfers from spare stock first, then what to buy.

    The most urgent rows (furthest below their reorder point) are served first, each from the
    locations with the most spare stock; spare stock is shared out once across the whole list. What
    transfers do not cover is bought: rounded up to whole packs, at least the minimum order, from
    the item's preferred supplier (``preferred_suppliers``).
    """
    due: list[Any] = list(rules)  # carrying reorder_list's annotations
    items = sorted({rule.item_id for rule in due})
    spare = spare_stock(items)
    suppliers = preferred_suppliers(items)
    by_item: dict[int, list[tuple[int, int]]] = {}
    for item_id, location_id in spare:
        by_item.setdefault(item_id, []).append((item_id, location_id))
    plans: dict[int, ReorderPlan] = {}
    urgent_first = sorted(due, key=lambda r: (r.position - r.reorder_point, r.location.code, r.item.sku))
    for rule in urgent_first:
        shortfall = max(0, int(rule.order_up_to) - int(rule.position))
        plan = ReorderPlan(rule_id=rule.pk, shortfall=shortfall)
        rest = shortfall
        givers = [pair for pair in by_item.get(rule.item_id, []) if pair[1] != rule.location_id]
        givers.sort(key=lambda pair: (-spare[pair][1], spare[pair][0].code))
        for pair in givers:
            if rest <= 0:
                break
            place, units = spare[pair]
            if units <= 0:
                continue
            taken = min(units, rest)
            plan.transfers.append(TransferSuggestion(source=place, quantity=taken))
            spare[pair] = (place, units - taken)
            rest -= taken
        if rest > 0 or not shortfall:
            # Nothing to fill up to (a minimum order alone made the row due): the suggestion is bought.
            wanted = rest if shortfall else int(rule.suggested)
            packs = math.ceil(max(wanted, rule.min_order) / rule.pack_size)
            plan.purchase = packs * rule.pack_size
        supplier = suppliers.get(rule.item_id)
        if supplier is not None:
            plan.supplier = supplier[0]
        plan.lead_time_days = (supplier[1] if supplier and supplier[1] else None) or rule.lead_time_days
        plans[rule.pk] = plan
    return plans


def reorder_csv_rows(
    rules: Iterable[ReorderSuggestion], plans: dict[int, ReorderPlan] | None = None
) -> Iterator[list[object]]:
    """The header, then one row per rule of ``reorder_list`` (columns: ``REORDER_CSV_COLUMNS``).

    ``plans`` by rule id (``reorder_plan`` of the whole list, so that spare stock is shared as the
    page shows it); by default the plan of these rules alone.
    """
    yield list(REORDER_CSV_COLUMNS)
    rules = list(rules)
    plans = reorder_plan(rules) if plans is None else plans
    for rule in rules:
        figures: Any = rule  # carries reorder_list's annotations
        plan = plans.get(rule.pk) or ReorderPlan(rule_id=rule.pk, shortfall=0)
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
            plan.transfer_from,
            plan.transfer_quantity,
            plan.purchase,
            plan.supplier.name if plan.supplier else "",
            plan.lead_time_days,
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
