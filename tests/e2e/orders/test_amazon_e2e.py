"""Amazon end to end: real Celery workers, the real engine and order poller, the SP-API fake on loopback.

A sale in Stockroom reaches Amazon's quantity within tier 1; an Amazon order (polled, there are no
webhooks) reserves in Stockroom and its cancel releases; a worker killed mid-push loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import product_of
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.config import channel_create, listings_sync_now
from apps.channels.services.push import channel_push
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_sweep
from apps.channels.tests.conftest import celery_worker, clean_sync_redis, fast_sync, wait_for  # noqa: F401
from apps.channels.tests.factories import Shop, listing, shop
from apps.orders import tasks
from apps.orders.models import Order
from sandbox.fakes.amazon import AmazonFake

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@dataclass
class AmazonShop:
    fake: AmazonFake
    stock: Shop
    channel: Channel
    hoodie: Listing  # seller SKU AMZ-HOOD-M, a single hoodie
    kit: Listing  # seller SKU AMZ-KIT, hoodie + cap


@pytest.fixture
def amazon_shop(transactional_db: None) -> Iterator[AmazonShop]:
    fake = AmazonFake(settle_s=1.0).start()
    fake.add_listing("AMZ-HOOD-M", 0, product_type="SWEATSHIRT", lead_time_days=2)
    fake.add_listing("AMZ-KIT", 0, product_type="SWEATSHIRT")
    s = shop(hoodies=30, caps=10)
    config = fake.channel_settings()
    channel = channel_create(
        fields={
            "code": "amazon-us",
            "name": "Amazon.com",
            "kind": Channel.Kind.MARKETPLACE,
            "connector": "amazon",
            "settings": config["settings"],
            "credentials": config["credentials"],
            "rate_per_s": 20,
            "burst": 10,
        },
        location_ids=[s.warehouse.pk],
        state="live",  # linked by hand here: pushed from the start, no go-live
    )
    # The merchant's channel SKUs differ from Amazon's seller SKUs: external_id carries the seller SKU.
    hoodie = listing(channel, s.single, "amz-hoodie", external_id="AMZ-HOOD-M")
    kit = listing(channel, s.kit, "amz-kit", external_id="AMZ-KIT")
    yield AmazonShop(fake, s, channel, hoodie, kit)
    fake.stop()


def first_sync(world: AmazonShop) -> None:
    listings = [world.hoodie, world.kit]
    listings_sync_now(listing_ids=[lst.pk for lst in listings])
    wait_for(lambda: shows_the_truth(world) and not SyncWork.objects.exists(), timeout=15)


def shows_the_truth(world: AmazonShop) -> bool:
    truth = listings_availability([world.hoodie.pk, world.kit.pk])
    return (
        world.fake.quantity("AMZ-HOOD-M") == truth[world.hoodie.pk].available
        and world.fake.quantity("AMZ-KIT") == truth[world.kit.pk].available
    )


def sale(sku: str, quantity: int, key: str) -> None:
    stock_movement_record(
        location_code="WH", item_sku=sku, kind=Movement.Kind.POS_SALE, quantity=quantity, idempotency_key=key,
        actor="till",
    )  # fmt: skip


def level(sku: str) -> tuple[int, int]:
    found = StockLevel.objects.get(item__sku=sku, location__code="WH")
    return found.on_hand, found.reserved


def poll(world: AmazonShop) -> None:
    """What the beat does every minute: the worker polls Amazon's orders."""
    tasks.platform_orders_poll.delay(world.channel.pk)


def poll_until(world: AmazonShop, condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll as the beat would, a little faster: a poll that finds the previous one still running just returns."""
    last = 0.0

    def polled() -> object:
        nonlocal last
        if condition():
            return True
        if time.monotonic() - last > 1.0:
            poll(world)
            last = time.monotonic()
        return False

    wait_for(polled, timeout=timeout, every=0.1)


def test_a_sale_in_stockroom_reaches_amazon_within_tier_one(celery_worker, amazon_shop):  # noqa: F811
    world = amazon_shop
    celery_worker()
    first_sync(world)
    assert world.fake.quantity("AMZ-HOOD-M") == 30 and world.fake.quantity("AMZ-KIT") == 10

    for i in range(3):
        sale("HOOD-M", 1, f"till-{i}")
    waited = wait_for(lambda: world.fake.quantity("AMZ-HOOD-M") == 27, timeout=10)

    assert waited < 4, f"tier 1 took {waited:.1f} s"
    sale("CAP", 4, "till-caps")
    wait_for(lambda: world.fake.quantity("AMZ-KIT") == 6, timeout=10)
    # Amazon's way: one merge patch per listing, the merchant's handling time kept, nothing throttled.
    assert world.fake.availability("AMZ-HOOD-M") == [
        {"fulfillment_channel_code": "DEFAULT", "quantity": 27, "lead_time_to_ship_max_days": 2}
    ]
    patches = world.fake.requests("patchListingsItem")
    assert {p["body"]["productType"] for p in patches} == {"SWEATSHIRT"}
    assert world.fake.throttled() == 0
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    assert Listing.objects.get(pk=world.hoodie.pk).last_pushed_qty == 27


def test_an_amazon_order_reserves_through_the_poller_and_its_cancel_releases(celery_worker, amazon_shop):  # noqa: F811
    world = amazon_shop
    celery_worker()
    first_sync(world)
    amazon_order = world.fake.create_order([("AMZ-HOOD-M", 3), ("AMZ-KIT", 1)])
    assert world.fake.quantity("AMZ-HOOD-M") == 27  # Amazon takes the units off the offer at once

    poll_until(world, lambda: Order.objects.filter(channel=world.channel, external_id=amazon_order).exists())

    stored = Order.objects.get(channel=world.channel, external_id=amazon_order)
    assert stored.status == Order.Status.CONFIRMED  # Unshipped: paid, to be shipped by the merchant
    assert level("HOOD-M") == (30, 4) and level("CAP") == (10, 1)
    # The reservation moved the availability: Amazon is told the new numbers within tier 1.
    wait_for(lambda: world.fake.quantity("AMZ-HOOD-M") == 26 and world.fake.quantity("AMZ-KIT") == 9, timeout=10)

    world.fake.cancel_order(amazon_order)
    poll_until(world, lambda: Order.objects.get(pk=stored.pk).status == Order.Status.CANCELLED)

    assert level("HOOD-M") == (30, 0) and level("CAP") == (10, 0)
    wait_for(lambda: world.fake.quantity("AMZ-HOOD-M") == 30 and world.fake.quantity("AMZ-KIT") == 10, timeout=10)
    # Polling again changes nothing: the same Amazon order is applied idempotently.
    poll(world)
    time.sleep(1.0)
    assert Order.objects.filter(channel=world.channel, external_id=amazon_order).count() == 1
    assert level("HOOD-M") == (30, 0)


def test_a_pending_amazon_order_reserves_and_shipping_fulfils(celery_worker, amazon_shop):  # noqa: F811
    world = amazon_shop
    celery_worker()
    amazon_order = world.fake.create_order([("AMZ-HOOD-M", 2)], status="Pending")
    poll_until(world, lambda: Order.objects.filter(external_id=amazon_order).exists())
    # Not paid yet, but sold on Amazon: imported (Stockroom cannot refuse it), holding its units, nothing shipped.
    assert Order.objects.get(external_id=amazon_order).status in Order.OPEN_STATUSES
    assert level("HOOD-M") == (30, 2)

    world.fake.set_order_status(amazon_order, "Unshipped")
    world.fake.ship_order(amazon_order)
    poll_until(world, lambda: Order.objects.get(external_id=amazon_order).status == Order.Status.FULFILLED)
    assert level("HOOD-M") == (28, 0)


def test_amazon_has_no_webhooks_so_any_delivery_is_refused(amazon_shop, client):
    response = client.post(
        f"/api/v1/channels/{amazon_shop.channel.code}/webhooks/amazon/",
        data=b'{"NotificationType": "ORDER_CHANGE"}',
        content_type="application/json",
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"


def test_a_worker_killed_mid_push_loses_nothing(celery_worker, amazon_shop):  # noqa: F811
    world = amazon_shop
    first = celery_worker()
    first_sync(world)
    patched = len(world.fake.requests("patchListingsItem"))
    world.fake.request_arrived.clear()
    world.fake.delays["patchListingsItem"] = 2.0  # Amazon is slow: the patch is in flight when the worker dies
    sale("HOOD-M", 2, "till-1")
    assert world.fake.request_arrived.wait(10)
    first.kill()
    assert SyncWork.objects.filter(listing=world.hoodie).exists()  # not acknowledged, so still pending
    sale("HOOD-M", 1, "till-2")  # and the shop sells on while no worker runs
    world.fake.delays.clear()
    # Amazon still applies the orphaned patch (28); only then does a new worker start, so the test knows
    # which of the two writes came last.
    wait_for(lambda: len(world.fake.requests("patchListingsItem")) > patched, timeout=10)
    assert world.fake.quantity("AMZ-HOOD-M") == 28

    celery_worker()
    # The dead worker's lock expires by itself; the beat sweep finds the work.
    wait_for(lambda: sync_sweep() is not None and world.fake.quantity("AMZ-HOOD-M") == 27, timeout=20, every=0.5)
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    assert world.fake.quantity("AMZ-HOOD-M") == 27
    assert Listing.objects.get(pk=world.hoodie.pk).last_pushed_qty == 27


# --- through the engine, without a worker ------------------------------------------------------------


def test_reconciliation_reads_amazon_back_and_repairs_a_hand_edit(amazon_shop):
    world = amazon_shop
    listings_sync_now(listing_ids=[world.hoodie.pk, world.kit.pk])
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    channel_push(channel_id=world.channel.pk)
    assert shows_the_truth(world) and not SyncWork.objects.exists()
    world.fake.set_quantity("AMZ-HOOD-M", 99)  # someone typed a number into Seller Central

    report = channel_reconcile(channel_id=world.channel.pk)

    assert (report.checked, report.drifted) == (2, 1)
    assert len(world.fake.requests("searchListingsItems")) >= 1
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    channel_push(channel_id=world.channel.pk)
    assert world.fake.quantity("AMZ-HOOD-M") == 30


def test_a_bulk_change_goes_to_amazon_as_one_listings_feed(amazon_shop):
    world = amazon_shop
    hoodie = world.stock.hoodie
    many = [listing(world.channel, product_of(f"HOOD-V{n}", {hoodie: 1}), f"amz-v{n}") for n in range(30)]
    for n, variant in enumerate(many):
        world.fake.add_listing(f"amz-v{n}", 0, product_type="SWEATSHIRT")  # no external_id: the channel SKU
        assert variant.external_id == ""
    listings_sync_now(listing_ids=[lst.pk for lst in many])
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))

    report = channel_push(channel_id=world.channel.pk)

    assert report.updates == 30 and report.failures == 0
    assert not world.fake.requests("patchListingsItem")
    assert len(world.fake.requests("createFeed")) == 1
    assert not SyncWork.objects.exists()
    wait_for(lambda: all(world.fake.quantity(f"amz-v{n}") == 30 for n in range(30)), timeout=5)
