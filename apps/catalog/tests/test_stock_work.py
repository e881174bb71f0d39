"""Receipts, adjustments with reasons and transfers: booked through the ledger, visible to channels."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from apps.catalog.errors import InvalidMovement, NegativeStockRefused, StockWorkRefused
from apps.catalog.models import Adjustment, Location, Movement, Receipt, StockLevel, Transfer
from apps.catalog.services.adjustments import adjustment_record
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_close, receipt_create, receipt_receive
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.services.transfers import (
    TransferLineSpec,
    transfer_cancel,
    transfer_create,
    transfer_receive,
    transfer_ship,
)
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.models import SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.tests.factories import channel_selling, listing

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1")
    hood, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    stock(hood, warehouse, 10)
    web = channel_selling("web", [store, warehouse])
    hood_listing = listing(web, product_of("HOOD-M", {hood: 1}), "WEB-HOOD")
    return {"store": store, "warehouse": warehouse, "hood": hood, "cap": cap, "listing": hood_listing}


def level(item, location) -> StockLevel:
    return StockLevel.objects.get(item=item, location=location)


def shown(listing) -> int:
    return listings_availability([listing.pk])[listing.pk].available


def test_partial_receipts_book_the_ledger_and_track_what_is_still_due(world):
    hood, cap, store = world["hood"], world["cap"], world["store"]
    receipt = receipt_create(
        location=store,
        lines=[ReceiptLineSpec(item=hood, expected=12), ReceiptLineSpec(item=cap, expected=5)],
        supplier="Acme Textiles",
        reference="PO-881",
        actor="clerk",
    )
    assert shown(world["listing"]) == 10
    lines = {line.item_id: line for line in receipt.lines.all()}
    first = receipt_receive(
        receipt_id=receipt.pk, quantities={lines[hood.pk].pk: 8, lines[cap.pk].pk: 5}, actor="clerk", submission="a"
    )
    assert first.units == 13 and first.receipt.status == Receipt.Status.PARTIAL
    assert level(hood, store).on_hand == 8 and level(cap, store).on_hand == 5
    rows = Movement.objects.filter(reference=f"receipt:{receipt.pk}")
    assert sorted(rows.values_list("kind", "on_hand_delta")) == [("receipt", 5), ("receipt", 8)]
    assert shown(world["listing"]) == 18  # the channel's quantity rose with the receipt
    assert SyncWork.objects.filter(listing=world["listing"]).exists()
    # The same form sent twice books once.
    again = receipt_receive(
        receipt_id=receipt.pk, quantities={lines[hood.pk].pk: 8, lines[cap.pk].pk: 5}, actor="clerk", submission="a"
    )
    assert again.replayed and level(hood, store).on_hand == 8
    assert [line.due for line in receipt.lines.all()] == [4, 0]
    last = receipt_receive(receipt_id=receipt.pk, quantities={lines[hood.pk].pk: 4}, actor="clerk", submission="b")
    assert last.receipt.status == Receipt.Status.RECEIVED
    with pytest.raises(StockWorkRefused):
        receipt_receive(receipt_id=receipt.pk, quantities={lines[hood.pk].pk: 1}, actor="clerk", submission="c")
    assert ledger_reconcile().ok


def test_receiving_refuses_nothing_negative_and_foreign_lines(world):
    receipt = receipt_create(
        location=world["store"], lines=[ReceiptLineSpec(item=world["hood"], expected=3)], actor="clerk"
    )
    (line,) = receipt.lines.all()
    for quantities in ({line.pk: 0}, {line.pk: -1}, {line.pk + 999: 2}):
        with pytest.raises(InvalidMovement):
            receipt_receive(receipt_id=receipt.pk, quantities=quantities, actor="clerk", submission="x")
    assert not Movement.objects.filter(reference=receipt.ledger_reference).exists()
    assert receipt_close(receipt_id=receipt.pk).status == Receipt.Status.CANCELLED


def test_a_receipt_cannot_go_to_a_supplier_location(world):
    feed = LocationFactory(code="SUP", kind=Location.Kind.SUPPLIER)
    with pytest.raises(StockWorkRefused):
        receipt_create(location=feed, lines=[ReceiptLineSpec(item=world["hood"], expected=1)], actor="clerk")


def test_receipt_lines_hold_their_constraints_in_the_database(world):
    receipt = receipt_create(
        location=world["store"], lines=[ReceiptLineSpec(item=world["hood"], expected=3)], actor="clerk"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        receipt.lines.update(received=-1)


def test_adjustments_carry_their_reason_and_sign(world):
    hood, warehouse = world["hood"], world["warehouse"]
    damaged = adjustment_record(
        location=warehouse, item=hood, quantity=-2, reason="damaged", actor="clerk", idempotency_key="adj-1"
    )
    assert damaged.movement.kind == Movement.Kind.ADJUSTMENT and damaged.movement.on_hand_delta == -2
    assert level(hood, warehouse).on_hand == 8 and shown(world["listing"]) == 8
    # A replay returns the first adjustment.
    assert (
        adjustment_record(
            location=warehouse, item=hood, quantity=-2, reason="damaged", actor="clerk", idempotency_key="adj-1"
        ).pk
        == damaged.pk
    )
    adjustment_record(location=warehouse, item=hood, quantity=1, reason="found", actor="clerk", idempotency_key="a2")
    for quantity, reason in ((3, "lost"), (-1, "found"), (0, "correction"), (1, "stolen")):
        with pytest.raises(InvalidMovement):
            adjustment_record(
                location=warehouse, item=hood, quantity=quantity, reason=reason, actor="c", idempotency_key="bad"
            )
    with pytest.raises(NegativeStockRefused):
        adjustment_record(
            location=warehouse, item=hood, quantity=-100, reason="lost", actor="c", idempotency_key="too-many"
        )
    assert sorted(Adjustment.objects.values_list("reason", "quantity")) == [("damaged", -2), ("found", 1)]
    assert level(hood, warehouse).on_hand == 9
    with pytest.raises(IntegrityError), transaction.atomic():
        Adjustment.objects.filter(pk=damaged.pk).update(quantity=2)  # damaged goods never come in


def test_a_transfer_leaves_the_source_is_in_transit_then_arrives(world):
    hood, warehouse, store = world["hood"], world["warehouse"], world["store"]
    transfer = transfer_create(
        source=warehouse, destination=store, lines=[TransferLineSpec(item=hood, quantity=4)], actor="clerk"
    )
    assert level(hood, warehouse).on_hand == 10  # a draft moves nothing
    transfer_ship(transfer_id=transfer.pk, actor="clerk")
    assert level(hood, warehouse).on_hand == 6
    assert not StockLevel.objects.filter(item=hood, location=store, on_hand__gt=0).exists()
    assert shown(world["listing"]) == 6  # in transit is nowhere to sell from
    with pytest.raises(StockWorkRefused):
        transfer_ship(transfer_id=transfer.pk, actor="clerk")
    done = transfer_receive(transfer_id=transfer.pk, actor="clerk")
    assert done.status == Transfer.Status.RECEIVED and level(hood, store).on_hand == 4
    assert shown(world["listing"]) == 10
    kinds = Movement.objects.filter(reference=f"transfer:{transfer.pk}").values_list(
        "kind", "location__code", "on_hand_delta"
    )
    assert sorted(kinds) == [("transfer_in", "S1", 4), ("transfer_out", "W1", -4)]
    assert ledger_reconcile().ok


def test_shipping_never_takes_reserved_stock(world):
    hood, warehouse = world["hood"], world["warehouse"]
    StockLevel.objects.filter(item=hood, location=warehouse).update(reserved=8)
    transfer = transfer_create(
        source=warehouse, destination=world["store"], lines=[TransferLineSpec(item=hood, quantity=3)], actor="c"
    )
    with pytest.raises(StockWorkRefused) as refused:
        transfer_ship(transfer_id=transfer.pk, actor="clerk")
    assert refused.value.data["lines"] == [{"sku": "HOOD-M", "requested": 3, "free": 2}]
    assert level(hood, warehouse).on_hand == 10
    assert transfer_cancel(transfer_id=transfer.pk).transfer.status == Transfer.Status.CANCELLED


def test_a_transfer_needs_two_places(world):
    with pytest.raises(InvalidMovement):
        transfer_create(
            source=world["store"],
            destination=world["store"],
            lines=[TransferLineSpec(item=world["hood"], quantity=1)],
            actor="c",
        )


@pytest.mark.django_db(transaction=True)
def test_two_clerks_shipping_the_same_transfer_book_it_once():
    """Real threads on their own connections: the transfer lock lets one shipping through."""
    import threading

    from django.db import connection

    warehouse, store = LocationFactory(code="W1"), LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood = ItemFactory(sku="HOOD-M")
    stock(hood, warehouse, 10)
    transfer = transfer_create(
        source=warehouse, destination=store, lines=[TransferLineSpec(item=hood, quantity=4)], actor="c"
    )
    start, outcomes = threading.Barrier(2), []

    def ship(clerk: str) -> None:
        start.wait()
        try:
            transfer_ship(transfer_id=transfer.pk, actor=clerk)
            outcomes.append("shipped")
        except StockWorkRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=ship, args=(name,)) for name in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused", "shipped"]
    assert level(hood, warehouse).on_hand == 6
    assert Movement.objects.filter(reference=transfer.ledger_reference).count() == 1
