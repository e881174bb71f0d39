"""Transfers received in parts and cancelled in transit: returned to the source or written off as lost."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from apps.catalog.errors import InvalidMovement, StockWorkRefused
from apps.catalog.models import Adjustment, Location, Movement, StockLevel, Transfer, TransferLine
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.services.transfers import (
    TransferLineSpec,
    transfer_cancel,
    transfer_create,
    transfer_receive,
    transfer_ship,
)
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.selectors import listings_availability
from apps.channels.tests.factories import channel_selling, listing

pytestmark = pytest.mark.django_db


@pytest.fixture
def road():
    """10 hoodies and 6 caps at the warehouse; a webshop sells hoodies from the warehouse and the store."""
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1")
    hood, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 6)
    web = channel_selling("web", [store, warehouse])
    hood_listing = listing(web, product_of("HOOD-M", {hood: 1}), "WEB-HOOD")
    return {"store": store, "warehouse": warehouse, "hood": hood, "cap": cap, "listing": hood_listing}


def shipped(road, hood: int = 4, cap: int = 2) -> Transfer:
    transfer = transfer_create(
        source=road["warehouse"],
        destination=road["store"],
        lines=[TransferLineSpec(item=road["hood"], quantity=hood), TransferLineSpec(item=road["cap"], quantity=cap)],
        actor="clerk",
        reference="TR-1",
    )
    return transfer_ship(transfer_id=transfer.pk, actor="clerk")


def on_hand(item, location) -> int:
    level = StockLevel.objects.filter(item=item, location=location).first()
    return level.on_hand if level else 0


def shown(hood_listing) -> int:
    return listings_availability([hood_listing.pk])[hood_listing.pk].available


def lines_of(transfer: Transfer) -> dict[str, TransferLine]:
    return {line.item.sku: line for line in transfer.lines.select_related("item")}


def moved(transfer: Transfer) -> list[tuple[str, str, str, int]]:
    rows = Movement.objects.filter(reference=transfer.ledger_reference)
    return sorted(rows.values_list("kind", "location__code", "item__sku", "on_hand_delta"))


def test_cancelled_in_transit_and_returned_books_the_goods_back_into_the_source(road):
    transfer = shipped(road)
    assert on_hand(road["hood"], road["warehouse"]) == 6 and shown(road["listing"]) == 6
    result = transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="returned")
    assert (result.units, result.replayed) == (6, False)
    transfer.refresh_from_db()
    assert (transfer.status, transfer.cancel_outcome, transfer.cancelled_by) == ("cancelled", "returned", "clerk")
    assert transfer.cancelled_at is not None
    assert on_hand(road["hood"], road["warehouse"]) == 10 and on_hand(road["cap"], road["warehouse"]) == 6
    assert on_hand(road["hood"], road["store"]) == 0
    assert shown(road["listing"]) == 10  # back on sale from the warehouse
    assert moved(transfer) == [
        ("transfer_cancel", "W1", "CAP", 2),
        ("transfer_cancel", "W1", "HOOD-M", 4),
        ("transfer_out", "W1", "CAP", -2),
        ("transfer_out", "W1", "HOOD-M", -4),
    ]
    assert not Adjustment.objects.exists()
    assert ledger_reconcile().ok


def test_cancelled_as_lost_is_written_off_at_the_source_as_a_lost_adjustment(road):
    transfer = shipped(road)
    result = transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="lost")
    assert result.units == 6
    assert on_hand(road["hood"], road["warehouse"]) == 6 and shown(road["listing"]) == 6  # gone for good
    assert moved(transfer) == [
        ("adjustment", "W1", "CAP", -2),
        ("adjustment", "W1", "HOOD-M", -4),
        ("transfer_cancel", "W1", "CAP", 2),
        ("transfer_cancel", "W1", "HOOD-M", 4),
        ("transfer_out", "W1", "CAP", -2),
        ("transfer_out", "W1", "HOOD-M", -4),
    ]
    # Reported with the other adjustments, under its reason, each linked to its ledger row of this transfer.
    lost = Adjustment.objects.select_related("movement", "item").order_by("item__sku")
    assert [(a.reason, a.item.sku, a.location.code, a.quantity, a.actor) for a in lost] == [
        ("lost", "CAP", "W1", -2, "clerk"),
        ("lost", "HOOD-M", "W1", -4, "clerk"),
    ]
    assert {a.movement.reference for a in lost} == {transfer.ledger_reference}
    assert ledger_reconcile().ok


def test_cancelling_again_books_nothing_twice_and_another_outcome_is_refused(road):
    transfer = shipped(road)
    transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="lost")
    again = transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="lost")
    assert (again.units, again.replayed) == (0, True)
    with pytest.raises(StockWorkRefused, match="lost in transit"):
        transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="returned")
    assert Adjustment.objects.count() == 2 and len(moved(transfer)) == 6
    assert on_hand(road["hood"], road["warehouse"]) == 6


def test_part_received_cancel_settles_only_the_remainder(road):
    transfer = shipped(road)
    lines = lines_of(transfer)
    transfer_receive(transfer_id=transfer.pk, actor="clerk", quantities={lines["HOOD-M"].pk: 3}, submission="box-1")
    # The same part sent twice books once.
    transfer_receive(transfer_id=transfer.pk, actor="clerk", quantities={lines["HOOD-M"].pk: 3}, submission="box-1")
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.IN_TRANSIT
    assert on_hand(road["hood"], road["store"]) == 3 and shown(road["listing"]) == 9
    now = lines_of(transfer)
    assert (now["HOOD-M"].received, now["HOOD-M"].in_transit, now["CAP"].in_transit) == (3, 1, 2)

    result = transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="returned")
    assert result.units == 3  # 1 hoodie and 2 caps; the 3 hoodies that arrived stay at the store
    assert on_hand(road["hood"], road["warehouse"]) == 7 and on_hand(road["hood"], road["store"]) == 3
    assert on_hand(road["cap"], road["warehouse"]) == 6
    assert shown(road["listing"]) == 10
    assert ledger_reconcile().ok


def test_a_part_receiving_never_takes_more_than_is_in_transit(road):
    transfer = shipped(road)
    lines = lines_of(transfer)
    for quantities in ({lines["HOOD-M"].pk: 5}, {lines["HOOD-M"].pk: 0}, {lines["HOOD-M"].pk + 999: 1}):
        with pytest.raises(InvalidMovement):
            transfer_receive(transfer_id=transfer.pk, actor="clerk", quantities=quantities, submission="x")
    transfer_receive(transfer_id=transfer.pk, actor="clerk", quantities={lines["CAP"].pk: 2}, submission="a")
    done = transfer_receive(transfer_id=transfer.pk, actor="clerk")  # the rest arrives
    assert done.status == Transfer.Status.RECEIVED
    assert on_hand(road["hood"], road["store"]) == 4 and on_hand(road["cap"], road["store"]) == 2
    with pytest.raises(StockWorkRefused):
        transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome="returned")
    with pytest.raises(IntegrityError), transaction.atomic():
        TransferLine.objects.filter(transfer=transfer).update(received=5)  # more than shipped
    assert ledger_reconcile().ok


def test_a_draft_is_cancelled_without_an_outcome_and_goods_in_transit_need_one(road):
    draft = transfer_create(
        source=road["warehouse"],
        destination=road["store"],
        lines=[TransferLineSpec(item=road["hood"], quantity=1)],
        actor="clerk",
    )
    with pytest.raises(InvalidMovement):
        transfer_cancel(transfer_id=draft.pk, actor="clerk", outcome="lost")
    assert transfer_cancel(transfer_id=draft.pk, actor="clerk").transfer.cancel_outcome == ""
    transfer = shipped(road)
    for outcome in ("", "stolen"):
        with pytest.raises(InvalidMovement):
            transfer_cancel(transfer_id=transfer.pk, actor="clerk", outcome=outcome)
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.IN_TRANSIT
    with pytest.raises(IntegrityError), transaction.atomic():
        Transfer.objects.filter(pk=draft.pk).update(cancel_outcome="lost")  # a draft had nothing on the road


@pytest.mark.django_db(transaction=True)
def test_receiving_and_cancelling_at_once_settle_the_goods_once():
    """Real threads on their own connections: the transfer lock lets one through, the other sees its result."""
    warehouse, store = LocationFactory(code="W1"), LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood = ItemFactory(sku="HOOD-M")
    stock(hood, warehouse, 10)
    transfer = transfer_create(
        source=warehouse, destination=store, lines=[TransferLineSpec(item=hood, quantity=4)], actor="c"
    )
    transfer_ship(transfer_id=transfer.pk, actor="c")
    start, outcomes = threading.Barrier(2), []

    def run(step) -> None:
        start.wait()
        try:
            step()
            outcomes.append("done")
        except StockWorkRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: transfer_receive(transfer_id=transfer.pk, actor="ann"),)),
        threading.Thread(
            target=run, args=(lambda: transfer_cancel(transfer_id=transfer.pk, actor="bob", outcome="returned"),)
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["done", "refused"]
    assert on_hand(hood, warehouse) + on_hand(hood, store) == 10  # the 4 units landed in one place, once
    assert ledger_reconcile().ok


# --- The admin's confirmation page ---------------------------------------------------------------


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


def test_the_admin_asks_what_became_of_the_goods_before_cancelling(road, merchant):
    transfer = shipped(road)
    change = merchant.get(reverse("admin:catalog_transfer_change", args=[transfer.pk])).content.decode()
    url = reverse("admin:catalog_transfer_step", args=[transfer.pk, "cancel"])
    assert f'href="{url}"' in change and "Cancel in transit" in change
    page = merchant.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and 'id="units-in-transit">6 pcs<' in html
    assert "Returned to source" in html and "Lost in transit" in html
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.IN_TRANSIT  # a GET changes nothing

    unchosen = merchant.post(url, {})
    assert unchosen.status_code == 200
    assert "Choose whether the goods came back or were lost." in unchosen.content.decode()
    done = merchant.post(url, {"outcome": "lost"})
    assert done.status_code == 302
    assert [str(m) for m in done.wsgi_request._messages] == [f"{transfer} cancelled: 6 pcs written off as lost at W1."]
    assert Adjustment.objects.filter(reason="lost").count() == 2
    again = merchant.post(url, {"outcome": "lost"})  # the page sent twice
    assert again.status_code == 302 and Adjustment.objects.filter(reason="lost").count() == 2
    shown_after = merchant.get(reverse("admin:catalog_transfer_change", args=[transfer.pk])).content.decode()
    assert 'id="transfer-cancel-outcome">lost in transit<' in shown_after
    assert merchant.get("/admin/catalog/adjustment/?reason__exact=lost").status_code == 200


def test_shipping_asks_first_and_receiving_asks_each_line(road, merchant):
    draft = transfer_create(
        source=road["warehouse"],
        destination=road["store"],
        lines=[TransferLineSpec(item=road["hood"], quantity=4), TransferLineSpec(item=road["cap"], quantity=2)],
        actor="clerk",
    )
    ship = reverse("admin:catalog_transfer_step", args=[draft.pk, "ship"])
    asked = merchant.get(ship).content.decode()
    assert 'id="confirm-ship"' in asked and "book 6 pcs out of W1" in asked
    assert merchant.post(ship, {}).status_code == 200  # a bare POST (an old page's button) only asks
    assert Transfer.objects.get(pk=draft.pk).status == Transfer.Status.DRAFT
    assert merchant.post(ship, {"confirm": "1"}).status_code == 302
    assert Transfer.objects.get(pk=draft.pk).status == Transfer.Status.IN_TRANSIT

    receive = reverse("admin:catalog_transfer_step", args=[draft.pk, "receive"])
    form = merchant.get(receive).content.decode()
    hood_line, cap_line = draft.lines.order_by("item__sku").reverse()
    assert f'name="line-{hood_line.pk}" value="4"' in form and f'name="line-{cap_line.pk}" value="2"' in form
    too_many = merchant.post(receive, {"confirm": "1", "submission": "k1", f"line-{hood_line.pk}": "5"})
    assert too_many.status_code == 200 and "at most 4 pcs is in transit" in too_many.content.decode()
    body = {"confirm": "1", "submission": "k2", f"line-{hood_line.pk}": "3", f"line-{cap_line.pk}": "2"}
    done = merchant.post(receive, body)
    assert [str(m) for m in done.wsgi_request._messages] == [
        f"{draft}: 5 pcs booked into S1; HOOD-M short by 1 pc "
        "(still in transit: receive it when it comes, or cancel in transit as returned or lost)."
    ]
    again = merchant.post(receive, body)  # sent twice: booked once
    assert [str(m) for m in again.wsgi_request._messages][-1] == (
        "This receiving was already booked; nothing was booked twice."
    )
    assert StockLevel.objects.get(item=road["hood"], location=road["store"]).on_hand == 3
    hood_line.refresh_from_db()
    assert (hood_line.received, hood_line.in_transit) == (3, 1)
    assert Transfer.objects.get(pk=draft.pk).status == Transfer.Status.IN_TRANSIT
