"""Factories for channels and listings, plus a small catalog that exercises bundles and multipacks."""

from __future__ import annotations

from dataclasses import dataclass

import factory

from apps.catalog.models import Item, Location, Product
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.models import Channel, ChannelLocation, Listing


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"chan{n}")
    name = factory.LazyAttribute(lambda o: f"Channel {o.code}")
    kind = Channel.Kind.MARKETPLACE
    push_url = "http://127.0.0.1:9/"
    secret = factory.Sequence(lambda n: f"secret-{n}")
    rate_per_s = 50.0
    burst = 20
    batch_size = 100


def channel_selling(code: str, locations: list[Location], **fields: object) -> Channel:
    channel = ChannelFactory(code=code, **fields)
    for priority, location in enumerate(locations):
        ChannelLocation.objects.get_or_create(channel=channel, location=location, defaults={"priority": priority})
    return channel


def listing(channel: Channel, product: Product, sku: str | None = None, **fields: object) -> Listing:
    return Listing.objects.create(
        channel=channel, product=product, channel_sku=sku or f"{channel.code}-{product.code}", **fields
    )


@dataclass
class Shop:
    store: Location
    warehouse: Location
    hoodie: Item
    cap: Item
    single: Product  # 1 hoodie
    pack: Product  # 3 hoodies (multipack)
    kit: Product  # hoodie + cap (bundle)
    cap_only: Product


def shop(*, hoodies: int = 30, caps: int = 10) -> Shop:
    store = LocationFactory(code="S1", allow_negative=True)
    warehouse = LocationFactory(code="WH")
    hoodie, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    single = product_of("HOOD-M", {hoodie: 1})
    pack = product_of("HOOD-3PACK", {hoodie: 3}, kind=Product.Kind.MULTIPACK)
    kit = product_of("KIT", {hoodie: 1, cap: 1})
    cap_only = product_of("CAP", {cap: 1})
    stock(hoodie, warehouse, hoodies)
    stock(cap, warehouse, caps)
    return Shop(store, warehouse, hoodie, cap, single, pack, kit, cap_only)
