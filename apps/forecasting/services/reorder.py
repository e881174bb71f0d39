"""Reorder points per item and location, from the forecast or set by hand.

A rule that follows the forecast is recomputed with it (the nightly job, ``recompute_safety``,
a change of the forecast's knobs, or a change of the rule itself):

    reorder point = ceil(demand per day x lead time days) + safety
    order up to   = max(reorder point, ceil(demand per day x (lead time + cover) days) + safety)

``demand per day`` is the forecast's own weighted demand (offline sales and online fulfilments per
hour, summed over the 168 hour-of-week slots, divided by 7); ``safety`` is the staff override
while one is valid, else the highest forecast safety stock of the week, the most the level ever
holds back. A rule set by hand keeps its points. What is due and how much to order is read by
``apps.forecasting.selectors.reorder_list``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q, Sum
from django.utils import timezone

from apps.catalog.models import Item, Location, StockLevel, Transfer
from apps.catalog.services.transfers import TransferLineSpec, transfer_create
from apps.forecasting.errors import InvalidReorderRule
from apps.forecasting.locks import reorder_rule_for_update, reorder_rules_for_update
from apps.forecasting.models import SLOTS_PER_WEEK, ReorderRule, SafetyForecast, SafetyOverride
from apps.forecasting.selectors import reorder_list, reorder_plan
from apps.suppliers.models import PurchaseOrder, Supplier
from apps.suppliers.services.purchase_orders import PurchaseLine, purchase_order_place

log = structlog.get_logger("stockroom.reorder")

# Drop-ship stock is the supplier's to replenish: reorder points are kept for stores and warehouses.
REORDER_KINDS = (Location.Kind.STORE, Location.Kind.WAREHOUSE)
ITEMS_PER_CHUNK = 500
EDITABLE = ("source", "lead_time_days", "cover_days", "reorder_point", "order_up_to", "pack_size", "min_order")
POINTS = ("reorder_point", "order_up_to")


@dataclass(frozen=True)
class ForecastFigures:
    demand_per_day: float
    safety: int


NO_FORECAST = ForecastFigures(demand_per_day=0.0, safety=0)


def reorder_points(*, demand_per_day: float, safety: int, lead_time_days: int, cover_days: int) -> tuple[int, int]:
    """(reorder point, order up to) of a forecast rule; see the module docstring."""
    # A tiny tolerance so that 14.0000000001 units of float noise do not become 15.
    during_lead = math.ceil(max(0.0, demand_per_day) * lead_time_days - 1e-9)
    through_cover = math.ceil(max(0.0, demand_per_day) * (lead_time_days + cover_days) - 1e-9)
    point = during_lead + safety
    return point, max(point, through_cover + safety)


def forecast_figures(
    *, item_ids: Sequence[int], location_ids: Sequence[int] | None = None, at: datetime | None = None
) -> dict[tuple[int, int], ForecastFigures]:
    """Demand per day and the safety stock to count, per (item_id, location_id) with a forecast or an override."""
    at = at or timezone.now()
    forecasts = SafetyForecast.objects.filter(item_id__in=list(item_ids))
    overrides = SafetyOverride.objects.filter(item_id__in=list(item_ids)).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=at)
    )
    if location_ids is not None:
        forecasts = forecasts.filter(location_id__in=list(location_ids))
        overrides = overrides.filter(location_id__in=list(location_ids))
    rows = (
        forecasts.order_by()
        .values("item_id", "location_id")
        .annotate(weekly=Sum(F("mean_per_hour") + F("online_per_hour")), highest=Max("value"))
    )
    figures = {
        (row["item_id"], row["location_id"]): ForecastFigures(
            demand_per_day=float(row["weekly"] or 0.0) * 24 / SLOTS_PER_WEEK, safety=int(row["highest"] or 0)
        )
        for row in rows
    }
    for item_id, location_id, value in overrides.values_list("item_id", "location_id", "value"):
        known = figures.get((item_id, location_id), NO_FORECAST)
        figures[(item_id, location_id)] = ForecastFigures(demand_per_day=known.demand_per_day, safety=value)
    return figures


def reorder_scope(item_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(item_id, location_id) of every active item stocked at an active store or warehouse."""
    levels = StockLevel.objects.filter(item__is_active=True, location__is_active=True, location__kind__in=REORDER_KINDS)
    if item_ids is not None:
        levels = levels.filter(item_id__in=list(item_ids))
    return list(levels.order_by("item_id", "location_id").values_list("item_id", "location_id"))


def _follow(rule: ReorderRule, figures: ForecastFigures, now: datetime) -> bool:
    """Set a forecast rule's points from these figures; True when anything the merchant sees changed."""
    point, up_to = reorder_points(
        demand_per_day=figures.demand_per_day,
        safety=figures.safety,
        lead_time_days=rule.lead_time_days,
        cover_days=rule.cover_days,
    )
    before = (rule.reorder_point, rule.order_up_to, rule.safety, round(rule.demand_per_day, 4))
    rule.reorder_point, rule.order_up_to, rule.safety = point, up_to, figures.safety
    rule.demand_per_day = round(figures.demand_per_day, 4)
    rule.computed_at = now
    return before != (point, up_to, figures.safety, rule.demand_per_day)


@dataclass
class ReorderResult:
    rules: int = 0
    created: int = 0
    changed: int = 0


def reorder_points_recompute(*, item_ids: Sequence[int] | None = None, now: datetime | None = None) -> ReorderResult:
    """Give every stocked item at a store or warehouse a rule, and move the forecast rules' points with the forecast.

    Rules set by hand are left as they are. Run after the forecast is recomputed.
    """
    now = now or timezone.now()
    scope = reorder_scope(item_ids)
    result = ReorderResult()
    items = sorted({item for item, _ in scope})
    for start in range(0, len(items), ITEMS_PER_CHUNK):
        chunk = items[start : start + ITEMS_PER_CHUNK]
        in_chunk = set(chunk)
        pairs = [pair for pair in scope if pair[0] in in_chunk]
        figures = forecast_figures(item_ids=chunk, at=now)
        with transaction.atomic():
            known = set(ReorderRule.objects.filter(item_id__in=chunk).values_list("item_id", "location_id"))
            fresh = []
            for item_id, location_id in pairs:
                if (item_id, location_id) not in known:
                    rule = ReorderRule(item_id=item_id, location_id=location_id, source=ReorderRule.Source.FORECAST)
                    _follow(rule, figures.get((item_id, location_id), NO_FORECAST), now)
                    fresh.append(rule)
            # A rule made meanwhile by the merchant wins; it is theirs.
            created = ReorderRule.objects.bulk_create(fresh, ignore_conflicts=True)
            result.created += len(created)
            rules = reorder_rules_for_update(item_ids=chunk, source=ReorderRule.Source.FORECAST)
            for rule in rules:
                if _follow(rule, figures.get((rule.item_id, rule.location_id), NO_FORECAST), now):
                    rule.updated_at = now
                    result.changed += 1
            ReorderRule.objects.bulk_update(
                rules,
                ["reorder_point", "order_up_to", "safety", "demand_per_day", "computed_at", "updated_at"],
                batch_size=1000,
            )
            result.rules += len(rules)
    log.info("reorder_points_recomputed", rules=result.rules, created=result.created, changed=result.changed)
    return result


def _settle(rule: ReorderRule, *, now: datetime) -> None:
    """Points from the forecast for a forecast rule; a manual rule's own points checked."""
    if rule.source == ReorderRule.Source.FORECAST:
        figures = forecast_figures(item_ids=[rule.item_id], location_ids=[rule.location_id], at=now)
        _follow(rule, figures.get((rule.item_id, rule.location_id), NO_FORECAST), now)
    elif rule.order_up_to < rule.reorder_point:
        raise InvalidReorderRule("Order up to must be at least the reorder point.", field="order_up_to")
    try:
        rule.full_clean(exclude=["item", "location"], validate_unique=False, validate_constraints=False)
    except ValidationError as err:
        field, messages = next(iter(err.message_dict.items()))
        raise InvalidReorderRule(" ".join(messages), field=field) from err


def reorder_rule_create(*, item: Item, location: Location, fields: Mapping[str, Any], actor: str) -> ReorderRule:
    """A rule for a pair that has none yet (a forecast rule gets its points at once)."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidReorderRule(f"Not a rule setting: {', '.join(sorted(unknown))}.")
    if location.kind not in REORDER_KINDS:
        raise InvalidReorderRule("A drop-ship supplier replenishes its own stock.", field="location")
    now = timezone.now()
    with transaction.atomic():
        if ReorderRule.objects.filter(item=item, location=location).exists():
            raise InvalidReorderRule(f"{item.sku} at {location.code} has a reorder rule already.", field="item")
        rule = ReorderRule(item=item, location=location, **dict(fields))
        _settle(rule, now=now)
        rule.save()
    log.info("reorder_rule_created", item=item.sku, location=location.code, source=rule.source, actor=actor)
    return rule


def reorder_rule_update(*, rule_id: int, fields: Mapping[str, Any], actor: str) -> ReorderRule:
    """Change a rule's settings; a forecast rule's points are recomputed at once, a manual rule keeps those given."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidReorderRule(f"Not a rule setting: {', '.join(sorted(unknown))}.")
    now = timezone.now()
    with transaction.atomic():
        rule = reorder_rule_for_update(rule_id)
        for name, value in fields.items():
            setattr(rule, name, value)
        _settle(rule, now=now)
        rule.save()
    log.info(
        "reorder_rule_updated",
        item=rule.item.sku,
        location=rule.location.code,
        source=rule.source,
        fields=sorted(fields),
        actor=actor,
    )
    return rule


# --- From the "To reorder" list to stock work: transfers first, then purchase orders ----------------


def _chosen_plans(rule_ids: Sequence[int]) -> list[tuple[Any, Any]]:
    """(rule, plan) of the chosen due rules, planned against the whole list as it is now.

    The rules of the chosen items are locked first (every location: givers too), so that two
    people acting on the same rows at once plan one after the other: the second sees the first's
    transfers and receipts and drafts or orders nothing twice.
    """
    item_ids = list(ReorderRule.objects.filter(pk__in=list(rule_ids)).values_list("item_id", flat=True))
    reorder_rules_for_update(item_ids=item_ids)
    due = list(reorder_list())
    plans = reorder_plan(due)
    wanted = set(rule_ids)
    return [(rule, plans[rule.pk]) for rule in due if rule.pk in wanted and rule.pk in plans]


@transaction.atomic
def reorder_transfers_draft(*, rule_ids: Sequence[int], actor: str) -> list[Transfer]:
    """Draft the transfers the plan suggests for these rules: one per (source, destination), lines per item.

    Drafts move nothing; the rows count them as coming at once, and the source's spare stock
    counts them as leaving, so asking twice drafts nothing twice.
    """
    pairs: dict[tuple[int, int], tuple[Location, Location, dict[int, tuple[Item, int]]]] = {}
    for rule, plan in _chosen_plans(rule_ids):
        for suggestion in plan.transfers:
            key = (suggestion.source.pk, rule.location_id)
            source, destination, lines = pairs.setdefault(key, (suggestion.source, rule.location, {}))
            item, units = lines.get(rule.item_id, (rule.item, 0))
            lines[rule.item_id] = (item, units + suggestion.quantity)
    drafted = []
    for key in sorted(pairs, key=lambda k: (pairs[k][0].code, pairs[k][1].code)):
        source, destination, lines = pairs[key]
        specs = [TransferLineSpec(item=item, quantity=units) for item, units in sorted(lines.values(), key=_by_sku)]
        drafted.append(
            transfer_create(source=source, destination=destination, lines=specs, actor=actor, reference="reorder")
        )
    log.info("reorder_transfers_drafted", transfers=len(drafted), rules=len(rule_ids), actor=actor)
    return drafted


def _by_sku(entry: tuple[Item, int]) -> str:
    return entry[0].sku


@dataclass
class PurchaseResult:
    orders: list[PurchaseOrder]
    without_supplier: list[str]  # "SKU at LOCATION" of rows no supplier is mapped for


@transaction.atomic
def reorder_purchase_orders_place(*, rule_ids: Sequence[int], actor: str) -> PurchaseResult:
    """A purchase order per supplier for what the plan buys on these rules, after transfers.

    Each becomes receipts due (``apps.suppliers.services.purchase_orders``), which the list then
    counts as on order, so asking twice orders nothing twice.
    """
    per_supplier: dict[int, tuple[Supplier, list[PurchaseLine]]] = {}
    without = []
    for rule, plan in _chosen_plans(rule_ids):
        if not plan.purchase:
            continue
        if plan.supplier is None:
            without.append(f"{rule.item.sku} at {rule.location.code}")
            continue
        line = PurchaseLine(
            item=rule.item, location=rule.location, quantity=plan.purchase, lead_time_days=plan.lead_time_days
        )
        per_supplier.setdefault(plan.supplier.pk, (plan.supplier, []))[1].append(line)
    orders = [
        purchase_order_place(supplier=supplier, lines=lines, actor=actor)
        for supplier, lines in sorted(per_supplier.values(), key=lambda entry: entry[0].code)
    ]
    log.info("reorder_purchase_orders_placed", orders=len(orders), without_supplier=len(without), actor=actor)
    return PurchaseResult(orders=orders, without_supplier=sorted(without))
