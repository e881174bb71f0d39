"""The order truth sweep end to end: beat's task in a real worker re-reads open orders from the platform.

Webhooks were lost (a cancel, a shipment, an edit): nothing else tells Stockroom, and the sweep,
run by a real Celery worker, brings each order and the stock to what the platform shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.connectors.base import OrderLine, PlatformOrder
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.tests.conftest import (  # noqa: F401 (fixtures)
    celery_worker,
    clean_sync_redis,
    fast_sync,
    wait_for,
)
from apps.core.secrets import encrypt_json
from apps.orders.models import Order
from apps.orders.services.intake import platform_order_apply
from apps.orders.tasks import platform_orders_sweep_all
from apps.orders.tests import sweep_platform
from apps.orders.tests.factories import stock_invariants

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def server() -> Iterator[sweep_platform.OrdersServer]:
    sweep_platform.register()
    running = sweep_platform.OrdersServer().start()
    try:
        yield running
    finally:
        running.stop()
        sweep_platform.connectors.CONNECTORS.pop(sweep_platform.NAME, None)
        sweep_platform.connectors.connector_named.cache_clear()


def test_a_worker_sweep_releases_a_lost_cancel_fulfils_a_lost_shipment_and_applies_a_lost_edit(
    celery_worker,  # noqa: F811 (the imported fixture)
    server,
):
    warehouse = LocationFactory(code="wh")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 10)
    channel = Channel.objects.create(
        code="plat",
        name="Platform shop",
        kind=Channel.Kind.WEBSHOP,
        connector=sweep_platform.NAME,
        settings={"shop_url": server.url, "location_id": "1"},
        credentials_encrypted=encrypt_json({"access_token": "t"}),
    )
    ChannelLocation.objects.create(channel=channel, location=warehouse, priority=0)
    Listing.objects.create(channel=channel, channel_sku="HOOD-M", product=product_of("HOOD-P", {hood: 1}))
    for external_id, units in (("lost-cancel", 2), ("lost-shipment", 1), ("lost-edit", 1)):
        placed = PlatformOrder(external_id, PlatformOrder.Status.OPEN, (OrderLine("HOOD-M", units),))
        platform_order_apply(channel=channel, order=placed, actor="webhook", source="webhook")
    Order.objects.update(platform_seen_at=timezone.now() - timedelta(hours=1))  # the later webhooks were lost
    assert StockLevel.objects.get(item=hood).reserved == 4
    server.orders = {
        "lost-cancel": {"id": "lost-cancel", "status": "cancelled", "lines": []},
        "lost-shipment": {
            "id": "lost-shipment",
            "status": "fulfilled",
            "lines": [{"sku": "HOOD-M", "quantity": 1, "fulfilled": 1}],
        },
        "lost-edit": {"id": "lost-edit", "status": "open", "lines": [{"sku": "HOOD-M", "quantity": 3}]},
    }
    celery_worker(include="apps.orders.tests.sweep_platform")
    platform_orders_sweep_all.delay()  # what beat sends every ORDERS_SWEEP_EVERY_S

    def converged() -> bool:
        level = StockLevel.objects.get(item=hood)
        return (level.on_hand, level.reserved) == (9, 3)

    wait_for(converged, timeout=30)
    assert dict(Order.objects.values_list("external_id", "status")) == {
        "lost-cancel": "cancelled",
        "lost-shipment": "fulfilled",
        "lost-edit": "confirmed",
    }
    assert Order.objects.get(external_id="lost-edit").lines.get().quantity == 3
    assert all(len(ids) <= sweep_platform.HttpScriptedConnector.orders_get_batch for ids in server.asked)
    assert stock_invariants()["oversold"] == 0
    assert not Order.objects.filter(platform_seen_at__lt=timezone.now() - timedelta(minutes=5)).exists()
