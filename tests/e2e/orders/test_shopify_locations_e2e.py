"""One Shopify shop, three locations (a warehouse and two stores), end to end with the real worker.

The channel's ``location_map`` shows WH's stock at Shopify location 1, S1's at location 2 and S2's at location 3:
a sale in store S1 lowers location 2 only; an online order Shopify routes to location 2 is reserved at S1, and
moving its fulfillment order to location 1 moves the reservation to WH; a Shopify POS sale at location 2 is S1's
till sale, booked once however often Shopify tells of it; no order is imported twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from apps.catalog.models import Incident, Location, Movement
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import LocationFactory
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability_by_place
from apps.channels.services.config import channel_create, listings_sync_now
from apps.channels.tests.conftest import (  # noqa: F401 (fixtures)
    celery_worker,
    clean_sync_redis,
    fast_sync,
    wait_for,
)
from apps.channels.tests.factories import Shop, listing, shop, stock
from apps.orders.models import Order, Reservation
from apps.orders.services.intake import platform_orders_poll
from sandbox.fakes.shopify import ShopifyFake, gid

pytestmark = [pytest.mark.worker, pytest.mark.slow]

TOKEN = "shpat_places"
SECRET = "whsec-places"


@dataclass
class Shops:
    s: Shop
    s2: Location
    fake: ShopifyFake
    channel: Channel
    hoodie: Listing
    places: dict[str, str]  # WH, S1, S2 -> Shopify location GID


@pytest.fixture
def shops(live_server) -> Iterator[Shops]:
    s = shop(hoodies=40, caps=40)
    s2 = LocationFactory(code="S2", allow_negative=True)
    stock(s.hoodie, s.store, 10)
    stock(s.hoodie, s2, 6)
    hook = f"{live_server.url}/api/v1/channels/web/webhooks/shopify/"
    fake = ShopifyFake(access_token=TOKEN, webhook_url=hook, webhook_secret=SECRET).start()
    try:
        places = {
            "WH": fake.location_id,
            "S1": gid("Location", fake.add_location("Store 1")),
            "S2": gid("Location", fake.add_location("Store 2")),
        }
        hoodie = fake.add_item("web-HOOD-M", quantities={place: 0 for place in places.values()})
        channel = channel_create(
            fields={
                "code": "web",
                "name": "Our Shopify shop",
                "kind": Channel.Kind.WEBSHOP,
                "connector": "shopify",
                "settings": {
                    "shop_url": fake.url,
                    "location_map": {place: [code] for code, place in places.items()},
                },
                "credentials": {"access_token": TOKEN, "webhook_secret": SECRET},
                "rate_per_s": 50,
                "burst": 20,
            },
            location_ids=[s.warehouse.pk, s.store.pk, s2.pk],
            state="live",
        )
        single = listing(channel, s.single, "web-HOOD-M", external_id=hoodie)
        yield Shops(s, s2, fake, channel, single, places)
    finally:
        fake.stop()


def shown(shops: Shops) -> dict[str, int | None]:
    return {code: shops.fake.available(shops.hoodie.external_id, place) for code, place in shops.places.items()}


def in_sync(shops: Shops) -> bool:
    truth = listings_availability_by_place(
        [shops.hoodie.pk], {place: [code] for code, place in shops.places.items()}
    ).get(shops.hoodie.pk, {})
    now = shown(shops)
    return not SyncWork.objects.exists() and all(now[code] == truth.get(place) for code, place in shops.places.items())


def first_sync(shops: Shops) -> None:
    listings_sync_now(listing_ids=[shops.hoodie.pk])
    wait_for(lambda: in_sync(shops) and shown(shops) == {"WH": 40, "S1": 10, "S2": 6}, timeout=15)


def held_at(order: Order) -> dict[str, int]:
    at: dict[str, int] = {}
    for r in Reservation.objects.filter(line__order=order).select_related("location"):
        if r.open_quantity:
            at[r.location.code] = at.get(r.location.code, 0) + r.open_quantity
    return at


def test_a_sale_in_store_s1_lowers_only_the_shopify_location_mapped_to_s1(shops, celery_worker):  # noqa: F811
    celery_worker()
    first_sync(shops)
    sets_before = len(shops.fake.set_history)
    stock_movement_record(
        location_code="S1", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=2, idempotency_key="till-s1-1",
        actor="till",
    )  # fmt: skip
    wait_for(lambda: shown(shops) == {"WH": 40, "S1": 8, "S2": 6} and in_sync(shops), timeout=10)
    # One quantity set: location 2's; the warehouse's and the other store's were not touched.
    assert list(shops.fake.set_history)[sets_before:] == [(shops.hoodie.external_id, 8)]
    assert Listing.objects.get(pk=shops.hoodie.pk).pushed_places == {
        shops.places["WH"]: 40,
        shops.places["S1"]: 8,
        shops.places["S2"]: 6,
    }
    assert shops.fake.throttled == 0


def test_an_order_routed_to_a_store_reserves_there_and_moves_with_its_fulfillment_order(shops, celery_worker):  # noqa: F811
    celery_worker()
    first_sync(shops)
    placed = shops.fake.create_order([("web-HOOD-M", 3)], location_id=shops.places["S1"])
    wait_for(lambda: Order.objects.filter(channel=shops.channel, external_id=str(placed["id"])).exists(), timeout=10)
    order = Order.objects.get(channel=shops.channel, external_id=str(placed["id"]))
    assert held_at(order) == {"S1": 3}
    assert order.platform_location == shops.places["S1"]
    wait_for(lambda: in_sync(shops) and shown(shops) == {"WH": 40, "S1": 7, "S2": 6}, timeout=10)

    shops.fake.move_fulfillment_order(placed["id"], shops.places["WH"])  # fulfillment_orders/moved
    wait_for(lambda: held_at(order) == {"WH": 3}, timeout=10)
    assert Order.objects.get(pk=order.pk).platform_location == shops.places["WH"]
    wait_for(lambda: in_sync(shops) and shown(shops) == {"WH": 37, "S1": 10, "S2": 6}, timeout=10)

    # The poll reads the order again (and its new location): nothing moves twice, nothing is imported twice.
    platform_orders_poll(channel_id=shops.channel.pk)
    assert held_at(order) == {"WH": 3}
    assert Order.objects.filter(channel=shops.channel).count() == 1
    assert not Incident.objects.exists()
    assert {d.status for d in shops.fake.deliveries} == {200}


def test_a_move_whose_webhook_was_lost_is_followed_by_the_poll(shops, celery_worker):  # noqa: F811
    celery_worker()
    first_sync(shops)
    placed = shops.fake.create_order([("web-HOOD-M", 2)], location_id=shops.places["S2"])
    wait_for(lambda: Order.objects.filter(channel=shops.channel).exists(), timeout=10)
    order = Order.objects.get(channel=shops.channel)
    assert held_at(order) == {"S2": 2}
    shops.fake.drop_webhooks = True
    shops.fake.move_fulfillment_order(placed["id"], shops.places["S1"])
    shops.fake.update_order(placed["id"])  # the order changed on Shopify: the poll reads it
    platform_orders_poll(channel_id=shops.channel.pk)
    assert held_at(order) == {"S1": 2}
    wait_for(lambda: in_sync(shops) and shown(shops) == {"WH": 40, "S1": 8, "S2": 6}, timeout=10)


def test_a_pos_sale_at_a_store_location_is_a_till_sale_there_booked_once(shops, celery_worker):  # noqa: F811
    celery_worker()
    first_sync(shops)
    sold = shops.fake.create_pos_order([("web-HOOD-M", 2)], location_id=shops.places["S1"])
    sales = Movement.objects.filter(kind=Movement.Kind.POS_SALE, location__code="S1")
    wait_for(lambda: sales.exists(), timeout=10)
    assert [(m.on_hand_delta, m.item.sku) for m in sales] == [(-2, "HOOD-M")]
    assert not Order.objects.exists()  # a till sale is the store's, never reserved
    shops.fake.redeliver(shops.fake.deliveries[0].webhook_id)  # Shopify's retry
    shops.fake.update_order(sold["id"])  # and the poll sees it again
    platform_orders_poll(channel_id=shops.channel.pk)
    assert sales.count() == 1
    assert not Order.objects.exists()
    # Shopify took the 2 off location 2 itself; Stockroom's S1 is 8 now: every location shows its truth.
    wait_for(lambda: in_sync(shops) and shown(shops) == {"WH": 40, "S1": 8, "S2": 6}, timeout=10)


def test_a_pos_sale_that_eats_reserved_stock_is_booked_and_opens_an_incident(shops, celery_worker):  # noqa: F811
    celery_worker()
    first_sync(shops)
    shops.fake.create_order([("web-HOOD-M", 5)], location_id=shops.places["S2"])  # S2: 6 on hand, 5 reserved
    wait_for(lambda: Order.objects.exists(), timeout=10)
    shops.fake.create_pos_order([("web-HOOD-M", 4)], location_id=shops.places["S2"])  # never refused
    wait_for(lambda: Incident.objects.filter(kind=Incident.Kind.POS_INTO_RESERVED).exists(), timeout=10)
    assert Movement.objects.get(kind=Movement.Kind.POS_SALE, location__code="S2").on_hand_delta == -4

    # Shopify's S2 went to -3 by its own sales: Stockroom sets it to 0 (S2 has nothing to promise, and the
    # incident holds the listing at 0 while its cause lasts); the drop is the sales it imported, so no raise waits.
    # A chain of pushes (the sale's, the incident's hold, the read-back): 30 s leaves room for a loaded machine.
    # Under load a push can read Shopify back before the till sale's webhook is in: that drop is not explained
    # yet, so raises wait for the channel's order poll (the watermark); beat polls, and so does the test.
    def settled() -> bool:
        channel = Channel.objects.get(pk=shops.channel.pk)
        if channel.orders_pending_until and (
            channel.orders_imported_until is None or channel.orders_imported_until < channel.orders_pending_until
        ):
            platform_orders_poll(channel_id=channel.pk)
        return shown(shops)["S2"] == 0 and not SyncWork.objects.exists()

    try:
        wait_for(settled, timeout=30, every=0.5)
    except AssertionError as err:  # say where the chain stopped (seen once with four runners on two cores)
        fields = ("reason", "state", "attempts", "next_attempt_at", "last_error")
        raise AssertionError(
            f"{err}: Shopify shows {shown(shops)}, work {list(SyncWork.objects.values(*fields))}"
        ) from err
    assert Listing.objects.get(pk=shops.hoodie.pk).pushed_places[shops.places["S2"]] == 0
