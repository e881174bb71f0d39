"""A zero pushed for an incident gives way to the truth once the incident's cause is gone
(docs/architecture.md, "Limits and edges").

Real Celery workers, the channel simulator on loopback, orders through the channel API: an
oversold import is cancelled before its zero push goes out, while it is in flight, and after.
Whatever the order, every channel ends up showing the truth and no work is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import transaction

from apps.catalog.models import Incident
from apps.catalog.signals import Tier
from apps.catalog.tests.factories import stock
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.push import channel_push
from apps.channels.services.work import sync_sweep, sync_work_enqueue
from apps.channels.tests.conftest import wait_for
from apps.channels.tests.factories import Shop, channel_selling, listing, shop

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@dataclass
class World:
    s: Shop
    market: Channel
    market_sim: object
    web_sim: object
    listings: list[Listing]
    api: object


@pytest.fixture
def world(transactional_db, simulator, channel_api) -> World:
    """A marketplace selling from the warehouse (65 hoodies) and a webshop selling from the store (20)."""
    s = shop(hoodies=65, caps=40)
    stock(s.hoodie, s.store, 20)
    market_sim, web_sim = simulator(), simulator()
    market = channel_selling("market", [s.warehouse], push_url=market_sim.url, secret="s3cret")
    web = channel_selling("web", [s.store], push_url=web_sim.url, secret="s3cret", kind=Channel.Kind.WEBSHOP)
    listings = [listing(market, s.single), listing(market, s.kit), listing(web, s.single)]
    return World(s, market, market_sim, web_sim, listings, channel_api("market"))


def sim_of(w: World, lst: Listing):
    return w.market_sim if lst.channel_id == w.market.pk else w.web_sim


def shown(w: World) -> dict[str, int | None]:
    return {lst.channel_sku: sim_of(w, lst).shown(lst.channel_sku) for lst in w.listings}


def truth(w: World) -> dict[str, int]:
    found = listings_availability([lst.pk for lst in w.listings])
    return {lst.channel_sku: found[lst.pk].available for lst in w.listings}


def settled(w: World) -> bool:
    return not SyncWork.objects.exists() and shown(w) == truth(w)


def push_in_process(w: World) -> None:
    """The first sync, pushed by the test itself (no worker yet)."""
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in w.listings], priority=Tier.SALE, reason="first")
    for channel_id in sorted({lst.channel_id for lst in w.listings}):
        channel_push(channel_id=channel_id)
    assert settled(w), shown(w)


def first_sync_by_worker(w: World) -> None:
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in w.listings], priority=Tier.SALE, reason="first")
    wait_for(lambda: settled(w), timeout=15)


def import_order(w: World, quantity: int = 300, external_id: str = "MK-1", oversold: bool = True) -> int:
    body = {"external_id": external_id, "mode": "import", "lines": [{"sku": "market-HOOD-M", "quantity": quantity}]}
    response = w.api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"import-{external_id}")
    assert response.status_code == 201, response.json()
    assert response.json()["flagged"] is oversold
    assert Incident.objects.filter(kind=Incident.Kind.OVERSELL, status=Incident.Status.OPEN).exists() is oversold
    return response.json()["id"]


def cancel(w: World, order_id: int) -> None:
    response = w.api.post(f"/api/v1/orders/{order_id}/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY=f"c-{order_id}")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"


def ends_at_the_truth(w: World, timeout: float = 20) -> None:
    wait_for(lambda: sync_sweep() is not None and settled(w), timeout=timeout, every=0.25)
    assert shown(w) == {"market-HOOD-M": 65, "market-KIT": 40, "web-HOOD-M": 20}
    assert not Listing.objects.filter(zeroed_by_incident=True).exists()


def test_a_cancel_before_the_zero_push_is_sent_leaves_every_channel_at_the_truth(world, celery_worker):
    w = world
    push_in_process(w)
    order_id = import_order(w)  # its zero push is queued, but no worker runs yet
    assert SyncWork.objects.filter(priority=Tier.SALE).count() == 3
    cancel(w, order_id)
    celery_worker()
    ends_at_the_truth(w)


def test_a_cancel_while_the_zero_push_is_in_flight_is_pushed_after_it(world, celery_worker):
    w = world
    celery_worker()
    first_sync_by_worker(w)
    w.market_sim.delay_s = 1.5  # the marketplace is slow: the zero push is still in flight at the cancel
    w.market_sim.request_arrived.clear()
    order_id = import_order(w)
    assert w.market_sim.request_arrived.wait(10)
    cancel(w, order_id)
    w.market_sim.delay_s = 0.0
    ends_at_the_truth(w)
    assert 0 in [u.available for u in w.market_sim.updates("market-HOOD-M")]


def test_a_cancel_after_the_zero_push_brings_back_every_channel_even_those_selling_elsewhere(world, celery_worker):
    w = world
    celery_worker()
    first_sync_by_worker(w)
    order_id = import_order(w)
    # The oversell zeroes the item everywhere, also the webshop that sells from the store only.
    wait_for(lambda: set(shown(w).values()) == {0}, timeout=10)
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    cancel(w, order_id)
    ends_at_the_truth(w)


def test_cancelling_an_oversold_import_that_got_no_stock_at_all_brings_back_the_truth(world, celery_worker):
    w = world
    celery_worker()
    first_sync_by_worker(w)
    held = import_order(w, quantity=65, external_id="MK-0", oversold=False)  # the whole warehouse, no oversell
    wait_for(lambda: shown(w)["market-HOOD-M"] == 0 and not SyncWork.objects.exists(), timeout=10)
    order_id = import_order(w, quantity=5, external_id="MK-2")  # nothing left: all 5 are short, nothing moves
    wait_for(lambda: shown(w)["web-HOOD-M"] == 0, timeout=10)
    cancel(w, order_id)  # no stock moves, but the cause of the zero is gone
    wait_for(lambda: sync_sweep() is not None and settled(w), timeout=20, every=0.25)
    assert shown(w) == {"market-HOOD-M": 0, "market-KIT": 0, "web-HOOD-M": 20}
    cancel(w, held)
    ends_at_the_truth(w)
