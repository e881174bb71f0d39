"""A channel's connector through the staff API: settings checked by the connector, credentials write-only and
encrypted at rest, external ids on listings."""

from __future__ import annotations

import pytest

from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of
from apps.channels.catalog_io import ListingKind
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.services.connection import channel_credentials, channel_ref
from apps.channels.tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

SHOP = {"shop_url": "https://shop.example.com", "location_id": "gid://shopify/Location/1"}


@pytest.fixture
def platform(scripted):
    """The scripted connector stands in for a platform the API offers (its choices are the registry's)."""
    return scripted("shopify")


def error_fields(body: dict) -> dict[str, str]:
    return {entry["field"]: entry["code"] for entry in body["errors"]}


def create(staff_api, **fields):
    body = {"code": "shop", "name": "Shop", "kind": "webshop", "rate_per_s": 2, **fields}
    return staff_api.post("/api/v1/channels/", body, format="json")


def test_a_platform_channel_is_created_with_settings_and_credentials_that_are_never_shown(platform, staff_api):
    LocationFactory(code="WH")
    response = create(
        staff_api,
        connector="shopify",
        settings=SHOP,
        credentials={"access_token": "shpat_secret", "webhook_secret": "whsec_secret"},
        locations=["WH"],
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["connector"] == "shopify" and body["settings"] == {**SHOP, "batch_limit": 50}
    assert body["has_credentials"] is True and body["credential_fields"] == ["access_token", "webhook_secret"]
    assert "credentials" not in body and b"shpat_secret" not in response.content
    assert body["can_import"] is True  # a platform's orders are sold already: imported
    assert body["orders_imported_until"] is not None  # orders before connecting are counted stock
    channel = Channel.objects.get(code="shop")
    assert "shpat_secret" not in channel.credentials_encrypted
    assert channel_credentials(channel) == {"access_token": "shpat_secret", "webhook_secret": "whsec_secret"}
    listed = staff_api.get("/api/v1/channels/shop/")
    assert b"shpat_secret" not in listed.content and listed.json()["has_credentials"] is True


def test_settings_and_credentials_are_checked_by_the_connector_field_by_field(platform, staff_api):
    response = create(
        staff_api,
        connector="shopify",
        settings={"shop_url": "not a url", "colour": "red"},
        credentials={"webhook_secret": "x", "password": "hunter2"},
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert set(error_fields(body)) == {
        "settings.shop_url",
        "settings.location_id",
        "settings.colour",
        "credentials.access_token",
        "credentials.password",
    }
    assert b"hunter2" not in response.content
    assert not Channel.objects.exists()


def test_credentials_given_later_merge_over_the_stored_ones_and_a_new_connector_starts_from_none(platform, staff_api):
    assert create(staff_api, connector="shopify", settings=SHOP, credentials={"access_token": "a1"}).status_code == 201
    patch = staff_api.patch("/api/v1/channels/shop/", {"credentials": {"webhook_secret": "w1"}}, format="json")
    assert patch.status_code == 200 and patch.json()["credential_fields"] == ["access_token", "webhook_secret"]
    assert channel_credentials(Channel.objects.get()) == {"access_token": "a1", "webhook_secret": "w1"}
    # null removes one; a required one cannot go.
    patch = staff_api.patch("/api/v1/channels/shop/", {"credentials": {"webhook_secret": None}}, format="json")
    assert patch.json()["credential_fields"] == ["access_token"]
    refused = staff_api.patch("/api/v1/channels/shop/", {"credentials": {"access_token": None}}, format="json")
    assert refused.status_code == 400 and set(error_fields(refused.json())) == {"credentials.access_token"}
    # Back to the push protocol: the platform's credentials go with it.
    back = staff_api.patch("/api/v1/channels/shop/", {"connector": "stockroom", "settings": {}}, format="json")
    assert back.status_code == 200 and back.json()["has_credentials"] is False
    assert Channel.objects.get().credentials_encrypted == ""


def test_a_connector_change_pushes_every_listing_again(platform, staff_api):
    assert create(staff_api).status_code == 201
    channel = Channel.objects.get()
    product = product_of("HOOD", {ItemFactory(sku="HOOD"): 1})
    Listing.objects.create(channel=channel, product=product, channel_sku="H", last_pushed_qty=0)
    SyncWork.objects.all().delete()
    response = staff_api.patch(
        "/api/v1/channels/shop/",
        {"connector": "shopify", "settings": SHOP, "credentials": {"access_token": "t"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    work = SyncWork.objects.get()
    assert work.repush and work.reason == "channel_settings"
    assert channel_ref(Channel.objects.get()).credentials == {"access_token": "t"}


def test_an_unknown_connector_is_refused(staff_api):
    response = create(staff_api, connector="ebay")
    assert response.status_code == 400 and "connector" in error_fields(response.json())


def test_a_listings_external_id_is_its_platform_id_and_unique_per_channel(staff_api):
    channel = ChannelFactory(code="shop")
    other = ChannelFactory(code="other")
    product_of("HOOD", {ItemFactory(sku="HOOD"): 1})
    body = {"channel": "shop", "channel_sku": "H-1", "product": "HOOD", "external_id": "gid://shopify/InventoryItem/7"}
    first = staff_api.post("/api/v1/listings/", body, format="json")
    assert first.status_code == 201 and first.json()["external_id"] == "gid://shopify/InventoryItem/7"
    clash = staff_api.post("/api/v1/listings/", {**body, "channel_sku": "H-2"}, format="json")
    assert clash.status_code == 409 and error_fields(clash.json()) == {"external_id": "unique"}
    elsewhere = staff_api.post("/api/v1/listings/", {**body, "channel": "other"}, format="json")
    assert elsewhere.status_code == 201
    # Empty is "none", as often as wanted.
    for sku in ("H-3", "H-4"):
        assert (
            staff_api.post(
                "/api/v1/listings/", {**body, "channel_sku": sku, "external_id": ""}, format="json"
            ).status_code
            == 201
        )
    assert Listing.objects.filter(channel=channel, external_id="").count() == 2
    assert other.listings.count() == 1


def test_the_listings_table_exports_and_imports_external_ids():
    assert "external_id" in ListingKind.columns and "external_id" in ListingKind.field_columns
    channel = ChannelFactory(code="shop")
    product = product_of("HOOD", {ItemFactory(sku="HOOD"): 1})
    Listing.objects.create(channel=channel, product=product, channel_sku="H-1", external_id="gid://item/1")
    rows = list(ListingKind().export_rows())
    assert rows[0][0:2] == ["shop", "H-1"] and rows[0][-1] == "gid://item/1"
