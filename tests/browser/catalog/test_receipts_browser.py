"""Receiving an over-delivery in a real browser: warned while typing, confirmed, booked, shown as over-delivered.

Afterwards the ledger holds what arrived and the channel (a simulator on loopback) is sent the new
quantity. Screenshot: var/screenshots/receipt_over_delivery.png.
"""

from __future__ import annotations

import pytest

from apps.catalog.models import Movement, Receipt
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.catalog.services.reconcile import ledger_reconcile
from apps.channels.tests.conftest import clean_sync_redis, fast_sync, simulator
from tests.browser.catalog.test_stock_work_browser import _level, _log_in, _pushed, _shot, shop

__all__ = ["clean_sync_redis", "fast_sync", "shop", "simulator"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_over_delivery_is_warned_confirmed_and_booked(page, shop):
    receipt = receipt_create(
        location=shop["warehouse"],
        lines=[ReceiptLineSpec(item=shop["hood"], expected=6), ReceiptLineSpec(item=shop["cap"], expected=3)],
        supplier="Acme Textiles",
        reference="PO-912",
        actor="merchant",
    )
    _log_in(page)
    page.goto(f"/admin/catalog/receipt/{receipt.pk}/receive/")
    hood_row = page.locator('tr[data-sku="HOOD-M"]')
    warning = hood_row.locator(".over-warning")
    assert warning.is_hidden()
    hood_row.locator("input[type=number]").fill("9")  # the supplier sent three hoodies more
    assert warning.inner_text() == "3 more than still due (6)"  # warned while typing
    page.click("input[name=receive]")

    # The server books nothing yet: the page comes back with the lines to confirm.
    page.wait_for_selector("#over-confirm")
    assert "HOOD-M: 9 arrived, 6 still due: 3 over" in page.locator("#over-confirm").inner_text()
    assert hood_row.locator(".over-warning").inner_text() == "3 more than still due (6)"
    assert not Movement.objects.filter(reference=receipt.ledger_reference).exists()
    assert _level(shop["hood"], shop["warehouse"]) == 10
    _shot(page, "receipt_over_delivery")

    page.click("input[name=receive]")  # without ticking the box: asked again
    page.wait_for_selector("#over-confirm")
    assert not Movement.objects.filter(reference=receipt.ledger_reference).exists()
    page.check("#id_confirm_over")
    page.click("input[name=receive]")
    page.wait_for_selector(".messagelist .success")
    assert (
        "Received 12 pcs (3 pcs more than was due); the receipt is now received."
        in page.locator(".messagelist").inner_text()
    )
    assert "over-delivered by 3" in page.locator(".field-due", has_text="over-delivered").first.inner_text()
    assert Receipt.objects.get(pk=receipt.pk).status == Receipt.Status.RECEIVED

    rows = Movement.objects.filter(reference=receipt.ledger_reference).order_by("id")
    assert [(m.item.sku, m.location.code, m.on_hand_delta, m.actor) for m in rows] == [
        ("HOOD-M", "W1", 9, "merchant"),
        ("CAP-RED", "W1", 3, "merchant"),
    ]
    assert _level(shop["hood"], shop["warehouse"]) == 19
    assert _pushed(shop) == 19  # the channel sells what really arrived
    assert ledger_reconcile().ok
