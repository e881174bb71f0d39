from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Incident, Location, StockLevel
from apps.catalog.tests.factories import stock
from apps.orders.errors import InsufficientStock, OrderExists, UnknownSku
from apps.orders.models import Order, Reservation
from apps.orders.services import LineRequest, order_import, order_reserve
from apps.orders.signals import order_reserved
from apps.orders.tests.factories import stock_invariants

pytestmark = pytest.mark.django_db


def level(item, location) -> StockLevel:
    return StockLevel.objects.get(item=item, location=location)


def held(order: Order) -> dict[tuple[str, str], int]:
    return {
        (r.item.sku, r.location.code): r.quantity
        for r in Reservation.objects.filter(line__order=order).select_related("item", "location")
    }


def test_reserve_holds_stock_at_the_first_location_and_expires_later(shop):
    placed = order_reserve(channel=shop.channel, external_id="A1", lines=[LineRequest("hood", 3)], hold_minutes=20)
    assert placed.order.status == Order.Status.RESERVED
    assert timedelta(minutes=19) < placed.order.expires_at - timezone.now() <= timedelta(minutes=20)
    assert held(placed.order) == {("HOOD", "wh"): 3}
    assert level(shop.hood, shop.warehouse).reserved == 3
    assert stock_invariants()["oversold"] == 0


def test_units_spill_over_to_the_next_location_and_a_bundle_unit_never_splits(shop):
    # Warehouse: 10 hoods, 10 caps -> 5 kits (caps limit); store: 5 hoods, 4 caps -> 2 kits.
    placed = order_reserve(channel=shop.channel, external_id="A2", lines=[LineRequest("kit", 7)])
    assert held(placed.order) == {("HOOD", "wh"): 5, ("CAP", "wh"): 10, ("HOOD", "s1"): 2, ("CAP", "s1"): 4}
    with pytest.raises(InsufficientStock) as refused:
        order_reserve(channel=shop.channel, external_id="A3", lines=[LineRequest("kit", 1)])
    assert refused.value.data["lines"] == [{"sku": "kit", "requested": 1, "available": 0}]
    assert stock_invariants()["oversold"] == 0


def test_all_lines_or_none(shop):
    with pytest.raises(InsufficientStock) as refused:
        order_reserve(channel=shop.channel, external_id="A4", lines=[LineRequest("hood", 2), LineRequest("caps", 5)])
    assert refused.value.data["lines"] == [{"sku": "caps", "requested": 5, "available": 4}]
    assert refused.value.status_code == 409
    assert not Order.objects.exists()
    assert level(shop.hood, shop.warehouse).reserved == 0


def test_lines_sharing_an_item_are_counted_together(shop):
    # 15 hoods in all: 10 single hoods + 7 kits would need 17.
    with pytest.raises(InsufficientStock):
        order_reserve(channel=shop.channel, external_id="A5", lines=[LineRequest("hood", 10), LineRequest("kit", 7)])
    placed = order_reserve(
        channel=shop.channel, external_id="A6", lines=[LineRequest("hood", 10), LineRequest("kit", 2)]
    )
    assert sum(held(placed.order).values()) == 10 + 2 * 3
    assert stock_invariants()["oversold"] == 0


def test_safety_stock_and_stale_locations_are_not_sold(shop):
    stock(shop.hood, shop.warehouse, 10, safety=8)
    Location.objects.filter(pk=shop.store.pk).update(stock_valid_until=timezone.now() - timedelta(minutes=1))
    with pytest.raises(InsufficientStock) as refused:
        order_reserve(channel=shop.channel, external_id="A7", lines=[LineRequest("hood", 3)])
    assert refused.value.data["lines"][0]["available"] == 2


def test_unknown_sku_is_a_field_error(shop):
    with pytest.raises(UnknownSku) as err:
        order_reserve(channel=shop.channel, external_id="A8", lines=[LineRequest("hood", 1), LineRequest("nope", 1)])
    assert err.value.data["errors"] == {"lines": [{}, {"sku": ["Unknown SKU for this channel."]}]}


def test_same_external_id_twice_is_a_conflict(shop):
    first = order_reserve(channel=shop.channel, external_id="A9", lines=[LineRequest("hood", 1)])
    with pytest.raises(OrderExists) as err:
        order_reserve(channel=shop.channel, external_id="A9", lines=[LineRequest("hood", 1)])
    assert err.value.data["id"] == first.order.pk
    assert level(shop.hood, shop.warehouse).reserved == 1


def test_order_reserved_is_sent_after_commit_with_locations(shop, django_capture_on_commit_callbacks):
    heard = []

    def listener(**kwargs):
        heard.append((kwargs["order_id"], kwargs["location_ids"]))

    order_reserved.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            placed = order_reserve(channel=shop.channel, external_id="B1", lines=[LineRequest("kit", 6)])
            assert heard == []
    finally:
        order_reserved.disconnect(listener)
    assert heard == [(placed.order.pk, sorted([shop.warehouse.pk, shop.store.pk]))]


def test_import_never_refuses_and_opens_an_oversell_incident(shop):
    placed = order_import(channel=shop.channel, external_id="M1", lines=[LineRequest("hood", 18)])
    order = placed.order
    assert order.status == Order.Status.CONFIRMED and order.flagged
    assert placed.lines[0].unallocated_quantity == 3
    assert held(order) == {("HOOD", "wh"): 10, ("HOOD", "s1"): 5}
    incident = Incident.objects.get(kind=Incident.Kind.OVERSELL)
    assert (incident.item_id, incident.shortfall, incident.reference) == (shop.hood.pk, 3, f"order:{order.pk}")
    assert stock_invariants()["oversold"] == 0


def test_reserve_query_count_is_pinned(shop, django_assert_num_queries):
    # Inside a caller's transaction: resolve + snapshot; a savepoint around one statement that locks
    # and writes levels, order, lines, reservations, ledger and sync work
    with django_assert_num_queries(4):
        order_reserve(channel=shop.channel, external_id="Q1", lines=[LineRequest("hood", 1)])
    with django_assert_num_queries(4):
        order_reserve(channel=shop.channel, external_id="Q2", lines=[LineRequest("kit", 1), LineRequest("caps", 1)])
    # A refusal never takes a lock and writes nothing.
    with django_assert_num_queries(1), pytest.raises(InsufficientStock):
        order_reserve(channel=shop.channel, external_id="Q3", lines=[LineRequest("hood", 100)])


@pytest.mark.django_db(transaction=True)
def test_alone_a_reservation_is_two_statements_and_commits_with_the_second(
    shop, django_assert_num_queries, monkeypatch
):
    """No transaction around the call: the write statement is its own transaction (no BEGIN or COMMIT)."""
    # The after-commit receivers run inside the count: the suppliers app looks up its checked
    # locations every few seconds, so that lookup is made fresh here, not left to the clock.
    from apps.suppliers import receivers

    monkeypatch.setattr(receivers, "_CHECKED_LOCATIONS_TTL_S", 3600.0)
    receivers.forget_checked_locations()
    receivers.checked_supplier_locations()
    with django_assert_num_queries(2):
        placed = order_reserve(channel=shop.channel, external_id="A1", lines=[LineRequest("kit", 2)])
    assert not transaction.get_connection().in_atomic_block
    assert Order.objects.filter(pk=placed.order.pk).exists()
    assert held(placed.order) == {("HOOD", "wh"): 2, ("CAP", "wh"): 4}
    assert stock_invariants()["oversold"] == 0


def test_a_stale_snapshot_falls_back_to_the_locked_path_and_writes_nothing(shop, monkeypatch):
    """Between the unlocked read and the conditional update the stock went: the lock decides."""
    from apps.orders.services import reserve

    real = reserve.lines_resolve

    def stale(**kwargs):
        resolution = real(**kwargs)
        resolution.atp = {pair: 1000 for pair in resolution.atp}
        return resolution

    monkeypatch.setattr(reserve, "lines_resolve", stale)
    with pytest.raises(InsufficientStock) as refused:
        order_reserve(channel=shop.channel, external_id="S1", lines=[LineRequest("hood", 20)])
    assert refused.value.data["lines"] == [{"sku": "hood", "requested": 20, "available": 15}]
    assert not Order.objects.exists() and not Reservation.objects.exists()
    placed = order_reserve(channel=shop.channel, external_id="S2", lines=[LineRequest("hood", 12)])
    assert held(placed.order) == {("HOOD", "wh"): 10, ("HOOD", "s1"): 2}
    assert stock_invariants()["oversold"] == 0
