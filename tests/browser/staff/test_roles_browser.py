"""A store's staff in a real browser: their own stock only, a delivery received at their store.

The receipt is booked through the pages; the test then checks the ledger rows it booked and the
quantity the channel (a simulator on loopback) is sent. The screenshot lands in var/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from apps.catalog.models import Location, Movement, Receipt, StockLevel
from apps.catalog.services.access import user_locations_set
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.services.config import listings_sync_now
from apps.channels.services.push import channel_push
from apps.channels.tests.conftest import clean_sync_redis, fast_sync, simulator
from apps.channels.tests.factories import channel_selling, listing
from apps.staff.roles import STORE_STAFF

__all__ = ["clean_sync_redis", "fast_sync", "simulator"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def shop(transactional_db, django_user_model, simulator, stockroom_knobs):
    """Two stores and a warehouse selling hoodies on a webshop; Alice works at High Street (S1) only."""
    stockroom_knobs(SYNC_TIER2_DELAY_S="0")  # push manual changes as soon as the test asks
    high_street = LocationFactory(code="S1", name="High Street", kind=Location.Kind.STORE)
    harbour = LocationFactory(code="S2", name="Harbour", kind=Location.Kind.STORE)
    LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie, medium")
    cap = ItemFactory(sku="CAP-RED", name="Cap, red")
    stock(hood, high_street, 3)
    stock(hood, harbour, 6)
    stock(cap, high_street, 2)
    stock(cap, harbour, 4)
    receipt_create(location=harbour, lines=[ReceiptLineSpec(hood, 9)], actor="boss", reference="PO-HARBOUR")
    sim = simulator(secret="s3cret")
    web = channel_selling("web", [high_street, harbour], push_url=sim.url, secret="s3cret")
    listings_sync_now(listing_ids=[listing(web, product_of("HOOD-M", {hood: 1}), "WEB-HOOD").pk])
    channel_push(channel_id=web.pk)
    assert sim.shown("WEB-HOOD") == 9
    alice = django_user_model.objects.create_user(username="alice", password="pw-alice-1", is_staff=True)
    alice.groups.add(Group.objects.get(name=STORE_STAFF))
    user_locations_set(user=alice, locations=[high_street])
    return {"s1": high_street, "s2": harbour, "hood": hood, "sim": sim, "web": web}


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _pick(page, field_id: str, text: str) -> None:
    """Choose in an autocomplete (select2) field by typing part of the name."""
    page.click(f"#{field_id} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.click(f".select2-results__option:has-text('{text}')")


def test_store_staff_see_their_own_stock_and_receive_a_delivery_at_their_store(page, shop):
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")

    # Stock: High Street's only, and the location filter offers nothing else.
    page.goto("/admin/catalog/stocklevel/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert set(rows.locator("td.field-location").all_inner_texts()) == {"S1 (Store)"}
    assert "S2" not in page.locator("#result_list").inner_text()
    assert "Harbour" not in page.locator("#changelist-filter").inner_text()
    _shot(page, "store_staff_stock")

    # Harbour's expected delivery is not theirs to see.
    page.goto("/admin/catalog/receipt/")
    assert "PO-HARBOUR" not in page.locator("#content").inner_text()

    # A delivery announced and received at their store; the other store is no choice.
    page.goto("/admin/catalog/receipt/add/")
    options = page.locator("#id_location option").all_inner_texts()
    assert [text for text in options if text.strip("-")] == ["S1 (Store)"]
    page.select_option("#id_location", label="S1 (Store)")
    page.fill("#id_supplier", "Acme Textiles")
    page.fill("#id_reference", "PO-HIGH")
    _pick(page, "id_lines-0-item", "HOOD-M")
    page.fill("#id_lines-0-expected", "5")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    receipt = Receipt.objects.get(reference="PO-HIGH")
    row = page.locator("#result_list tbody tr", has_text="PO-HIGH")
    row.locator("a.receive-link").click()
    page.wait_for_url(f"**/receipt/{receipt.pk}/receive/")
    page.click("input[name=receive]")
    page.wait_for_selector(".messagelist .success")
    assert "Received 5 pcs; the receipt is now received." in page.locator(".messagelist").inner_text()

    # The ledger has the receipt at S1 by Alice; the channel is told the higher quantity.
    booked = Movement.objects.filter(reference=f"receipt:{receipt.pk}")
    assert list(booked.values_list("location__code", "item__sku", "on_hand_delta", "actor")) == [
        ("S1", "HOOD-M", 5, "alice")
    ]
    assert StockLevel.objects.get(item=shop["hood"], location=shop["s1"]).on_hand == 8
    assert StockLevel.objects.get(item=shop["hood"], location=shop["s2"]).on_hand == 6
    channel_push(channel_id=shop["web"].pk)
    assert shop["sim"].shown("WEB-HOOD") == 14
    assert ledger_reconcile().ok

    # Harbour's delivery, asked for by address, is refused.
    harbour = Receipt.objects.get(reference="PO-HARBOUR")
    answer = page.goto(f"/admin/catalog/receipt/{harbour.pk}/receive/")
    assert answer is not None and answer.status == 403
    assert Receipt.objects.get(pk=harbour.pk).status == Receipt.Status.EXPECTED
