from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import Item, Location, Product
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.tests.scripted import scripted  # noqa: F401  (the in-test platform connector, a fixture)
from apps.orders.tests.factories import PLATFORM_WEBHOOK_SECRET, channel_of, listing_of


@dataclass
class Shop:
    """A webshop selling from a warehouse first, then a store; a single item, a bundle, a multipack."""

    channel: Channel
    warehouse: Location
    store: Location
    hood: Item
    cap: Item
    hood_product: Product
    kit: Product
    pack: Product


@pytest.fixture
def shop(db) -> Shop:
    warehouse = LocationFactory(code="wh", kind=Location.Kind.WAREHOUSE)
    store = LocationFactory(code="s1", kind=Location.Kind.STORE)
    hood, cap = ItemFactory(sku="HOOD"), ItemFactory(sku="CAP")
    hood_product = product_of("HOOD-P", {hood: 1})
    kit = product_of("KIT", {hood: 1, cap: 2})
    pack = product_of("CAP-3", {cap: 3}, kind=Product.Kind.MULTIPACK)
    channel = channel_of("web", [warehouse, store])
    # These tests import through it too: a webshop the merchant allowed to import (off by default).
    channel.can_import = True
    channel.save(update_fields=["can_import"])
    listing_of(channel, "hood", hood_product)
    listing_of(channel, "kit", kit)
    listing_of(channel, "caps", pack)
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 10)
    stock(hood, store, 5)
    stock(cap, store, 4)
    return Shop(channel, warehouse, store, hood, cap, hood_product, kit, pack)


@pytest.fixture
def platform(scripted):  # noqa: F811 (the fixture above)
    """A shop on the scripted platform: 10 hoodies and 10 caps in the warehouse."""
    connector = scripted()
    warehouse = LocationFactory(code="wh")
    hood, cap = ItemFactory(sku="HOOD"), ItemFactory(sku="CAP")
    channel = Channel.objects.create(
        code="plat",
        name="Platform shop",
        kind=Channel.Kind.WEBSHOP,  # a webshop: imports because it is on a platform connector
        connector="scripted",
        settings={"shop_url": "https://shop.example.com", "location_id": "1"},
        orders_imported_until=timezone.now() - timedelta(hours=1),
    )
    from apps.core.secrets import encrypt_json

    channel.credentials_encrypted = encrypt_json({"access_token": "t", "webhook_secret": PLATFORM_WEBHOOK_SECRET})
    channel.save(update_fields=["credentials_encrypted"])
    ChannelLocation.objects.create(channel=channel, location=warehouse, priority=0)
    Listing.objects.create(channel=channel, channel_sku="HOOD-M", product=product_of("HOOD-P", {hood: 1}),
                           external_id="gid://item/hood")  # fmt: skip
    Listing.objects.create(channel=channel, channel_sku="CAP", product=product_of("CAP-P", {cap: 1}),
                           external_id="gid://item/cap")  # fmt: skip
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 10)
    return connector.platform, channel
