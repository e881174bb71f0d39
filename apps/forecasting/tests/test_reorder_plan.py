"""The "To reorder" plan: spare stock elsewhere is transferred first, the rest bought from the item's
supplier; ticked rows become draft transfers or purchase orders (receipts due)."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.catalog.models import Location, Receipt, Transfer
from apps.catalog.services.transfers import transfer_ship
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.forecasting.models import ReorderRule
from apps.forecasting.selectors import REORDER_CSV_COLUMNS, reorder_list, reorder_plan
from apps.forecasting.services.reorder import (
    reorder_points_recompute,
    reorder_purchase_orders_place,
    reorder_rule_update,
    reorder_transfers_draft,
)
from apps.suppliers.models import PurchaseOrder, Supplier, SupplierProduct
from apps.suppliers.tests.factories import make_mapping, make_supplier

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    """The issue's example: a store out of hoodies while the warehouse holds 66."""
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    other = LocationFactory(code="S2", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie M")
    stock(hood, warehouse, 66)
    stock(hood, store, 0)
    stock(hood, other, 0)
    reorder_points_recompute()
    _points(hood, warehouse, reorder_point=20, order_up_to=80)
    _points(hood, store, reorder_point=10, order_up_to=39)
    _points(hood, other, reorder_point=10, order_up_to=30)
    supplier = _named(make_supplier("acme"), "Acme Textiles")
    mapping = make_mapping(supplier, "AC-HOOD-M", hood)
    SupplierProduct.objects.filter(pk=mapping.pk).update(lead_time_days=5)
    return {"store": store, "other": other, "warehouse": warehouse, "hood": hood, "supplier": supplier}


def _named(supplier, name):
    Supplier.objects.filter(pk=supplier.pk).update(name=name)
    supplier.name = name
    return supplier


def _points(item, location, **points):
    rule = ReorderRule.objects.get(item=item, location=location)
    return reorder_rule_update(rule_id=rule.pk, fields={"source": "manual", **points}, actor="test")


def _plans(shop):
    due = list(reorder_list())
    plans = reorder_plan(due)
    return {rule.location.code: plans[rule.pk] for rule in due}


def test_spare_stock_is_transferred_before_anything_is_bought(shop):
    plans = _plans(shop)
    assert set(plans) == {"S1", "S2"}  # the warehouse, above its own point, is not due
    s1 = plans["S1"]
    # The warehouse gives what it holds above its reorder point (66 - 20 - 1 = 45): 39 to S1 ...
    assert [(t.source.code, t.quantity) for t in s1.transfers] == [("W1", 39)]
    assert s1.purchase == 0
    # ... and the 6 left to S2, which buys the rest of its 30 from the item's supplier, with its lead time.
    s2 = plans["S2"]
    assert [(t.source.code, t.quantity) for t in s2.transfers] == [("W1", 6)]
    assert (s2.purchase, s2.supplier.name, s2.lead_time_days) == (24, "Acme Textiles", 5)


def test_the_rest_is_bought_in_whole_packs_and_at_least_the_minimum_order(shop):
    _points(shop["hood"], shop["other"], reorder_point=10, order_up_to=30, pack_size=10, min_order=40)
    s2 = _plans(shop)["S2"]
    assert s2.transfer_quantity == 6 and s2.purchase == 40  # 24 to buy, at least 40, in packs of 10


def test_a_giver_is_never_taken_down_to_its_own_reorder_point(shop):
    _points(shop["hood"], shop["warehouse"], reorder_point=60, order_up_to=80)
    plans = _plans(shop)
    assert [t.quantity for t in plans["S1"].transfers] == [5]  # 66 - 60 - 1
    assert plans["S1"].purchase == 34 and plans["S2"].transfer_quantity == 0


def test_drafted_transfers_count_as_coming_and_are_not_drafted_twice(shop):
    rules = {rule.location.code: rule.pk for rule in reorder_list()}
    (transfer,) = reorder_transfers_draft(rule_ids=[rules["S1"]], actor="boss")
    assert (transfer.status, transfer.source.code, transfer.destination.code) == ("draft", "W1", "S1")
    assert [(line.item.sku, line.quantity) for line in transfer.lines.all()] == [("HOOD-M", 39)]
    assert {rule.location.code for rule in reorder_list()} == {"S2"}  # S1 has 39 coming: not due any more
    # The warehouse's drafted 39 are no longer spare: S2 gets the same 6 as before, not 45.
    assert _plans(shop)["S2"].transfer_quantity == 6
    assert reorder_transfers_draft(rule_ids=[rules["S1"]], actor="boss") == []
    transfer_ship(transfer_id=transfer.pk, actor="boss")  # on the road: still coming, still not due
    assert {rule.location.code for rule in reorder_list()} == {"S2"}


def test_a_purchase_order_per_supplier_becomes_receipts_due(shop):
    cap = ItemFactory(sku="CAP", name="Cap")
    stock(cap, shop["store"], 0)
    reorder_points_recompute()
    _points(cap, shop["store"], reorder_point=5, order_up_to=12)
    other = _named(make_supplier("hats"), "Hat Co")
    mapping = make_mapping(other, "HAT-1", cap)
    SupplierProduct.objects.filter(pk=mapping.pk).update(lead_time_days=0)  # none given: the rule's 7 days
    beanie = ItemFactory(sku="BEANIE", name="Beanie")  # no supplier mapped
    stock(beanie, shop["store"], 0)
    reorder_points_recompute()
    _points(beanie, shop["store"], reorder_point=2, order_up_to=4)

    rule_ids = [rule.pk for rule in reorder_list()]
    result = reorder_purchase_orders_place(rule_ids=rule_ids, actor="boss")
    assert result.without_supplier == ["BEANIE at S1"]
    orders = {order.supplier.code: order for order in result.orders}
    assert set(orders) == {"acme", "hats"}  # S1's hoodies come by transfer: Acme is only asked for S2's rest
    (acme_receipt,) = orders["acme"].receipts.all()
    today = timezone.localdate()
    assert (acme_receipt.location.code, acme_receipt.reference, acme_receipt.supplier) == (
        "S2",
        orders["acme"].number,
        "Acme Textiles",
    )
    assert acme_receipt.status == Receipt.Status.EXPECTED and acme_receipt.expected_on == today + timedelta(days=5)
    assert [(line.item.sku, line.expected) for line in acme_receipt.lines.all()] == [("HOOD-M", 24)]
    (hat_receipt,) = orders["hats"].receipts.all()
    assert hat_receipt.expected_on == today + timedelta(days=7)
    assert [(line.item.sku, line.expected) for line in hat_receipt.lines.all()] == [("CAP", 12)]

    # What is ordered is on order: asking again orders nothing twice.
    again = reorder_purchase_orders_place(rule_ids=rule_ids, actor="boss")
    assert again.orders == [] and PurchaseOrder.objects.count() == 2


def test_the_page_shows_transfer_supplier_and_lead_time_and_its_actions_make_the_documents(admin_client, shop):
    html = admin_client.get("/admin/forecasting/reordersuggestion/").content.decode()
    assert 'data-source="W1">39 pcs from W1' in html
    assert '<span class="supplier">Acme Textiles</span> (5 days)' in html

    rows = list(
        csv.reader(io.StringIO(admin_client.get("/admin/forecasting/reordersuggestion/export.csv").content.decode()))
    )
    assert rows[0] == list(REORDER_CSV_COLUMNS)
    by_place = {row[3]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert (
        by_place["S1"]["transfer_from"],
        by_place["S1"]["transfer_quantity"],
        by_place["S1"]["purchase_quantity"],
    ) == (
        "W1:39",
        "39",
        "0",
    )
    assert (
        by_place["S2"]["supplier"],
        by_place["S2"]["supplier_lead_time_days"],
        by_place["S2"]["purchase_quantity"],
    ) == (
        "Acme Textiles",
        "5",
        "24",
    )

    ticked = [rule.pk for rule in reorder_list()]
    page = admin_client.post(
        "/admin/forecasting/reordersuggestion/",
        {"action": "transfers_draft", "_selected_action": ticked},
        follow=True,
    )
    assert "Drafted 2 transfer(s)" in page.content.decode()
    assert Transfer.objects.filter(status="draft").count() == 2
    page = admin_client.post(
        "/admin/forecasting/reordersuggestion/",
        {"action": "purchase_orders_place", "_selected_action": [rule.pk for rule in reorder_list()]},
        follow=True,
    )
    order = PurchaseOrder.objects.get()
    assert f"{order.number} to Acme Textiles: receipts due" in page.content.decode()
    assert not reorder_list().exists()  # everything is coming: by transfer or on order


@pytest.mark.django_db(transaction=True)
def test_two_people_ordering_the_same_rows_at_once_order_once(shop):
    """Each on its own connection, both at the barrier before planning: the rule locks put one after the other."""
    rule_ids = [rule.pk for rule in reorder_list()]
    barrier = threading.Barrier(2)
    results: list[object] = []

    def order(actor: str) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(reorder_purchase_orders_place(rule_ids=rule_ids, actor=actor))
        finally:
            connection.close()

    threads = [threading.Thread(target=order, args=(name,)) for name in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    assert PurchaseOrder.objects.count() == 1
    assert Receipt.objects.filter(reference=PurchaseOrder.objects.get().number).count() == 1
