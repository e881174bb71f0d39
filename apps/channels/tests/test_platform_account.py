"""One channel per platform account: a second channel on the same shop, store or seller and marketplace
would import every order twice, so it is refused (issue: an order of 3 reserved 6)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps

from apps.catalog.tests.factories import LocationFactory
from apps.channels.models import Channel
from apps.channels.services.config import PlatformAccountTaken, channel_create, channel_update

pytestmark = pytest.mark.django_db

SHOPIFY = {
    "connector": "shopify",
    "settings": {"shop_url": "https://hoodies.myshopify.com", "location_id": "gid://shopify/Location/1"},
    "credentials": {"access_token": "shpat_one_two_three", "webhook_secret": "whsec_one_two_three"},
}
AMAZON_SETTINGS = {"seller_id": "A1SELLER", "marketplace_id": "ATVPDKIKX0DER"}
AMAZON = {
    "connector": "amazon",
    "settings": AMAZON_SETTINGS,
    "credentials": {"client_id": "amzn1.app", "client_secret": "s3cret-client", "refresh_token": "Atzr|refresh"},
}


def channel(code: str, spec: dict, **settings: str) -> Channel:
    fields = {"code": code, "name": code, **spec, "settings": {**spec["settings"], **settings}}
    return channel_create(fields=fields)


def test_a_second_channel_on_the_same_shop_is_refused_through_the_api(staff_api):
    LocationFactory(code="WH")
    first = staff_api.post("/api/v1/channels/", {"code": "shop1", "name": "Shop", **SHOPIFY}, format="json")
    assert first.status_code == 201, first.content
    # The same shop spelled another way (upper case, a trailing slash) is the same account.
    again = {**SHOPIFY, "settings": {**SHOPIFY["settings"], "shop_url": "https://HOODIES.myshopify.com/"}}
    second = staff_api.post("/api/v1/channels/", {"code": "shop2", "name": "Shop", **again}, format="json")
    assert second.status_code == 409
    body = second.json()
    assert body["code"] == "platform_account_taken" and "shop1" in body["detail"] and "twice" in body["detail"]
    assert list(Channel.objects.values_list("code", flat=True)) == ["shop1"]
    other = {**SHOPIFY, "settings": {**SHOPIFY["settings"], "shop_url": "https://caps.myshopify.com"}}
    assert staff_api.post("/api/v1/channels/", {"code": "shop3", "name": "Caps", **other},
                          format="json").status_code == 201  # fmt: skip


def test_moving_a_channel_onto_an_account_another_channel_imports_is_refused():
    channel("shop1", SHOPIFY)
    caps = channel("shop2", SHOPIFY, shop_url="https://caps.myshopify.com")
    with pytest.raises(PlatformAccountTaken):
        channel_update(
            channel=caps,
            fields={"settings": {**SHOPIFY["settings"]}, "credentials": dict(SHOPIFY["credentials"])},
        )
    caps.refresh_from_db()
    assert caps.platform_account == "caps.myshopify.com"
    # Its own settings changed otherwise keep its account.
    channel_update(channel=caps, fields={"settings": {**SHOPIFY["settings"], "shop_url": "https://caps.myshopify.com",
                                                       "location_id": "gid://shopify/Location/2"}})  # fmt: skip
    caps.refresh_from_db()
    assert caps.platform_account == "caps.myshopify.com"


def test_amazon_accounts_are_a_seller_in_a_marketplace():
    channel("us", AMAZON)
    with pytest.raises(PlatformAccountTaken):
        channel("us2", AMAZON)
    channel("de", AMAZON, marketplace_id="A1PA6795UKMFR9")  # the same seller elsewhere is another account
    assert set(Channel.objects.values_list("platform_account", flat=True)) == {
        "A1SELLER@ATVPDKIKX0DER",
        "A1SELLER@A1PA6795UKMFR9",
    }


def test_push_protocol_channels_share_no_account():
    for code in ("app1", "app2"):
        channel_create(fields={"code": code, "name": code, "push_url": "http://127.0.0.1:9/push"})
    assert set(Channel.objects.values_list("platform_account", flat=True)) == {""}


def test_the_migration_gives_existing_channels_their_account_and_leaves_a_second_one_blank():
    migration = importlib.import_module("apps.channels.migrations.0011_one_channel_per_platform_account")
    first = channel("shop1", SHOPIFY)
    Channel.objects.filter(pk=first.pk).update(platform_account="")
    # A duplicate made before the rule existed (written directly, as old data would be).
    Channel.objects.create(code="shop2", name="dup", connector="shopify", settings=dict(SHOPIFY["settings"]))
    migration.accounts_fill(django_apps, None)
    accounts = dict(Channel.objects.values_list("code", "platform_account"))
    assert accounts == {"shop1": "hoodies.myshopify.com", "shop2": ""}
