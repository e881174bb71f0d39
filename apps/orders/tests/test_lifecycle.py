from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import Incident, Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.orders.errors import InsufficientStock, InvalidOrderState, InvalidQuantity, UnknownSku
from apps.orders.models import Order, Reservation
from apps.orders.services import (
    LineRequest,
    hold_release_expired,
    order_cancel,
    order_confirm,
    order_fulfil,
    order_import,
    order_line_exchange,
    order_reserve,
    order_return,
    order_supplier_refused,
)
from apps.orders.tasks import holds_release_expired
from apps.orders.tests.factories import stock_invariants

pytestmark = pytest.mark.django_db


def counters(item, location) -> tuple[int, int]:
    level = StockLevel.objects.get(item=item, location=location)
    return level.on_hand, level.reserved


def test_confirm_stops_the_hold_from_lapsing(shop):
    order = order_reserve(channel=shop.channel, external_id="C1", lines=[LineRequest("hood", 2)]).order
    state = order_confirm(order_id=order.pk)
    assert (state.order.status, state.order.expires_at) == (Order.Status.CONFIRMED, None)
    assert order_confirm(order_id=order.pk).order.status == Order.Status.CONFIRMED  # twice is harmless


def test_partial_then_full_fulfilment_takes_stock_off_the_shelf(shop):
    order = order_reserve(
        channel=shop.channel, external_id="F1", lines=[LineRequest("hood", 3), LineRequest("kit", 2)]
    ).order
    state = order_fulfil(order_id=order.pk, lines=[LineRequest("hood", 1)])
    assert state.order.status == Order.Status.PARTIALLY_FULFILLED
    assert counters(shop.hood, shop.warehouse) == (9, 4)  # 1 shipped; 2 hoods + 2 kit hoods still held
    with pytest.raises(InvalidQuantity) as err:
        order_fulfil(order_id=order.pk, lines=[LineRequest("hood", 3)])
    assert err.value.data["lines"] == [{"sku": "hood", "requested": 3, "available": 2}]
    state = order_fulfil(order_id=order.pk)
    assert state.order.status == Order.Status.FULFILLED
    assert [line.fulfilled_quantity for line in state.lines] == [3, 2]
    assert counters(shop.hood, shop.warehouse) == (5, 0)
    assert counters(shop.cap, shop.warehouse) == (6, 0)
    assert stock_invariants()["oversold"] == 0


def test_cancel_gives_stock_back_and_cannot_cancel_a_shipped_order(shop):
    order = order_reserve(channel=shop.channel, external_id="X1", lines=[LineRequest("kit", 6)]).order
    assert order_cancel(order_id=order.pk).order.status == Order.Status.CANCELLED
    assert counters(shop.hood, shop.store) == (5, 0)
    assert order_cancel(order_id=order.pk).order.status == Order.Status.CANCELLED
    shipped = order_reserve(channel=shop.channel, external_id="X2", lines=[LineRequest("hood", 1)]).order
    order_fulfil(order_id=shipped.pk)
    with pytest.raises(InvalidOrderState):
        order_cancel(order_id=shipped.pk)
    assert stock_invariants()["oversold"] == 0


def test_return_puts_units_back_where_they_left(shop):
    order = order_reserve(channel=shop.channel, external_id="R1", lines=[LineRequest("hood", 12)]).order
    order_fulfil(order_id=order.pk)
    assert counters(shop.hood, shop.store) == (3, 0)
    state = order_return(order_id=order.pk, lines=[LineRequest("hood", 12)])
    assert state.order.status == Order.Status.RETURNED
    assert counters(shop.hood, shop.warehouse) == (10, 0)
    assert counters(shop.hood, shop.store) == (5, 0)
    with pytest.raises(InvalidOrderState):
        order_return(order_id=order.pk)
    assert Movement.objects.filter(kind=Movement.Kind.RETURN).count() == 2
    assert stock_invariants()["oversold"] == 0


def test_line_exchange_is_all_or_nothing(shop):
    order = order_reserve(channel=shop.channel, external_id="E1", lines=[LineRequest("hood", 5)]).order
    with pytest.raises(InsufficientStock) as err:  # 5 packs of 3 caps: 3 fit in the warehouse, 1 in the store
        order_line_exchange(order_id=order.pk, sku="hood", new_sku="caps", channel_id=shop.channel.pk)
    assert err.value.data["lines"] == [{"sku": "caps", "requested": 5, "available": 4}]
    assert counters(shop.hood, shop.warehouse) == (10, 5)
    order_cancel(order_id=order.pk)
    order = order_reserve(channel=shop.channel, external_id="E2", lines=[LineRequest("hood", 2)]).order
    state = order_line_exchange(order_id=order.pk, sku="hood", new_sku="kit")
    assert [(line.channel_sku, line.quantity) for line in state.lines] == [("kit", 2)]
    assert counters(shop.cap, shop.warehouse) == (10, 4)
    assert counters(shop.hood, shop.warehouse) == (10, 2)
    with pytest.raises(UnknownSku):
        order_line_exchange(order_id=order.pk, sku="hood", new_sku="kit")
    assert stock_invariants()["oversold"] == 0


def test_expired_holds_are_released_by_the_beat_job(shop):
    lapsed = order_reserve(channel=shop.channel, external_id="H1", lines=[LineRequest("hood", 3)]).order
    live = order_reserve(channel=shop.channel, external_id="H2", lines=[LineRequest("hood", 2)]).order
    confirmed = order_reserve(channel=shop.channel, external_id="H3", lines=[LineRequest("hood", 1)]).order
    order_confirm(order_id=confirmed.pk)
    Order.objects.filter(pk__in=[lapsed.pk, confirmed.pk]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert holds_release_expired.apply().get() == 1
    assert Order.objects.get(pk=lapsed.pk).status == Order.Status.EXPIRED
    assert Order.objects.get(pk=live.pk).status == Order.Status.RESERVED
    assert counters(shop.hood, shop.warehouse) == (10, 3)
    assert hold_release_expired() == 0
    assert stock_invariants()["oversold"] == 0


def test_supplier_refusal_releases_that_location_flags_and_opens_an_incident(shop):
    order = order_reserve(channel=shop.channel, external_id="D1", lines=[LineRequest("hood", 12)]).order
    order_supplier_refused(order_id=order.pk, location_id=shop.store.pk, reason="out of stock at the supplier")
    order.refresh_from_db()
    assert order.flagged and "out of stock at the supplier" in order.flag_reason
    assert counters(shop.hood, shop.store) == (5, 0)
    assert counters(shop.hood, shop.warehouse) == (10, 10)
    assert order.lines.get().unallocated_quantity == 2
    incident = Incident.objects.get(kind=Incident.Kind.SUPPLIER_REFUSAL)
    assert (incident.location_id, incident.shortfall) == (shop.store.pk, 2)
    assert order_fulfil(order_id=order.pk).order.status == Order.Status.FULFILLED
    assert stock_invariants()["oversold"] == 0


def test_a_store_sale_into_reserved_stock_blocks_shipping_what_is_gone(shop):
    order = order_reserve(channel=shop.channel, external_id="P1", lines=[LineRequest("hood", 10)]).order
    stock_movement_record(
        location_code="wh", item_sku="HOOD", kind="pos_sale", quantity=3, idempotency_key="pos-1", actor="till"
    )
    assert Incident.objects.filter(kind=Incident.Kind.POS_INTO_RESERVED).exists()
    with pytest.raises(InvalidQuantity):
        order_fulfil(order_id=order.pk)
    assert Reservation.objects.get().fulfilled == 0


def test_imported_oversell_ships_what_was_covered(shop):
    order = order_import(channel=shop.channel, external_id="M2", lines=[LineRequest("hood", 16)]).order
    state = order_fulfil(order_id=order.pk)
    assert state.order.status == Order.Status.FULFILLED
    assert state.lines[0].fulfilled_quantity == 15
    assert stock_invariants()["oversold"] == 0
