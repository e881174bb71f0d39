"""Cancelling a transfer in transit in a real browser: returned to the source, or lost and written off.

Each test checks the ledger rows of the transfer and the quantity the channel (a simulator on
loopback) is sent afterwards. Screenshot: var/screenshots/transfer_cancel_in_transit.png.
"""

from __future__ import annotations

import pytest

from apps.catalog.models import Adjustment, Movement, Transfer
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.services.transfers import TransferLineSpec, transfer_create, transfer_ship
from apps.channels.tests.conftest import clean_sync_redis, fast_sync, simulator
from tests.browser.catalog.test_stock_work_browser import _level, _log_in, _pushed, _shot, shop

__all__ = ["clean_sync_redis", "fast_sync", "shop", "simulator"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _on_the_road(shop, reference: str, quantity: int) -> Transfer:
    transfer = transfer_create(
        source=shop["warehouse"],
        destination=shop["store"],
        lines=[TransferLineSpec(item=shop["hood"], quantity=quantity)],
        actor="merchant",
        reference=reference,
    )
    return transfer_ship(transfer_id=transfer.pk, actor="merchant")


def _cancel(page, transfer: Transfer, outcome: str, shot: str = "") -> None:
    page.goto(f"/admin/catalog/transfer/{transfer.pk}/change/")
    page.click("#cancel-in-transit")
    page.wait_for_url(f"**/transfer/{transfer.pk}/step/cancel/")
    assert page.locator('#in-transit-lines tr[data-sku="HOOD-M"] td.in-transit').inner_text() == (
        f"{sum(line.quantity for line in transfer.lines.all())} pcs"
    )
    page.click("#confirm-cancel")  # no choice yet: the browser asks for one, nothing is sent
    assert page.url.endswith("/step/cancel/") and Transfer.objects.get(pk=transfer.pk).status == "in_transit"
    page.check(f"input[name=outcome][value={outcome}]")
    if shot:
        _shot(page, shot)
    page.click("#confirm-cancel")
    page.wait_for_selector(".messagelist .success")
    assert page.locator("#transfer-status").inner_text() == "Cancelled"


def test_a_transfer_cancelled_in_transit_comes_back_to_the_source(page, shop):
    transfer = _on_the_road(shop, "TR-9", 4)
    assert _level(shop["hood"], shop["warehouse"]) == 6
    assert _pushed(shop) == 6  # on the road, sold nowhere
    _log_in(page)
    _cancel(page, transfer, "returned", shot="transfer_cancel_in_transit")
    assert f"{transfer} cancelled: 4 pcs booked back into W1." in page.locator(".messagelist").inner_text()
    assert page.locator("#transfer-cancel-outcome").inner_text() == "returned to source"
    assert page.locator("#cancel-in-transit").count() == 0

    assert _level(shop["hood"], shop["warehouse"]) == 10
    assert _pushed(shop) == 10  # back on sale
    page.click("a.ledger-link")
    page.wait_for_url("**/catalog/movement/?reference__exact=*")
    assert page.locator("#result_list tbody tr").count() == 2
    rows = Movement.objects.filter(reference=transfer.ledger_reference).order_by("id")
    assert [(m.kind, m.location.code, m.on_hand_delta) for m in rows] == [
        ("transfer_out", "W1", -4),
        ("transfer_cancel", "W1", 4),
    ]
    assert ledger_reconcile().ok


def test_a_transfer_lost_in_transit_is_written_off_and_reported_as_lost(page, shop):
    transfer = _on_the_road(shop, "TR-10", 3)
    _log_in(page)
    _cancel(page, transfer, "lost")
    assert f"{transfer} cancelled: 3 pcs written off as lost at W1." in page.locator(".messagelist").inner_text()
    assert _level(shop["hood"], shop["warehouse"]) == 7
    assert _pushed(shop) == 7  # gone for good: the channel keeps selling only what is left

    # Reported with the other adjustments, under "lost", linked to the transfer's ledger rows.
    page.goto("/admin/catalog/adjustment/")
    totals = page.locator("#reason-totals")
    assert totals.locator('tr[data-reason="lost"] td.units').inner_text() == "-3 pcs"
    assert totals.locator('tr[data-reason="lost"] td.count').inner_text() == "1"
    page.locator("#result_list a.ledger-link").click()
    page.wait_for_url("**/catalog/movement/?reference__exact=*")
    assert page.locator("#result_list tbody tr").count() == 3
    rows = Movement.objects.filter(reference=transfer.ledger_reference).order_by("id")
    assert [(m.kind, m.location.code, m.on_hand_delta) for m in rows] == [
        ("transfer_out", "W1", -3),
        ("transfer_cancel", "W1", 3),
        ("adjustment", "W1", -3),
    ]
    assert Adjustment.objects.get().movement.reference == transfer.ledger_reference
    assert ledger_reconcile().ok
