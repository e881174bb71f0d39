"""A channel's location map (``settings.location_map``): validated, kept in step with the channel's locations,
migrated from ``location_id``, offered on the onboarding page, and what each platform location shows."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps as django_apps

from apps.catalog.tests.factories import LocationFactory, stock
from apps.channels.connectors.base import location_map
from apps.channels.connectors.shopify import ShopifySettings, order_from_rest
from apps.channels.models import Channel
from apps.channels.selectors import listings_availability_by_place
from apps.channels.services.config import channel_create, channel_update
from apps.channels.services.connection import ConnectorConfigInvalid
from apps.channels.tests.factories import listing, shop
from sandbox.fakes.shopify import ShopifyFake, gid

pytestmark = pytest.mark.django_db

L1, L2, L3 = "gid://shopify/Location/1", "gid://shopify/Location/2", "gid://shopify/Location/3"
SHOP = "https://demo.myshopify.com"


def settings_of(data: dict) -> dict:
    check = ShopifySettings(data={"shop_url": SHOP, **data})
    assert check.is_valid(), check.errors
    return dict(check.validated_data)


def test_location_id_alone_is_a_one_entry_map_of_every_location_the_channel_sells_from():
    cleaned = settings_of({"location_id": "1"})
    assert cleaned["location_map"] == {L1: []}
    assert location_map({"location_id": L1}) == {L1: []}  # a channel saved before maps existed


def test_a_map_names_each_location_once_and_location_id_becomes_its_first():
    cleaned = settings_of({"location_map": {"1": ["WH"], L2: ["S1", "S1"]}})
    assert cleaned["location_map"] == {L1: ["WH"], L2: ["S1"]}
    assert cleaned["location_id"] == L1


@pytest.mark.parametrize(
    ("mapped", "why"),
    [
        ({L1: ["WH"], L2: ["WH"]}, "shown at both"),  # one stock shown twice would be sold twice
        ({L1: ["WH"], L2: []}, "name the Stockroom locations"),
        ({"Location/9": ["WH"]}, "looks like"),
    ],
)
def test_a_map_that_would_sell_stock_twice_or_is_unreadable_is_refused(mapped, why):
    check = ShopifySettings(data={"shop_url": SHOP, "location_map": mapped})
    assert not check.is_valid()
    assert why in str(check.errors)


def test_a_mapped_location_must_be_one_the_channel_sells_from():
    s = shop()
    fields = {
        "code": "web",
        "name": "Shop",
        "connector": "shopify",
        "settings": {"shop_url": SHOP, "location_map": {L1: ["WH"], L2: ["S1"]}},
        "credentials": {"access_token": "shpat_x", "webhook_secret": "w"},
    }
    with pytest.raises(ConnectorConfigInvalid) as refused:
        channel_create(fields=fields, location_ids=[s.warehouse.pk])
    assert "Not a location this channel sells from: S1" in str(refused.value.data)
    channel = channel_create(fields=fields, location_ids=[s.warehouse.pk, s.store.pk])
    with pytest.raises(ConnectorConfigInvalid) as refused:
        channel_update(channel=channel, fields={}, location_ids=[s.warehouse.pk])
    assert "S1" in str(refused.value.data)


def test_existing_channels_are_migrated_to_a_one_entry_map():
    migration = importlib.import_module("apps.channels.migrations.0014_location_map")
    s = shop()
    channel = Channel.objects.create(code="old", name="Old", connector="shopify", settings={"location_id": L1})
    channel.channel_locations.create(location=s.warehouse, priority=0)
    untouched = Channel.objects.create(code="push", name="Push")
    migration.location_id_to_map(django_apps, None)
    channel.refresh_from_db()
    untouched.refresh_from_db()
    assert channel.settings == {"location_id": L1, "location_map": {L1: []}}
    assert untouched.settings == {}


def test_each_platform_location_shows_its_own_locations_atp_with_the_listings_rules():
    s = shop(hoodies=40)
    s2 = LocationFactory(code="S2")
    stock(s.hoodie, s.store, 11)
    stock(s.hoodie, s2, 3)
    channel = channel_create(fields={"code": "web", "name": "Shop"}, location_ids=[s.warehouse.pk, s.store.pk, s2.pk])
    lst = listing(channel, s.single, "HOOD", buffer=1, coefficient=Decimal("0.5"), max_qty=15)
    shown = listings_availability_by_place(
        [lst.pk], {L1: ["WH"], L2: ["S1"], L3: ["S2", "S1"], "gid://shopify/Location/4": []}
    )[lst.pk]
    # (40 - 1) * 0.5 = 19 capped at 15; (11 - 1) * 0.5 = 5; (14 - 1) * 0.5 = 6; every location: (54 - 1) * 0.5 -> 15
    assert shown == {L1: 15, L2: 5, L3: 6, "gid://shopify/Location/4": 15}


def test_a_pos_order_webhook_names_its_store_and_an_online_one_does_not():
    body = {"id": 5, "line_items": [], "source_name": "pos", "location_id": 2}
    pos = order_from_rest(body)
    assert (pos.source, pos.location) == ("pos", L2)
    online = order_from_rest({**body, "source_name": "web", "location_id": None})
    assert (online.source, online.location) == ("", "")


def test_the_onboarding_page_offers_the_map_from_the_shops_locations(admin_client):
    s = shop()
    s2 = LocationFactory(code="S2")
    fake = ShopifyFake(access_token="shpat_onboard").start()
    try:
        store1 = gid("Location", fake.add_location("Store 1"))
        store2 = gid("Location", fake.add_location("Store 2"))
        channel = channel_create(
            fields={
                "code": "web",
                "name": "Shop",
                "connector": "shopify",
                "settings": {"shop_url": fake.url},
                "credentials": {"access_token": "shpat_onboard", "webhook_secret": "w"},
            }
        )
        url = f"/admin/channels/channel/{channel.pk}/onboarding/"
        page = admin_client.get(url).content.decode()
        assert 'id="location-map"' in page
        assert all(f'name="map:{place}"' in page for place in (fake.location_id, store1, store2))
        admin_client.post(
            url,
            {
                "step": "locations",
                f"map:{fake.location_id}": "WH",
                f"map:{store1}": "S1",
                f"map:{store2}": "S2",
                "locations": [s.warehouse.pk, s.store.pk, s2.pk],
            },
            follow=True,
        )
        channel.refresh_from_db()
        assert channel.settings["location_map"] == {fake.location_id: ["WH"], store1: ["S1"], store2: ["S2"]}
        assert channel.settings["location_id"] == fake.location_id
        page = admin_client.get(url).content.decode()
        assert f'name="map:{store1}" value="S1"' in page
    finally:
        fake.stop()
