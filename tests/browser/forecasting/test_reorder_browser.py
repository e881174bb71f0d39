"""The "To reorder" list in a real browser (headless Chromium, Playwright): the demo shop after its weeks of
history, a delivery on its way, the list filtered, and its CSV downloaded. Screenshot: var/screenshots/."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from apps.catalog.models import Item, Location, StockLevel, Transfer
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.forecasting.models import ReorderRule
from apps.forecasting.selectors import REORDER_CSV_COLUMNS, reorder_list
from apps.forecasting.services.reorder import reorder_points_recompute, reorder_rule_update
from apps.suppliers.models import PurchaseOrder, Supplier, SupplierProduct
from apps.suppliers.tests.factories import make_mapping, make_supplier
from sandbox.demo.past_weeks import demo_forecast_start

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def page(browser, live_server, transactional_db, django_user_model):
    """A tab logged in to the admin as the merchant."""
    boss = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client = Client()
    client.force_login(boss)
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, base_url=live_server.url, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    host = live_server.url.split("//", 1)[1].split(":")[0]
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "domain": host, "path": "/"}])
    tab = context.new_page()
    yield tab
    context.close()


def _row(page, sku: str, location: str):
    """The list's row of an item at a location (other columns name other locations: transfers from them)."""
    at = page.locator("td.field-location_shown", has_text=re.compile(f"^{location}$"))
    return page.locator("#result_list tbody tr").filter(has=at).filter(has_text=f"{sku} ·")


def test_to_reorder_list_with_a_delivery_due_and_its_csv(page):
    call_command("loaddata", "demo_catalog", verbosity=0)
    demo_forecast_start(seed_history=True)
    s1 = Location.objects.get(code="S1")
    hood = Item.objects.get(sku="HOOD-M")
    receipt_create(location=s1, lines=[ReceiptLineSpec(item=hood, expected=2)], actor="test", reference="PO-77")
    # Caps at S1 come in boxes of 12, set by hand.
    cap = ReorderRule.objects.get(item__sku="CAP", location=s1)
    ReorderRule.objects.filter(pk=cap.pk).update(source="manual", reorder_point=30, order_up_to=60, pack_size=12)
    due = {(r.item.sku, r.location.code): r for r in reorder_list()}
    assert ("HOOD-M", "S1") in due and ("CAP", "S1") in due

    page.goto("/admin/")
    page.click("text=To reorder")
    page.wait_for_url("**/admin/forecasting/reordersuggestion/**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(due)
    hood_row = _row(page, "HOOD-M", "S1")
    assert hood_row.locator("td.field-on_order_shown").inner_text() == "2 pcs"
    expected = due[("HOOD-M", "S1")]
    assert hood_row.locator("td.field-suggested_shown").inner_text() == f"{expected.suggested:,} pcs"
    cap_row = _row(page, "CAP", "S1")
    assert int(cap_row.locator("td.field-suggested_shown").inner_text().split()[0].replace(",", "")) % 12 == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "to_reorder.png"), full_page=True)

    # Filtered to one store, the download holds that store's rows, as on the page.
    page.click("#changelist-filter >> text=S1 Store Berlin Mitte")
    page.wait_for_url("**location=S1**")
    with page.expect_download() as download_info:
        page.click("#reorder-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("to-reorder-") and download.suggested_filename.endswith(".csv")
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert table[0] == list(REORDER_CSV_COLUMNS)
    assert {row[3] for row in table[1:]} == {"S1"}
    by_sku = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert by_sku["HOOD-M"]["on_order"] == "2"
    assert by_sku["HOOD-M"]["suggested_quantity"] == str(expected.suggested)
    assert by_sku["CAP"]["pack_size"] == "12" and by_sku["CAP"]["source"] == "manual"
    assert len(table) - 1 == page.locator("#result_list tbody tr").count()


def test_transfers_first_then_a_purchase_order_received_on_the_receiving_page(page):
    """The issue's example: S1 is out of hoodies while the warehouse holds 66; the rest is bought from Acme."""
    store = LocationFactory(code="S1", name="Store", kind=Location.Kind.STORE)
    other = LocationFactory(code="S2", name="Other store", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie M")
    for place, units in ((warehouse, 66), (store, 0), (other, 0)):
        stock(hood, place, units)
    reorder_points_recompute()
    for place, point, up_to in ((warehouse, 20, 80), (store, 10, 39), (other, 10, 30)):
        rule = ReorderRule.objects.get(item=hood, location=place)
        fields = {"source": "manual", "reorder_point": point, "order_up_to": up_to}
        reorder_rule_update(rule_id=rule.pk, fields=fields, actor="test")
    acme = make_supplier("acme")
    Supplier.objects.filter(pk=acme.pk).update(name="Acme Textiles")
    SupplierProduct.objects.filter(pk=make_mapping(acme, "AC-HOOD", hood).pk).update(lead_time_days=5)

    page.goto("/admin/forecasting/reordersuggestion/")
    s1, s2 = _row(page, "HOOD-M", "S1"), _row(page, "HOOD-M", "S2")
    assert s1.locator("td.field-transfer_shown").inner_text() == "39 pcs from W1"
    assert s1.locator("td.field-purchase_shown").inner_text() == "-"
    assert s2.locator("td.field-transfer_shown").inner_text() == "6 pcs from W1"
    assert s2.locator("td.field-purchase_shown").inner_text() == "24 pcs"
    assert s2.locator("td.field-supplier_shown").inner_text() == "Acme Textiles (5 days)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "to_reorder_plan.png"), full_page=True)

    # Tick both rows: the transfers first.
    page.check("#action-toggle")
    page.select_option("select[name=action]", "transfers_draft")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist .success")
    assert "Drafted 2 transfer(s)" in page.locator(".messagelist").inner_text()
    assert sorted(Transfer.objects.values_list("destination__code", "lines__quantity")) == [("S1", 39), ("S2", 6)]

    # S1 is covered by its transfer; S2 still needs 24, bought from Acme.
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "S2" in rows.first.inner_text()
    page.check("#action-toggle")
    page.select_option("select[name=action]", "purchase_orders_place")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist .success")
    order = PurchaseOrder.objects.get()
    assert f"{order.number} to Acme Textiles: receipts due" in page.locator(".messagelist").inner_text()
    page.screenshot(path=str(SHOTS / "to_reorder_purchase_order.png"), full_page=True)

    # The purchase order is a receipt due at S2, received like any delivery.
    page.goto("/admin/catalog/receipt/")
    row = page.locator("#result_list tbody tr", has_text=order.number)
    assert row.locator("td.field-supplier").inner_text() == "Acme Textiles"
    assert row.locator("td.field-due_units").inner_text() == "24 pcs"
    row.locator("a.receive-link").click()
    page.click("input[name=receive]")
    page.wait_for_selector(".messagelist .success")
    assert "Received 24 pcs; the receipt is now received." in page.locator(".messagelist").inner_text()
    assert StockLevel.objects.get(item=hood, location=other).on_hand == 24
