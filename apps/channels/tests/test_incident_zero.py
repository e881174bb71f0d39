"""Every way an incident's cause goes away gives the channels their truth back
(docs/architecture.md, "Limits and edges").

Pushed in-process against the simulator on loopback; ``transactional_db`` so that incidents
reach the channels after commit as they do in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Incident, Movement
from apps.catalog.services.incidents import incident_resolve
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier
from apps.catalog.tests.factories import stock
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability, listings_zeroed_by_incident
from apps.channels.services.push import channel_push
from apps.channels.services.work import sync_work_enqueue
from apps.channels.tests.factories import Shop, channel_selling, listing, shop
from apps.orders.services import LineRequest, order_fulfil, order_import, order_reserve


@dataclass
class World:
    s: Shop
    market: Channel
    web: Channel
    sims: dict[int, object]
    listings: list[Listing]


@pytest.fixture
def world(transactional_db, simulator) -> World:
    """A marketplace selling from the warehouse (10 hoodies), a webshop from the store (20)."""
    s = shop(hoodies=10, caps=10)
    stock(s.hoodie, s.store, 20)
    market_sim, web_sim = simulator(), simulator()
    market = channel_selling("market", [s.warehouse], push_url=market_sim.url, secret="s3cret")
    web = channel_selling("web", [s.store], push_url=web_sim.url, secret="s3cret", kind=Channel.Kind.WEBSHOP)
    listings = [listing(market, s.single), listing(web, s.single)]
    w = World(s, market, web, {market.pk: market_sim, web.pk: web_sim}, listings)
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in listings], priority=Tier.SALE, reason="first")
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 10, "web-HOOD-M": 20}
    return w


def push_all(w: World) -> None:
    """Push whatever is pending now (calm tiers included, as if their window had passed)."""
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=10))
    for channel in (w.market, w.web):
        channel_push(channel_id=channel.pk)


def shown(w: World) -> dict[str, int | None]:
    return {lst.channel_sku: w.sims[lst.channel_id].shown(lst.channel_sku) for lst in w.listings}


def truth(w: World) -> dict[str, int]:
    found = listings_availability([lst.pk for lst in w.listings])
    return {lst.channel_sku: found[lst.pk].available for lst in w.listings}


def at_truth(w: World) -> bool:
    return (
        shown(w) == truth(w)
        and not SyncWork.objects.exists()
        and not Listing.objects.filter(zeroed_by_incident=True).exists()
    )


def sale_at_the_till(sku: str, quantity: int, key: str, kind: str = Movement.Kind.POS_SALE) -> None:
    stock_movement_record(
        location_code="WH", item_sku=sku, kind=kind, quantity=quantity, idempotency_key=key, actor="till"
    )


def test_a_store_sale_into_reserved_stock_zeroes_until_stock_covers_the_reservations_again(world):
    w = world
    order_reserve(channel=w.market, external_id="R1", lines=[LineRequest("market-HOOD-M", 8)])
    sale_at_the_till("HOOD-M", 5, "pos-1")  # 5 on hand, 8 reserved: the incident
    assert Incident.objects.filter(kind=Incident.Kind.POS_INTO_RESERVED).exists()
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 0, "web-HOOD-M": 0}  # the webshop's store stock is held back too
    # A receipt at the warehouse covers the reservations again: the store's channel hears of it too.
    sale_at_the_till("HOOD-M", 10, "rcpt-1", kind=Movement.Kind.RECEIPT)
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 7, "web-HOOD-M": 20}
    assert at_truth(w)


def test_staff_resolving_an_oversell_brings_back_the_truth(world):
    w = world
    placed = order_import(channel=w.market, external_id="M1", lines=[LineRequest("market-HOOD-M", 30)])
    assert placed.order.flagged
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 0, "web-HOOD-M": 0}
    incident = Incident.objects.get(kind=Incident.Kind.OVERSELL)
    incident_resolve(incident=incident, resolved_by="staff", note="customer refunded on the marketplace")
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 0, "web-HOOD-M": 20}
    assert at_truth(w)


def test_shipping_what_an_oversold_import_could_cover_ends_its_zero(world):
    w = world
    placed = order_import(channel=w.market, external_id="M1", lines=[LineRequest("market-HOOD-M", 30)])
    push_all(w)
    assert shown(w)["web-HOOD-M"] == 0
    order_fulfil(order_id=placed.order.pk)  # the 10 covered units ship; the order is closed
    push_all(w)
    assert shown(w) == {"market-HOOD-M": 0, "web-HOOD-M": 20}
    assert at_truth(w)


def test_which_listings_an_incident_holds_at_zero(world):
    w = world
    market_single, web_single = (lst.pk for lst in w.listings)
    ids = [market_single, web_single]
    kit = listing(w.web, w.s.kit).pk
    cap_only = listing(w.web, w.s.cap_only).pk
    # No order behind it (opened by hand): holds while open; the cap is not concerned.
    by_hand = Incident.objects.create(kind=Incident.Kind.OVERSELL, item=w.s.hoodie, location=w.s.warehouse)
    assert listings_zeroed_by_incident([*ids, kit, cap_only]) == {market_single, web_single, kit}
    Incident.objects.filter(pk=by_hand.pk).update(status=Incident.Status.RESOLVED)
    assert listings_zeroed_by_incident(ids) == set()
    # Kinds that are not about stock never zero anything.
    Incident.objects.create(kind=Incident.Kind.IMPLAUSIBLE_IMPORT, item=w.s.hoodie)
    Incident.objects.create(kind=Incident.Kind.LEDGER_DRIFT, item=w.s.hoodie, location=w.s.warehouse)
    assert listings_zeroed_by_incident(ids) == set()
    # A store sale into reserved stock: only while on hand is under reserved there.
    Incident.objects.create(kind=Incident.Kind.POS_INTO_RESERVED, item=w.s.hoodie, location=w.s.warehouse)
    assert listings_zeroed_by_incident(ids) == set()  # 10 on hand, nothing reserved
