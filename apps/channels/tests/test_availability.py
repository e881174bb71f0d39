"""The availability engine and its cache: right answers, constant queries, never stale past a commit."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.catalog.models import ProductComponent, StockLevel
from apps.catalog.selectors import products_atp_by_location
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import availability_cache
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.selectors import listings_availability, listings_availability_cached, listings_reached


@pytest.fixture(autouse=True)
def fresh_cache_state():
    availability_cache.state.reset()
    availability_cache.availability_invalidate_all()
    yield
    availability_cache.state.reset()


def channel_selling_from(code: str, *locations, coefficient: str = "1", buffer: int = 0) -> Channel:
    channel = Channel.objects.create(code=code, name=code, coefficient=Decimal(coefficient), buffer=buffer)
    for priority, location in enumerate(locations):
        ChannelLocation.objects.create(channel=channel, location=location, priority=priority)
    return channel


@pytest.fixture
def kit_world(db):
    """Two warehouses, a hoodie and a cap, a kit of both, listed in a webshop selling from both."""
    wh1, wh2 = LocationFactory(code="WH1"), LocationFactory(code="WH2")
    hoodie, cap = ItemFactory(sku="HOOD"), ItemFactory(sku="CAP")
    stock(hoodie, wh1, 5)
    stock(cap, wh1, 1)
    stock(hoodie, wh2, 1)
    stock(cap, wh2, 5)
    kit = product_of("KIT", {hoodie: 1, cap: 1})
    single = product_of("HOOD", {hoodie: 1})
    shop = channel_selling_from("shop", wh1, wh2)
    return {
        "wh1": wh1,
        "wh2": wh2,
        "hoodie": hoodie,
        "cap": cap,
        "kit": Listing.objects.create(channel=shop, channel_sku="SHOP-KIT", product=kit),
        "single": Listing.objects.create(channel=shop, channel_sku="SHOP-HOOD", product=single),
        "shop": shop,
    }


def test_kit_atp_is_per_location_then_summed(kit_world):
    result = listings_availability([kit_world["kit"].pk, kit_world["single"].pk])
    # min(5,1) + min(1,5) = 2, never min(5+1, 1+5) = 6
    assert result[kit_world["kit"].pk].available == 2
    assert result[kit_world["single"].pk].available == 6
    by_location = products_atp_by_location([kit_world["kit"].product_id], [kit_world["wh1"].pk, kit_world["wh2"].pk])
    kit = kit_world["kit"].product_id
    assert by_location == {(kit, kit_world["wh1"].pk): 1, (kit, kit_world["wh2"].pk): 1}


def test_listing_settings_apply_in_order(kit_world):
    listing = kit_world["single"]
    Listing.objects.filter(pk=listing.pk).update(buffer=1, coefficient=Decimal("0.5"), max_qty=2, end_when=None)
    assert listings_availability([listing.pk])[listing.pk].available == 2  # floor((6-1)*0.5)=2, min(2, 2)
    Listing.objects.filter(pk=listing.pk).update(end_when=2)
    assert listings_availability([listing.pk])[listing.pk].available == 0
    Listing.objects.filter(pk=listing.pk).update(is_active=False, end_when=None)
    assert listings_availability([listing.pk])[listing.pk].available == 0


def test_stale_supplier_stock_does_not_sell(kit_world):
    supplier = LocationFactory(code="SUP", kind="supplier", stock_valid_until=timezone.now() - timedelta(seconds=1))
    stock(kit_world["hoodie"], supplier, 100)
    ChannelLocation.objects.create(channel=kit_world["shop"], location=supplier, priority=9)
    assert listings_availability([kit_world["single"].pk])[kit_world["single"].pk].available == 6


def test_listings_affected_reaches_bundles_in_channels_selling_there(kit_world):
    other = LocationFactory(code="ELSEWHERE")
    pairs = [(kit_world["cap"].pk, kit_world["wh1"].pk)]
    assert listings_reached(pairs) == [kit_world["kit"].pk]
    assert set(listings_reached([(kit_world["hoodie"].pk, kit_world["wh2"].pk)])) == {
        kit_world["kit"].pk,
        kit_world["single"].pk,
    }
    assert listings_reached([(kit_world["hoodie"].pk, other.pk)]) == []


@pytest.mark.django_db
def test_one_query_for_one_listing_and_for_a_thousand(django_assert_num_queries):
    locations = [LocationFactory(code=f"L{n}") for n in range(3)]
    items = ItemFactory.create_batch(40)
    StockLevel.objects.bulk_create(
        [StockLevel(item=i, location=loc, on_hand=(i.pk * 7 + loc.pk) % 50) for i in items for loc in locations]
    )
    from apps.catalog.models import Product

    products = Product.objects.bulk_create([Product(code=f"P{n}", name="p", kind="bundle") for n in range(250)])
    ProductComponent.objects.bulk_create(
        [ProductComponent(product=p, item=items[(p.pk + k) % 40], quantity=k + 1) for p in products for k in range(3)]
    )
    channels = [channel_selling_from(f"c{n}", *locations[: n + 1]) for n in range(4)]
    listings = Listing.objects.bulk_create(
        [Listing(channel=c, channel_sku=f"{c.code}-{p.code}", product=p) for c in channels for p in products]
    )
    assert len(listings) == 1000
    with django_assert_num_queries(1):
        one = listings_availability([listings[0].pk])
    with django_assert_num_queries(1):
        thousand = listings_availability([listing.pk for listing in listings])
    assert len(thousand) == 1000 and one[listings[0].pk] == thousand[listings[0].pk]
    # A cached read also reads the epoch PostgreSQL keeps (a sequence): one small query, hit or miss.
    with django_assert_num_queries(2):
        listings_availability_cached([listing.pk for listing in listings])
    with django_assert_num_queries(1):
        cached = listings_availability_cached([listing.pk for listing in listings])
    assert cached == thousand
    started = time.perf_counter()
    listings_availability_cached([listing.pk for listing in listings])
    assert time.perf_counter() - started < 1.0  # a served-from-cache read of 1,000 listings stays cheap


# --- the cache ------------------------------------------------------------------------------


def receive(listing_id, **kwargs):
    stock_movement_record(
        location_code="WH1",
        item_sku="HOOD",
        kind="receipt",
        quantity=kwargs.get("quantity", 1),
        idempotency_key=kwargs.get("key", f"k-{time.monotonic_ns()}"),
        actor="test",
    )


@pytest.mark.django_db(transaction=True)
def test_read_after_a_committed_movement_is_fresh(kit_world):
    single = kit_world["single"].pk
    assert listings_availability_cached([single])[single].available == 6
    assert listings_availability_cached([single])[single].available == 6  # now from the cache
    receive(single, quantity=3)
    assert listings_availability_cached([single])[single].available == 9


@pytest.mark.django_db(transaction=True)
def test_a_reader_racing_a_commit_cannot_store_the_old_value(kit_world):
    """The hole of delete-on-commit: a reader computes before the commit and stores after it."""
    single = kit_world["single"].pk

    def slow_compute(ids):
        old = listings_availability(ids)  # reads 6
        writer = threading.Thread(target=lambda: (receive(single, quantity=4), connection.close()))
        writer.start()
        writer.join()  # the movement commits and its bump runs while this read is in flight
        return old

    assert availability_cache.availability_cached([single], compute=slow_compute)[single].available == 6
    assert listings_availability_cached([single])[single].available == 10


@pytest.mark.django_db(transaction=True)
def test_readers_never_see_an_older_value_than_the_last_commit(kit_world):
    single = kit_world["single"].pk
    stop = threading.Event()
    committed = [6]
    stale: list[tuple[int, int]] = []

    def reader():
        try:
            while not stop.is_set():
                floor = committed[-1]
                seen = listings_availability_cached([single])[single].available
                if seen < floor:
                    stale.append((seen, floor))
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for n in range(30):
        receive(single, quantity=1, key=f"race-{n}")
        committed.append(committed[-1] + 1)
    stop.set()
    for thread in threads:
        thread.join()
    assert stale == []
    assert listings_availability_cached([single])[single].available == 36


@pytest.mark.django_db(transaction=True)
def test_channel_and_listing_changes_invalidate(kit_world):
    single = kit_world["single"]
    assert listings_availability_cached([single.pk])[single.pk].available == 6
    channel = kit_world["shop"]
    channel.coefficient = Decimal("0.5")
    channel.save()
    assert listings_availability_cached([single.pk])[single.pk].available == 3
    single.max_qty = 1
    single.save()
    assert listings_availability_cached([single.pk])[single.pk].available == 1


@pytest.mark.django_db(transaction=True)
def test_safety_change_invalidates(kit_world):
    from apps.catalog.stock.safety import safety_apply

    single = kit_world["single"].pk
    assert listings_availability_cached([single])[single].available == 6
    safety_apply(values={(kit_world["hoodie"].pk, kit_world["wh1"].pk): 5}, reason="test")
    assert listings_availability_cached([single])[single].available == 1


@pytest.mark.django_db(transaction=True)
def test_supplier_stock_expiring_is_not_served_from_the_cache(kit_world):
    supplier = LocationFactory(code="SUP", kind="supplier", stock_valid_until=timezone.now() + timedelta(seconds=1))
    stock(kit_world["hoodie"], supplier, 100)
    ChannelLocation.objects.create(channel=kit_world["shop"], location=supplier, priority=9)
    single = kit_world["single"].pk
    assert listings_availability_cached([single])[single].available == 106
    time.sleep(1.1)
    assert listings_availability_cached([single])[single].available == 6


CLOSED_PORT = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "KEY_PREFIX": "sr-catalog-closed",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2, "IGNORE_EXCEPTIONS": True},
    }
}


@pytest.mark.django_db(transaction=True)
def test_redis_unreachable_answers_from_postgresql(kit_world, caplog):
    single = kit_world["single"].pk
    assert listings_availability_cached([single])[single].available == 6  # cached before the outage
    with override_settings(CACHES=CLOSED_PORT):
        assert listings_availability_cached([single])[single].available == 6
        assert availability_cache.state.failing
        receive(single, quantity=2)  # the bump cannot reach Redis; the write still succeeds
        assert listings_availability_cached([single])[single].available == 8
        started = time.perf_counter()
        for _ in range(20):
            listings_availability_cached([single])
        assert time.perf_counter() - started < 1.0  # bypassed, not waiting on a dead socket each time
    availability_cache.state.skip_until = 0.0
    # Redis is back: whatever was cached before the outage is not trusted.
    assert listings_availability_cached([single])[single].available == 8
    assert not availability_cache.state.failing
