"""The merchant's stock work in the admin, in a real browser: receive, adjust, transfer.

Each test does the work through the pages, then checks the ledger rows the document booked and
the quantity the channel (a simulator on loopback) is sent afterwards. Screenshots land in
var/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.catalog.models import Adjustment, Location, Movement, Receipt, StockLevel, Transfer
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.services.config import listings_sync_now
from apps.channels.services.push import channel_push
from apps.channels.tests.conftest import clean_sync_redis, fast_sync, simulator
from apps.channels.tests.factories import channel_selling, listing

__all__ = ["clean_sync_redis", "fast_sync", "simulator"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def shop(transactional_db, django_user_model, simulator, stockroom_knobs):
    """A merchant, a store and a warehouse, two items, and a webshop selling hoodies from both places."""
    stockroom_knobs(SYNC_TIER2_DELAY_S="0")  # push manual changes as soon as the test asks
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    store = LocationFactory(code="S1", name="High Street", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie, medium")
    cap = ItemFactory(sku="CAP-RED", name="Cap, red")
    stock(hood, warehouse, 10)
    sim = simulator(secret="s3cret")
    web = channel_selling("web", [store, warehouse], push_url=sim.url, secret="s3cret")
    listings_sync_now(listing_ids=[listing(web, product_of("HOOD-M", {hood: 1}), "WEB-HOOD").pk])
    channel_push(channel_id=web.pk)
    assert sim.shown("WEB-HOOD") == 10
    return {"store": store, "warehouse": warehouse, "hood": hood, "cap": cap, "sim": sim, "web": web}


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _log_in(page) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", "merchant")
    page.fill("input[name=password]", "pw-merchant-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def _pick(page, field_id: str, text: str) -> None:
    """Choose in an autocomplete (select2) field by typing part of the name."""
    page.click(f"#{field_id} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.click(f".select2-results__option:has-text('{text}')")


def _pushed(shop) -> int | None:
    channel_push(channel_id=shop["web"].pk)
    return shop["sim"].shown("WEB-HOOD")


def _level(item, location) -> int:
    return StockLevel.objects.get(item=item, location=location).on_hand


def test_receive_a_delivery_in_two_parts(page, shop):
    _log_in(page)
    page.goto("/admin/catalog/receipt/add/")
    page.select_option("#id_location", label=str(shop["store"]))
    page.fill("#id_supplier", "Acme Textiles")
    page.fill("#id_reference", "PO-881")
    _pick(page, "id_lines-0-item", "HOOD-M")
    page.fill("#id_lines-0-expected", "12")
    _pick(page, "id_lines-1-item", "CAP-RED")
    page.fill("#id_lines-1-expected", "5")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    receipt = Receipt.objects.get(reference="PO-881")
    row = page.locator("#result_list tbody tr", has_text="PO-881")
    assert row.locator("td.field-due_units").inner_text() == "17 pcs"
    _shot(page, "receipts-due")

    row.locator("a.receive-link").click()
    page.wait_for_url(f"**/receipt/{receipt.pk}/receive/")
    page.fill('tr[data-sku="HOOD-M"] input', "8")
    _shot(page, "receipt-receive")
    page.click("input[name=receive]")
    page.wait_for_selector(".messagelist .success")
    assert "Received 13 pcs; the receipt is now partly received." in page.locator(".messagelist").inner_text()
    assert _level(shop["hood"], shop["store"]) == 8 and _level(shop["cap"], shop["store"]) == 5
    assert _pushed(shop) == 18  # the channel is told the higher quantity

    # What is still due shows in the list; the rest arrives later.
    page.goto("/admin/catalog/receipt/")
    row = page.locator("#result_list tbody tr", has_text="PO-881")
    assert row.locator("td.field-due_units").inner_text() == "4 pcs"
    row.locator("a.receive-link").click()
    assert page.locator('tr[data-sku="HOOD-M"] td.due').inner_text() == "4 pcs"
    page.click("input[name=receive]")
    page.wait_for_selector(".messagelist .success")
    assert Receipt.objects.get(pk=receipt.pk).status == Receipt.Status.RECEIVED
    assert _pushed(shop) == 22

    # The movement history of this receipt, from its page.
    page.click("a.ledger-link")
    page.wait_for_url("**/catalog/movement/?reference__exact=*")
    assert page.locator("#result_list tbody tr").count() == 3
    rows = Movement.objects.filter(reference=f"receipt:{receipt.pk}").order_by("id")
    assert [(m.item.sku, m.on_hand_delta, m.actor) for m in rows] == [
        ("HOOD-M", 8, "merchant"),
        ("CAP-RED", 5, "merchant"),
        ("HOOD-M", 4, "merchant"),
    ]
    _shot(page, "receipt-ledger")
    assert ledger_reconcile().ok


def test_adjust_with_reasons_and_see_totals_per_reason(page, shop):
    _log_in(page)
    for reason, quantity in (("damaged", "2"), ("lost", "1"), ("found", "1")):
        page.goto("/admin/catalog/adjustment/add/")
        page.select_option("#id_location", label=str(shop["warehouse"]))
        _pick(page, "id_item", "HOOD-M")
        page.select_option("#id_reason", reason)
        page.fill("#id_quantity", quantity)  # how many; the reason says which way
        page.fill("#id_note", f"{reason} on the shelf")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")
    assert _level(shop["hood"], shop["warehouse"]) == 8
    assert sorted(Adjustment.objects.values_list("reason", "quantity")) == [("damaged", -2), ("found", 1), ("lost", -1)]
    assert sorted(Movement.objects.filter(kind="adjustment").values_list("on_hand_delta", flat=True)) == [-2, -1, 1]
    assert _pushed(shop) == 8

    totals = page.locator("#reason-totals")
    assert totals.locator('tr[data-reason="damaged"] td.units').inner_text() == "-2 pcs"
    assert totals.locator('tr[data-reason="lost"] td.count').inner_text() == "1"
    assert totals.locator('tr[data-reason="found"] td.units').inner_text() == "1 pc"
    _shot(page, "adjustments-by-reason")
    page.click("#changelist-filter >> text=Damaged")
    assert page.locator("#result_list tbody tr").count() == 1
    assert page.locator('#reason-totals tr[data-reason="lost"] td.count').inner_text() == "0"
    page.locator("#result_list a.ledger-link").click()
    assert page.locator("#result_list tbody tr").count() == 1
    assert "-2" in page.locator("#result_list tbody tr").inner_text()


def test_transfer_out_in_transit_and_in(page, shop):
    _log_in(page)
    page.goto("/admin/catalog/transfer/add/")
    page.select_option("#id_source", label=str(shop["warehouse"]))
    page.select_option("#id_destination", label=str(shop["store"]))
    page.fill("#id_reference", "TR-7")
    _pick(page, "id_lines-0-item", "HOOD-M")
    page.fill("#id_lines-0-quantity", "4")
    page.click("input[name=_continue]")
    page.wait_for_selector("#ship")
    transfer = Transfer.objects.get(reference="TR-7")
    assert _level(shop["hood"], shop["warehouse"]) == 10  # a draft moves nothing

    page.click("#ship")  # asks first: what leaves, and what is free at the source
    page.wait_for_selector("#confirm-ship")
    assert page.locator('#step-lines tr[data-sku="HOOD-M"] td.quantity').inner_text() == "4 pcs"
    assert page.locator('#step-lines tr[data-sku="HOOD-M"] td.free').inner_text() == "10 pcs"
    assert _level(shop["hood"], shop["warehouse"]) == 10  # nothing moved before the confirmation
    _shot(page, "transfer-ship-confirm")
    page.click("#confirm-ship")
    page.wait_for_selector(".messagelist .success")
    assert "shipped: 4 pcs in transit" in page.locator(".messagelist").inner_text()
    assert page.locator("#transfer-status").inner_text() == "In transit"
    assert _level(shop["hood"], shop["warehouse"]) == 6
    assert _pushed(shop) == 6  # goods on the road sell nowhere
    page.goto("/admin/catalog/transfer/?status__exact=in_transit")
    row = page.locator("#result_list tbody tr", has_text="TR-7")
    assert row.locator("td.field-units").inner_text() == "4 pcs"
    _shot(page, "transfer-in-transit")

    row.locator("th a").click()
    page.click("#receive")  # asks per line, starting at what was shipped
    field = page.locator('#step-lines tr[data-sku="HOOD-M"] input')
    assert field.input_value() == "4"
    field.fill("3")  # one is missing from the box
    _shot(page, "transfer-receive-lines")
    page.click("#confirm-receive")
    page.wait_for_selector(".messagelist .success")
    assert "3 pcs booked into S1; HOOD-M short by 1 pc" in page.locator(".messagelist").inner_text()
    assert page.locator("#transfer-status").inner_text() == "In transit"
    assert page.locator(".field-short").first.inner_text() == "1 pc"  # the difference, recorded on the line
    assert _level(shop["hood"], shop["store"]) == 3
    page.click("#receive")  # the last one turns up
    assert page.locator('#step-lines tr[data-sku="HOOD-M"] input').input_value() == "1"
    page.click("#confirm-receive")
    page.wait_for_selector(".messagelist .success")
    assert page.locator("#transfer-status").inner_text() == "Received"
    assert _level(shop["hood"], shop["store"]) == 4
    assert _pushed(shop) == 10
    moved = Movement.objects.filter(reference=f"transfer:{transfer.pk}")
    assert sorted(moved.values_list("kind", "location__code", "on_hand_delta")) == [
        ("transfer_in", "S1", 1),
        ("transfer_in", "S1", 3),
        ("transfer_out", "W1", -4),
    ]
    _shot(page, "transfer-received")
    assert ledger_reconcile().ok
