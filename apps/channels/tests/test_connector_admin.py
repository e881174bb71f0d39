"""The channel page's connector section: settings and write-only credentials from the connector's serializers,
saved through the channel services, and "Save and test connection"."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from apps.catalog.tests.factories import ItemFactory, product_of
from apps.channels.models import Channel, Listing
from apps.channels.services.config import channel_create
from apps.channels.services.connection import channel_credentials
from apps.channels.tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

SHOP = {"shop_url": "https://shop.example.com", "location_id": "gid://shopify/Location/1"}


def form_of(channel: Channel, **changes: str) -> dict[str, str]:
    data = {
        "code": channel.code, "name": channel.name, "kind": channel.kind, "connector": channel.connector,
        "push_url": channel.push_url, "rate_per_s": "5", "burst": "10", "batch_size": "100", "coefficient": "1",
        "buffer": "0", "is_active": "on", "can_import": "unknown", "import_cap_units": "",
        "channel_locations-TOTAL_FORMS": "0", "channel_locations-INITIAL_FORMS": "0",
        "channel_locations-MIN_NUM_FORMS": "0", "channel_locations-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    return {**data, **changes}


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def platform(scripted):
    return scripted("shopify")


def test_the_page_offers_each_connectors_settings_and_write_only_credentials(platform, admin_client):
    channel = channel_create(
        fields={"code": "shop", "name": "Shop", "connector": "shopify", "settings": SHOP,
                "credentials": {"access_token": "shpat_visible?"}},
    )  # fmt: skip
    page = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    assert 'name="connector"' in page and "Scripted platform" in page
    assert 'name="settings__shopify__shop_url"' in page and 'value="https://shop.example.com"' in page
    assert 'name="credentials__shopify__access_token"' in page and 'type="password"' in page
    assert "shpat_visible?" not in page and "Stored (not shown)" in page
    assert "connector-section connector-shopify" in page and 'id="test-connection"' in page


def test_switching_a_channel_to_a_platform_saves_settings_and_encrypted_credentials(platform, admin_client):
    channel = ChannelFactory(code="web", connector="stockroom")
    form = form_of(
        channel,
        connector="shopify",
        settings__shopify__shop_url=SHOP["shop_url"],
        settings__shopify__location_id=SHOP["location_id"],
        credentials__shopify__access_token="shpat_new",
    )
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    channel.refresh_from_db()
    assert channel.connector == "shopify" and channel.settings == {**SHOP, "batch_limit": 50}
    assert channel_credentials(channel) == {"access_token": "shpat_new"}
    assert "shpat_new" not in channel.credentials_encrypted
    assert channel.orders_imported_until is not None
    # Saved again with the credential left blank: the stored one stays.
    form["connector"] = "shopify"
    form.pop("credentials__shopify__access_token")
    form["credentials__shopify__webhook_secret"] = "whsec"
    assert admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form).status_code == 302
    channel.refresh_from_db()
    assert channel_credentials(channel) == {"access_token": "shpat_new", "webhook_secret": "whsec"}


def test_the_connector_refuses_bad_settings_field_by_field(platform, admin_client):
    channel = ChannelFactory(code="web", connector="stockroom")
    form = form_of(channel, connector="shopify", settings__shopify__shop_url="not a url")
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) >= {"settings__shopify__shop_url", "settings__shopify__location_id"}
    assert "credentials__shopify__access_token" in errors
    channel.refresh_from_db()
    assert channel.connector == "stockroom"


def test_save_and_test_connection_tells_the_merchant(platform, admin_client):
    channel = channel_create(
        fields={"code": "shop", "name": "Shop", "connector": "shopify", "settings": SHOP,
                "credentials": {"access_token": "good"}},
    )  # fmt: skip
    form = form_of(channel, settings__shopify__shop_url=SHOP["shop_url"],
                   settings__shopify__location_id=SHOP["location_id"], _test_connection="1")  # fmt: skip
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)
    assert response.status_code == 302 and response["Location"].endswith(f"/{channel.pk}/change/")
    assert messages_of(response) == [
        f"Test connection of shop: Connected to {SHOP['shop_url']}, location {SHOP['location_id']}."
    ]
    admin_client.get(response["Location"])  # the merchant reads the message
    form["credentials__shopify__access_token"] = "wrong"
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)
    assert messages_of(response) == [
        "Test connection of shop: Scripted platform: 401 Unauthorized: the access token was refused"
    ]


def test_the_list_action_tests_each_selected_channel(platform, admin_client):
    channel = channel_create(fields={"code": "shop", "name": "Shop", "connector": "shopify", "settings": SHOP})
    response = admin_client.post(
        "/admin/channels/channel/", {"action": "test_connection", "_selected_action": [channel.pk]}
    )
    assert response.status_code == 302
    assert messages_of(response) == ["Test connection of shop: Scripted platform: settings or credentials are missing."]


def test_a_listing_shows_and_edits_its_external_id(admin_client):
    channel = ChannelFactory(code="web")
    product = product_of("HOOD", {ItemFactory(sku="HOOD"): 1})
    listing = Listing.objects.create(channel=channel, product=product, channel_sku="H", external_id="gid://item/1")
    assert "gid://item/1" in admin_client.get("/admin/channels/listing/").content.decode()
    page = admin_client.get(f"/admin/channels/listing/{listing.pk}/change/").content.decode()
    assert 'name="external_id"' in page
    form = {"channel": channel.pk, "channel_sku": "H", "product": product.pk, "external_id": "gid://item/2",
            "is_active": "on"}  # fmt: skip
    assert admin_client.post(f"/admin/channels/listing/{listing.pk}/change/", form).status_code == 302
    listing.refresh_from_db()
    assert listing.external_id == "gid://item/2"


def test_the_channel_form_speaks_plainly_and_shows_its_placeholders(admin_client):
    """The real Shopify connector's section: placeholders in help texts survive the admin's HTML."""
    page = admin_client.get("/admin/channels/channel/add/").content.decode()
    assert "https://&lt;shop&gt;.myshopify.com" in page  # shown as https://<shop>.myshopify.com
    assert "gid://shopify/Location/&lt;id&gt;" in page
    for label in ("Share of stock shown", "Units held back", "Pushes per second", "Pushes at once"):
        assert f">{label}:<" in page, label
    assert "0.8 shows 80 %" in page and "a burst, after a quiet while" in page
    assert 'name="settings__shopify__location_id"' in page
    assert 'name="settings__shopify__location_id" class="vTextField"' in page  # wide: a full GID fits


def test_a_healthy_channel_shows_no_red_cross_in_the_list(admin_client):
    ChannelFactory(code="web", connector="stockroom", kind=Channel.Kind.WEBSHOP)  # may not import: not a fault
    page = admin_client.get("/admin/channels/channel/").content.decode()
    assert "icon-no.svg" not in page
    assert "50/s, 20 at once" in page
    change = admin_client.get(f"/admin/channels/channel/{Channel.objects.get().pk}/change/").content.decode()
    assert "Sync queue" in change and "so they arrive in order" in change
    assert "shard" not in change.lower()


def test_the_add_page_does_not_call_a_new_channel_live(admin_client):
    page = admin_client.get("/admin/channels/channel/add/").content.decode()
    assert "field-state" not in page and "Sync queue" not in page
