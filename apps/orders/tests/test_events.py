from __future__ import annotations

import pytest

from apps.catalog.models import StockLevel
from apps.orders.errors import EventConflict
from apps.orders.models import Order, OrderEvent
from apps.orders.services import event_apply
from apps.orders.tests.factories import stock_invariants

pytestmark = pytest.mark.django_db

LINES = {"lines": [{"sku": "hood", "quantity": 2}]}


def send(shop, type_, sequence, payload=None, external_id="MK-1"):
    return event_apply(
        channel=shop.channel, type=type_, external_id=external_id, sequence=sequence, payload=payload or {}
    )


def test_cancel_before_create_is_parked_then_applied_once(shop):
    cancel = send(shop, "cancel", 2)
    assert cancel.event.status == OrderEvent.Status.PARKED
    assert not Order.objects.exists()
    create = send(shop, "create", 1, LINES)
    assert create.event.status == OrderEvent.Status.APPLIED
    order = Order.objects.get(external_id="MK-1")
    assert order.status == Order.Status.CANCELLED
    assert OrderEvent.objects.get(sequence=2).status == OrderEvent.Status.APPLIED
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).reserved == 0
    assert stock_invariants()["oversold"] == 0


def test_a_resend_is_a_replay_and_another_body_is_refused(shop):
    send(shop, "create", 1, LINES)
    again = send(shop, "create", 1, LINES)
    assert again.replayed and again.event.status == OrderEvent.Status.APPLIED
    assert Order.objects.count() == 1
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).reserved == 2
    with pytest.raises(EventConflict):
        send(shop, "create", 1, {"lines": [{"sku": "hood", "quantity": 3}]})


def test_fulfil_then_return_out_of_order(shop):
    send(shop, "return", 3)
    send(shop, "fulfil", 2)
    assert OrderEvent.objects.filter(status=OrderEvent.Status.PARKED).count() == 2
    send(shop, "create", 1, LINES)
    assert Order.objects.get().status == Order.Status.RETURNED
    assert set(OrderEvent.objects.values_list("status", flat=True)) == {OrderEvent.Status.APPLIED}
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).on_hand == 10


def test_an_event_that_can_never_apply_is_rejected_with_its_reason(shop):
    send(shop, "create", 1, LINES)
    send(shop, "cancel", 2)
    fulfil = send(shop, "fulfil", 3)
    assert fulfil.event.status == OrderEvent.Status.REJECTED
    assert "cancelled" in fulfil.event.detail
    duplicate_create = send(shop, "create", 4, LINES)
    assert duplicate_create.event.status == OrderEvent.Status.REJECTED


def test_imported_create_event_short_of_stock_is_recorded_as_an_oversell(shop):
    send(shop, "create", 1, {"lines": [{"sku": "hood", "quantity": 20}]})
    order = Order.objects.get()
    assert order.mode == Order.Mode.IMPORT and order.flagged
    assert order.lines.get().unallocated_quantity == 5
