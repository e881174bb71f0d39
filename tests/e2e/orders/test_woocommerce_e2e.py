"""WooCommerce end to end: real Celery workers push to the fake store, whose signed webhooks reach the live API.

Stockroom runs as it does in production (the live server takes the webhooks, worker processes push),
and the fake store keeps its own stock as WooCommerce does: it lowers a product's count when an order
is paid and raises it back on a cancel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.channels.connectors.woocommerce import external_id_for, sign_webhook
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.config import channel_create, listings_sync_now
from apps.channels.services.work import sync_sweep
from apps.channels.tests import conftest as sync_machinery
from apps.channels.tests.factories import listing, shop
from apps.orders import tasks
from apps.orders.models import Order
from sandbox.fakes.woocommerce import WooCommerceFake

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# The channel tests' machinery: real Celery worker processes, short sync tunables, clean Redis keys.
celery_worker = sync_machinery.celery_worker
fast_sync = sync_machinery.fast_sync
clean_sync_redis = sync_machinery.clean_sync_redis
wait_for = sync_machinery.wait_for

WEBHOOK_PATH = "/api/v1/channels/woo/webhooks/woocommerce/"


@dataclass
class WooShop:
    store: WooCommerceFake
    channel: Channel
    hoodie: Listing  # a simple product
    kit: Listing  # a variation of a variable product
    hoodie_id: int
    kit_id: int  # the variation's id
    kit_ref: str  # "<parent>/<variation>"


@pytest.fixture
def woo(live_server) -> Iterator[WooShop]:
    """40 hoodies and 40 caps in the warehouse, sold on a WooCommerce store as a hoodie and a kit variation."""
    s = shop(hoodies=40, caps=40)
    store = WooCommerceFake(webhook_url=live_server.url + WEBHOOK_PATH).start()
    hoodie_id = store.add_product(sku="WOO-HOOD", stock_quantity=0)
    bundle = store.add_product(sku="WOO-KIT")
    kit_id = store.add_variation(bundle, sku="WOO-KIT-M")  # not counting stock until Stockroom says so
    channel = channel_create(
        fields={
            "code": "woo",
            "name": "Webshop",
            "kind": Channel.Kind.WEBSHOP,
            "connector": "woocommerce",
            "settings": store.channel_settings(),
            "credentials": store.channel_credentials(),
            "rate_per_s": 20,
            "burst": 10,
        },
        location_ids=[s.warehouse.pk],
        state="live",  # linked by hand here: pushed from the start, no go-live
    )
    kit_ref = external_id_for(bundle, kit_id)
    hoodie = listing(channel, s.single, "WOO-HOOD", external_id=str(hoodie_id))
    kit = listing(channel, s.kit, "WOO-KIT-M", external_id=kit_ref)
    yield WooShop(store, channel, hoodie, kit, hoodie_id, kit_id, kit_ref)
    store.stop()


def shown(woo: WooShop) -> tuple[int | None, int | None]:
    return woo.store.quantity(woo.hoodie_id), woo.store.quantity(woo.kit_id)


def truth(woo: WooShop) -> tuple[int, int]:
    available = listings_availability([woo.hoodie.pk, woo.kit.pk])
    return available[woo.hoodie.pk].available, available[woo.kit.pk].available


def settled(woo: WooShop) -> bool:
    return not SyncWork.objects.exists() and shown(woo) == truth(woo)


def first_sync(woo: WooShop) -> None:
    listings_sync_now(listing_ids=[woo.hoodie.pk, woo.kit.pk])
    wait_for(lambda: settled(woo), timeout=15)
    assert shown(woo) == (40, 40)


def poll(woo: WooShop) -> bool:
    """What the beat does every minute: poll the channel's orders (on the worker)."""
    tasks.platform_orders_poll.delay(woo.channel.pk)
    return True


def beat(woo: WooShop) -> bool:
    """The beat's order poll and its sweep of due sync work."""
    poll(woo)
    sync_sweep()
    return True


def reserved(sku: str) -> int:
    return StockLevel.objects.get(item__sku=sku, location__code="WH").reserved


def test_a_sale_in_stockroom_reaches_the_store_within_tier_one(celery_worker, woo: WooShop) -> None:
    celery_worker()
    first_sync(woo)

    stock_movement_record(
        location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=3, idempotency_key="till-1",
        actor="till",
    )  # fmt: skip

    waited = wait_for(lambda: shown(woo) == (37, 37), timeout=10)
    assert waited < 4, f"tier 1 took {waited:.1f} s"
    wait_for(lambda: settled(woo), timeout=10)
    batches = woo.store.requests("/batch")
    assert {r["path"] for r in batches} == {
        "/wp-json/wc/v3/products/batch",
        f"/wp-json/wc/v3/products/{woo.kit_ref.split('/')[0]}/variations/batch",
    }


def test_an_order_on_the_store_reserves_and_its_cancel_releases(celery_worker, woo: WooShop) -> None:
    celery_worker()
    first_sync(woo)

    order_id = woo.store.create_order([(woo.hoodie_id, 2), (woo.kit_ref, 1)])

    wait_for(lambda: Order.objects.filter(channel=woo.channel, external_id=str(order_id)).exists(), timeout=10)
    order = Order.objects.get(channel=woo.channel, external_id=str(order_id))
    assert order.status == Order.Status.CONFIRMED
    assert (reserved("HOOD-M"), reserved("CAP")) == (3, 1)
    # The store lowered its own counts when the order was paid; Stockroom's pushes agree with it.
    wait_for(lambda: settled(woo), timeout=15)
    assert shown(woo) == (37, 37)

    woo.store.cancel_order(order_id)

    wait_for(lambda: Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED, timeout=10)
    assert (reserved("HOOD-M"), reserved("CAP")) == (0, 0)
    # The store put the units back itself, so it shows more than Stockroom last told it: that is a
    # mismatch, and the raise waits until the order poll (the beat's, every minute) has read past it.
    assert woo.store.quantity(woo.hoodie_id) == 39
    wait_for(lambda: beat(woo) and settled(woo), timeout=20, every=1.0)
    assert shown(woo) == (40, 40)
    assert all(d["status"] == 200 for d in woo.store.deliveries())


def test_a_forged_webhook_gets_401_and_changes_nothing(live_server, woo: WooShop) -> None:
    body = b'{"id": 999, "status": "processing", "line_items": [{"product_id": 1, "variation_id": 0, "quantity": 40}]}'
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Delivery-ID": "forged",
        "X-WC-Webhook-Signature": sign_webhook(body, "a guess"),
    }

    response = requests.post(live_server.url + WEBHOOK_PATH, data=body, headers=headers, timeout=10)

    assert response.status_code == 401
    assert not Order.objects.exists()
    unsigned = requests.post(live_server.url + WEBHOOK_PATH, data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    # The store's ping when a webhook is saved is answered, and records nothing.
    assert woo.store.ping() == 200 and not Order.objects.exists()


def test_an_order_whose_webhook_was_lost_comes_in_with_the_poll(celery_worker, woo: WooShop) -> None:
    celery_worker()
    first_sync(woo)
    woo.store.lose_webhooks(1)

    order_id = woo.store.create_order([(woo.hoodie_id, 4)])
    woo.store.wait_for_deliveries(1)
    time.sleep(0.5)
    assert not Order.objects.exists()

    poll(woo)

    wait_for(lambda: Order.objects.filter(external_id=str(order_id)).exists(), timeout=15)
    assert reserved("HOOD-M") == 4
    wait_for(lambda: settled(woo), timeout=15)
    assert shown(woo) == (36, 36)
    assert woo.store.requests("/orders")[0]["query"]["dates_are_gmt"] == "true"


def test_a_worker_killed_mid_push_loses_nothing(celery_worker, woo: WooShop) -> None:
    first = celery_worker()
    first_sync(woo)
    woo.store.batch_arrived.clear()
    woo.store.delay_s = 3.0  # the store is slow: the push is in flight when the worker dies

    stock_movement_record(
        location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=2, idempotency_key="till-2",
        actor="till",
    )  # fmt: skip
    assert woo.store.batch_arrived.wait(10)
    first.kill()
    assert SyncWork.objects.exists()  # not acknowledged, so still pending

    woo.store.delay_s = 0.0
    celery_worker()
    # The dead worker's lock expires by itself; the beat sweep finds the work again.
    wait_for(lambda: sync_sweep() is not None and settled(woo), timeout=30, every=0.5)
    assert shown(woo) == (38, 38)
    assert dict(Listing.objects.values_list("channel_sku", "last_pushed_qty")) == {"WOO-HOOD": 38, "WOO-KIT-M": 38}
