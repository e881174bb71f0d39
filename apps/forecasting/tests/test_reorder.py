"""Reorder points from the forecast (or by hand), the "To reorder" list, its suggested quantities and CSV."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Location, Movement
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_close, receipt_create, receipt_receive
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.core.testing import admin_form
from apps.forecasting.errors import InvalidReorderRule
from apps.forecasting.models import ReorderRule, SafetyForecast, SafetyOverride
from apps.forecasting.selectors import REORDER_CSV_COLUMNS, reorder_list
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.services.reorder import reorder_points, reorder_points_recompute, reorder_rule_update
from apps.forecasting.tasks import safety_recompute_task
from apps.forecasting.tests.conftest import NOW
from apps.forecasting.tests.factories import ledger_at
from apps.suppliers.tests.factories import make_supplier

pytestmark = pytest.mark.django_db


def _history(item, store, warehouse):
    """Four weeks before NOW: 3 till sales every Monday 10:xx at the store, 4 online orders every Tuesday 15:xx
    shipped from the warehouse."""
    ledger_at(item, store, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100)])
    ledger_at(item, warehouse, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100)])
    first_monday = datetime(2026, 10, 19, 10, 0, tzinfo=UTC)
    tills, online = [], []
    for week in range(4):
        monday = first_monday + timedelta(weeks=week)
        tills += [(monday + timedelta(minutes=10 * n), Movement.Kind.POS_SALE, -1) for n in range(3)]
        online += [(monday + timedelta(days=1, hours=5, minutes=10 * n), Movement.Kind.FULFIL, -1) for n in range(4)]
    ledger_at(item, store, tills)
    ledger_at(item, warehouse, online)


@pytest.fixture
def warehouse(db) -> Location:
    return LocationFactory(code="WH", kind=Location.Kind.WAREHOUSE)


def test_points_are_lead_time_times_demand_plus_safety():
    assert reorder_points(demand_per_day=2, safety=3, lead_time_days=7, cover_days=14) == (17, 45)
    # Part of a unit is a whole unit; no demand leaves only the safety stock.
    assert reorder_points(demand_per_day=0.1, safety=0, lead_time_days=7, cover_days=0) == (1, 1)
    assert reorder_points(demand_per_day=0, safety=2, lead_time_days=7, cover_days=14) == (2, 2)
    # Float noise does not add a unit.
    assert reorder_points(demand_per_day=6 / 7, safety=0, lead_time_days=7, cover_days=0) == (6, 6)


def test_forecast_rules_follow_the_forecasts_demand_and_safety(forecast_settings, item, store, warehouse):
    _history(item, store, warehouse)
    forecast_recompute(now=NOW)

    result = reorder_points_recompute(now=NOW)

    assert result.created == 2 and result.rules == 2
    at_store = ReorderRule.objects.get(item=item, location=store)
    at_warehouse = ReorderRule.objects.get(item=item, location=warehouse)
    # The store sells 3 a week over the counter, the warehouse ships 4 a week online: per day / 7.
    assert at_store.demand_per_day == pytest.approx(3 / 7, abs=1e-4)
    assert at_warehouse.demand_per_day == pytest.approx(4 / 7, abs=1e-4)
    highest = SafetyForecast.objects.filter(item=item, location=store).aggregate(v=Max("value"))["v"]
    assert highest > 0 and at_store.safety == highest
    assert at_warehouse.safety == 0  # online orders were reserved first: no exposure window to cover
    # Default lead time 7 days, cover 14 days.
    assert (at_store.reorder_point, at_store.order_up_to) == (3 + highest, 9 + highest)
    assert (at_warehouse.reorder_point, at_warehouse.order_up_to) == (4, 12)
    assert at_store.source == ReorderRule.Source.FORECAST and at_store.computed_at == NOW


def test_a_valid_override_is_the_safety_counted(forecast_settings, item, store, warehouse):
    _history(item, store, warehouse)
    forecast_recompute(now=NOW)
    SafetyOverride.objects.create(item=item, location=store, value=20, reason="promo")
    reorder_points_recompute(now=NOW)
    rule = ReorderRule.objects.get(item=item, location=store)
    assert rule.safety == 20 and rule.reorder_point == 23


def test_manual_points_are_kept_through_recomputes(forecast_settings, item, store, warehouse):
    _history(item, store, warehouse)
    forecast_recompute(now=NOW)
    reorder_points_recompute(now=NOW)
    rule = ReorderRule.objects.get(item=item, location=store)

    reorder_rule_update(
        rule_id=rule.pk, fields={"source": "manual", "reorder_point": 50, "order_up_to": 80}, actor="test"
    )
    # Demand doubles; the forecast moves, the merchant's points do not.
    ledger_at(item, store, [(datetime(2026, 11, 17, 10, 0, tzinfo=UTC), Movement.Kind.RECEIPT, 50)])
    forecast_recompute(now=NOW + timedelta(weeks=1))
    reorder_points_recompute(now=NOW + timedelta(weeks=1))
    rule.refresh_from_db()
    assert (rule.source, rule.reorder_point, rule.order_up_to) == ("manual", 50, 80)

    # Back to the forecast: its points at once, with the rule's own lead time.
    rule = reorder_rule_update(rule_id=rule.pk, fields={"source": "forecast", "lead_time_days": 14}, actor="test")
    assert rule.reorder_point == math.ceil(14 * rule.demand_per_day - 1e-9) + rule.safety


def test_a_manual_order_up_to_below_the_point_is_refused_and_the_database_holds_it_too(item, store):
    stock(item, store, 5)
    reorder_points_recompute()
    rule = ReorderRule.objects.get()
    with pytest.raises(InvalidReorderRule) as refused:
        reorder_rule_update(
            rule_id=rule.pk, fields={"source": "manual", "reorder_point": 10, "order_up_to": 5}, actor="test"
        )
    assert refused.value.data["field"] == "order_up_to"
    with pytest.raises(IntegrityError), transaction.atomic():
        ReorderRule.objects.filter(pk=rule.pk).update(reorder_point=10, order_up_to=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReorderRule.objects.filter(pk=rule.pk).update(pack_size=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReorderRule.objects.create(item=item, location=store)


def test_only_stores_and_warehouses_get_rules(forecast_settings, item, store):
    supplier = make_supplier("SUP", max_age_minutes=60)
    stock(item, store, 4)
    ledger_at(
        item, supplier.location, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.SUPPLIER_FEED, 9)], reference="x"
    )
    ItemFactory(sku="NOWHERE")  # stocked nowhere: no rule
    reorder_points_recompute(now=NOW)
    assert list(ReorderRule.objects.values_list("item__sku", "location__code")) == [("HOOD-M", "S1")]


def _manual(item, location, **points):
    reorder_points_recompute()
    rule = ReorderRule.objects.get(item=item, location=location)
    return reorder_rule_update(rule_id=rule.pk, fields={"source": "manual", **points}, actor="test")


def test_suggested_quantity_fills_up_to_order_up_to_in_whole_packs_counting_what_is_on_order(item, store):
    stock(item, store, 10)
    _reserve(item, store, 3)  # an online order holds 3 of the 10
    due = receipt_create(location=store, lines=[ReceiptLineSpec(item=item, expected=6)], actor="test")
    receipt_receive(receipt_id=due.pk, quantities={due.lines.get().pk: 2}, actor="test", submission="a")
    gone = receipt_create(location=store, lines=[ReceiptLineSpec(item=item, expected=50)], actor="test")
    receipt_close(receipt_id=gone.pk)  # cancelled: nothing more comes
    # on hand 12 (10 + 2 received), reserved 3, on order 4: position 13.
    rule = _manual(item, store, reorder_point=13, order_up_to=40, pack_size=6)

    (row,) = reorder_list()
    assert (row.on_hand, row.reserved, row.on_order, row.position) == (12, 3, 4, 13)
    assert row.suggested == 30  # 27 to reach 40, in packs of 6

    reorder_rule_update(rule_id=rule.pk, fields={"min_order": 36}, actor="test")
    assert reorder_list().get().suggested == 36

    reorder_rule_update(rule_id=rule.pk, fields={"reorder_point": 12}, actor="test")
    assert not reorder_list().exists(), "above its reorder point: not due"
    assert reorder_list(due_only=False).get().suggested == 36


def _reserve(item, location, units):
    with transaction.atomic():
        levels_for_update([(item.pk, location.pk)])
        movements_apply(
            movements=[MovementSpec(item.pk, location.pk, Movement.Kind.RESERVE, reserved_delta=units)],
            actor="test",
            priority=Tier.SALE,
            reason="test",
        )


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_to_reorder_page_and_csv_export(admin_client, item, store, warehouse):
    stock(item, store, 2)
    stock(item, warehouse, 90)
    cap = ItemFactory(sku="CAP", name="Cap, black")
    stock(cap, store, 1)
    _manual(item, store, reorder_point=5, order_up_to=20, pack_size=4)
    _manual(item, warehouse, reorder_point=10, order_up_to=100)  # 90 on hand: not due
    _manual(cap, store, reorder_point=3, order_up_to=10)

    page = admin_client.get("/admin/forecasting/reordersuggestion/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "HOOD-M" in html and "CAP" in html and 'id="reorder-csv"' in html

    rows = _csv(admin_client.get("/admin/forecasting/reordersuggestion/export.csv"))
    assert rows[0] == list(REORDER_CSV_COLUMNS)
    by_sku = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_sku) == {"HOOD-M", "CAP"}
    hood = by_sku["HOOD-M"]
    assert (hood["location"], hood["on_hand"], hood["reserved"], hood["on_order"]) == ("S1", "2", "0", "0")
    assert (hood["reorder_point"], hood["order_up_to"], hood["suggested_quantity"], hood["pack_size"]) == (
        "5",
        "20",
        "20",  # 18 to reach 20, in packs of 4
        "4",
    )
    assert by_sku["CAP"]["suggested_quantity"] == "9" and by_sku["CAP"]["source"] == "manual"

    # The download follows the page's filters, and the action exports the rows ticked.
    filtered = _csv(admin_client.get("/admin/forecasting/reordersuggestion/export.csv?q=CAP"))
    assert [row[0] for row in filtered[1:]] == ["CAP"]
    hood_rule = ReorderRule.objects.get(item=item, location=store)
    ticked = _csv(
        admin_client.post(
            "/admin/forecasting/reordersuggestion/", {"action": "export_csv", "_selected_action": [hood_rule.pk]}
        )
    )
    assert [row[0] for row in ticked[1:]] == ["HOOD-M"]


def test_the_rule_admin_writes_through_the_service(admin_client, item, store):
    stock(item, store, 2)
    reorder_points_recompute()
    rule = ReorderRule.objects.get()
    url = f"/admin/forecasting/reorderrule/{rule.pk}/change/"

    # Typing points on a forecast rule is refused: the forecast owns them.
    refused = admin_client.post(url, {**admin_form(admin_client, url), "reorder_point": "9", "order_up_to": "9"})
    assert refused.status_code == 200 and "This follows the forecast" in refused.content.decode()

    form = {**admin_form(admin_client, url), "source": "manual", "reorder_point": "9", "order_up_to": "30"}
    assert admin_client.post(url, form).status_code == 302
    rule.refresh_from_db()
    assert (rule.source, rule.reorder_point, rule.order_up_to) == ("manual", 9, 30)


def test_the_nightly_job_moves_the_reorder_points_with_the_forecast(forecast_settings, item, store):
    stock(item, store, 200)
    reorder_points_recompute()
    assert ReorderRule.objects.get().reorder_point == 0  # nothing sold yet
    # Two units an hour over the last three days.
    start = timezone.now() - timedelta(days=3)
    ledger_at(item, store, [(start + timedelta(minutes=30 * n), Movement.Kind.POS_SALE, -1) for n in range(144)])

    result = safety_recompute_task()

    assert result["reorder_rules_changed"] == 1
    rule = ReorderRule.objects.get()
    assert rule.demand_per_day == pytest.approx(48, rel=0.05)
    assert rule.reorder_point >= 7 * 48 * 0.95


def test_the_list_costs_the_same_queries_for_few_or_many_rows(admin_client, store, django_assert_max_num_queries):
    def make(n):
        for k in range(n):
            stock(ItemFactory(sku=f"ITEM-{n}-{k}"), store, 1)
        reorder_points_recompute()
        ReorderRule.objects.update(source="manual", reorder_point=5, order_up_to=10)

    make(2)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get("/admin/forecasting/reordersuggestion/").status_code == 200
    make(8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = admin_client.get("/admin/forecasting/reordersuggestion/")
    assert page.content.decode().count("ITEM-") >= 10
