"""Receiving more than is still due: refused until confirmed, then booked as counted and shown as over-delivered."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.catalog.errors import OverDeliveryUnconfirmed
from apps.catalog.models import Location, Movement, Receipt, ReceiptLine, StockLevel
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create, receipt_receive
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of
from apps.channels.selectors import listings_availability
from apps.channels.tests.factories import channel_selling, listing

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery():
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    web = channel_selling("web", [store])
    hood_listing = listing(web, product_of("HOOD-M", {hood: 1}), "WEB-HOOD")
    receipt = receipt_create(
        location=store,
        lines=[ReceiptLineSpec(item=hood, expected=10), ReceiptLineSpec(item=cap, expected=4)],
        reference="PO-900",
        actor="clerk",
    )
    lines = {line.item.sku: line for line in receipt.lines.select_related("item")}
    return {"store": store, "hood": hood, "cap": cap, "receipt": receipt, "lines": lines, "listing": hood_listing}


def on_hand(item, location) -> int:
    level = StockLevel.objects.filter(item=item, location=location).first()
    return level.on_hand if level else 0


def shown(hood_listing) -> int:
    return listings_availability([hood_listing.pk])[hood_listing.pk].available


def test_more_than_due_is_refused_unconfirmed_and_books_nothing(delivery):
    hood_line, cap_line = delivery["lines"]["HOOD-M"], delivery["lines"]["CAP"]
    with pytest.raises(OverDeliveryUnconfirmed) as refused:
        receipt_receive(
            receipt_id=delivery["receipt"].pk,
            quantities={hood_line.pk: 13, cap_line.pk: 4},
            actor="clerk",
            submission="s1",
        )
    assert refused.value.data["lines"] == [{"line": hood_line.pk, "sku": "HOOD-M", "due": 10, "arrived": 13, "over": 3}]
    assert "HOOD-M: 13 arrived, 10 due" in refused.value.detail
    assert not Movement.objects.filter(reference=delivery["receipt"].ledger_reference).exists()
    assert Receipt.objects.get(pk=delivery["receipt"].pk).status == Receipt.Status.EXPECTED
    # Confirming less than the excess is not confirming it.
    with pytest.raises(OverDeliveryUnconfirmed):
        receipt_receive(
            receipt_id=delivery["receipt"].pk,
            quantities={hood_line.pk: 13},
            actor="clerk",
            submission="s1",
            over_confirmed={hood_line.pk: 2},
        )


def test_confirmed_over_delivery_is_booked_as_counted_and_replays_once(delivery):
    hood_line, cap_line = delivery["lines"]["HOOD-M"], delivery["lines"]["CAP"]
    args = {
        "receipt_id": delivery["receipt"].pk,
        "quantities": {hood_line.pk: 13, cap_line.pk: 4},
        "actor": "clerk",
        "submission": "s1",
        "over_confirmed": {hood_line.pk: 3},
    }
    result = receipt_receive(**args)
    assert (result.units, result.over_delivered, result.replayed) == (17, 3, False)
    assert result.receipt.status == Receipt.Status.RECEIVED
    assert on_hand(delivery["hood"], delivery["store"]) == 13
    assert shown(delivery["listing"]) == 13  # the channel sells what really arrived
    line = ReceiptLine.objects.get(pk=hood_line.pk)
    assert (line.received, line.due, line.over_delivered) == (13, 0, 3)
    # The same confirmed form sent again (a double click) books nothing twice.
    assert receipt_receive(**args).replayed
    assert on_hand(delivery["hood"], delivery["store"]) == 13
    rows = Movement.objects.filter(reference=delivery["receipt"].ledger_reference)
    assert sorted(rows.values_list("item__sku", "on_hand_delta")) == [("CAP", 4), ("HOOD-M", 13)]
    assert ledger_reconcile().ok


def test_the_excess_is_measured_against_what_is_due_under_the_lock(delivery):
    """A colleague booked part of the line after the warning: the confirmed excess no longer covers it."""
    hood_line = delivery["lines"]["HOOD-M"]
    receipt_receive(receipt_id=delivery["receipt"].pk, quantities={hood_line.pk: 8}, actor="ann", submission="a")
    with pytest.raises(OverDeliveryUnconfirmed) as refused:
        receipt_receive(
            receipt_id=delivery["receipt"].pk,
            quantities={hood_line.pk: 5},
            actor="bob",
            submission="b",
            over_confirmed={hood_line.pk: 1},  # what bob saw before ann's 8 were booked... but due is now 2
        )
    assert refused.value.data["lines"][0]["over"] == 3
    assert on_hand(delivery["hood"], delivery["store"]) == 8
    exactly_due = receipt_receive(
        receipt_id=delivery["receipt"].pk, quantities={hood_line.pk: 2}, actor="bob", submission="c"
    )
    assert exactly_due.over_delivered == 0 and on_hand(delivery["hood"], delivery["store"]) == 10


# --- The receiving page --------------------------------------------------------------------------


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


def test_the_receiving_page_warns_and_asks_to_confirm_before_booking(delivery, merchant):
    receipt, hood_line, cap_line = delivery["receipt"], delivery["lines"]["HOOD-M"], delivery["lines"]["CAP"]
    url = reverse("admin:catalog_receipt_receive", args=[receipt.pk])
    form = {"submission": "k1", f"line-{hood_line.pk}": "12", f"line-{cap_line.pk}": "4", "note": "van 2"}
    warned = merchant.post(url, form)
    assert warned.status_code == 200  # the page again, nothing booked
    html = warned.content.decode()
    assert "More arrived than is still due" in html and "2 more than still due (10)" in html
    assert 'name="confirm_over"' in html and f'name="over-{hood_line.pk}" value="2"' in html
    assert 'value="k1"' in html and 'value="12"' in html and 'value="van 2"' in html  # the same submission
    assert on_hand(delivery["hood"], delivery["store"]) == 0
    # Sent again without ticking the box: still only the warning.
    assert merchant.post(url, {**form, "over-" + str(hood_line.pk): "2"}).status_code == 200
    assert not Movement.objects.filter(reference=receipt.ledger_reference).exists()

    booked = merchant.post(url, {**form, f"over-{hood_line.pk}": "2", "confirm_over": "1"})
    assert booked.status_code == 302
    assert on_hand(delivery["hood"], delivery["store"]) == 12
    messages = [str(m) for m in booked.wsgi_request._messages]
    assert messages == ["Received 16 pcs (2 pcs more than was due); the receipt is now received."]
    # A second click on the confirmed form books nothing twice.
    again = merchant.post(url, {**form, f"over-{hood_line.pk}": "2", "confirm_over": "1"})
    assert again.status_code == 302 and on_hand(delivery["hood"], delivery["store"]) == 12
    change = merchant.get(reverse("admin:catalog_receipt_change", args=[receipt.pk])).content.decode()
    assert "over-delivered by 2" in change


def test_quantities_within_what_is_due_book_at_once(delivery, merchant):
    receipt, hood_line = delivery["receipt"], delivery["lines"]["HOOD-M"]
    url = reverse("admin:catalog_receipt_receive", args=[receipt.pk])
    response = merchant.post(url, {"submission": "k2", f"line-{hood_line.pk}": "10"})
    assert response.status_code == 302
    assert on_hand(delivery["hood"], delivery["store"]) == 10
    page = merchant.get(url).content.decode()  # still open: the cap is due
    assert "over-delivered by" not in page and "More arrived" not in page
