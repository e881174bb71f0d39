"""A merchant (or anyone with staff rights on channels) against the outbound rule and the credential binding:

- pointing a channel at an internal address and pressing "Test connection" reaches nothing and shows
  ``outbound_refused``, never a 500 and never the internal answer;
- a host that answers with an error has its status shown, never its body;
- stored credentials never follow a changed address alone: changing ``shop_url``, ``store_url``, Amazon's
  ``endpoint``/``token_url`` or ``push_url`` without the credentials is ``credentials_required``, in the
  API and in the admin, and the next request still goes to the old address;
- Amazon's endpoints are Amazon's unless the deployment allows overriding them (the fakes).
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from apps.channels.models import Channel
from apps.channels.services.config import channel_create
from apps.channels.services.connection import channel_connection_test, channel_credentials
from apps.core.testing import admin_form
from apps.core.tests.servers import echo, http_server

pytestmark = pytest.mark.django_db

INTERNAL_STATE = "db_password_in_internal_metrics=hunter2"
LOCATION = "gid://shopify/Location/1"


def internal_service(status: int = 200):
    """What sits inside the network: a /metrics-like page that must never reach a merchant's screen."""
    return http_server(lambda seen: (status, {"Content-Type": "text/plain"}, INTERNAL_STATE.encode()))


def shopify_channel(url: str, **credentials: str) -> Channel:
    return channel_create(
        fields={
            "code": "shop", "name": "Shop", "connector": "shopify",
            "settings": {"shop_url": url, "location_id": LOCATION},
            "credentials": credentials or {"access_token": "shpat_stored", "webhook_secret": "whsec_stored"},
        }
    )  # fmt: skip


def push_channel(url: str) -> Channel:
    return channel_create(
        fields={"code": "push", "name": "Push", "push_url": url, "secret": "push-secret-stored", "rate_per_s": 5}
    )


# --- test connection against an internal address -----------------------------------------------------


@pytest.mark.parametrize("make", [push_channel, shopify_channel])
def test_test_connection_to_an_internal_address_is_refused_and_reaches_nothing(settings, make):
    settings.STOCKROOM_OUTBOUND_ALLOW = []
    with internal_service() as internal:
        channel = make(f"{internal.url}/metrics")
        result = channel_connection_test(channel=channel)
        assert internal.seen == []
    assert not result.ok and result.code == "outbound_refused"
    assert "outbound request refused: 127.0.0.1" in result.message and "loopback" in result.message
    assert INTERNAL_STATE not in result.message


def test_the_admin_button_tells_the_merchant_the_address_is_refused(settings, admin_client):
    settings.STOCKROOM_OUTBOUND_ALLOW = []
    with internal_service() as internal:
        channel = push_channel(f"{internal.url}/metrics")
        response = admin_client.post(
            "/admin/channels/channel/", {"action": "test_connection", "_selected_action": [channel.pk]}, follow=True
        )
        assert internal.seen == []
    assert response.status_code == 200
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "outbound request refused" in shown and INTERNAL_STATE not in response.content.decode()


@pytest.mark.parametrize("status", [200, 404, 500])
def test_an_answering_host_has_its_status_shown_never_its_body(status):
    with internal_service(status) as host:
        for channel in (push_channel(f"{host.url}/x"), shopify_channel(host.url)):
            result = channel_connection_test(channel=channel)
            assert not result.ok
            assert INTERNAL_STATE not in result.message and "hunter2" not in result.message
            if status != 200:
                assert str(status) in result.message
    assert host.seen  # it was asked: loopback is allowed in the test settings


def test_an_echoing_host_gets_no_credential_into_the_message():
    with http_server(echo(401)) as host:
        channel = shopify_channel(host.url, access_token="shpat_echo_me_123", webhook_secret="whsec_echo_me_456")
        result = channel_connection_test(channel=channel)
        assert host.seen[0].headers["X-Shopify-Access-Token"] == "shpat_echo_me_123"  # the request carried it
    assert not result.ok and "401" in result.message
    assert "shpat_echo_me_123" not in result.message and "whsec_echo_me_456" not in result.message


# --- credentials bound to where they go: the API ------------------------------------------------------


def woo_channel(url: str) -> Channel:
    return channel_create(
        fields={
            "code": "woo", "name": "Woo", "connector": "woocommerce",
            "settings": {"store_url": url},
            "credentials": {"consumer_key": "ck_stored", "consumer_secret": "cs_stored", "webhook_secret": "wh_st"},
        }
    )  # fmt: skip


def amazon_channel(url: str) -> Channel:
    return channel_create(
        fields={
            "code": "amz", "name": "Amazon", "connector": "amazon",
            "settings": {"endpoint": url, "token_url": f"{url}/auth/o2/token", "seller_id": "S1",
                         "marketplace_id": "ATVPDKIKX0DER"},
            "credentials": {"client_id": "amzn_client", "client_secret": "amzn_secret_stored",
                            "refresh_token": "Atzr|stored"},
        }
    )  # fmt: skip


REBINDS = [
    # (make the channel, the setting, the full credentials to give again)
    (shopify_channel, "shop_url", {"access_token": "shpat_again", "webhook_secret": "whsec_again"}),
    (woo_channel, "store_url", {"consumer_key": "ck_again", "consumer_secret": "cs_again", "webhook_secret": "w"}),
    (amazon_channel, "endpoint", {"client_id": "c", "client_secret": "s", "refresh_token": "Atzr|again"}),
    (amazon_channel, "token_url", {"client_id": "c", "client_secret": "s", "refresh_token": "Atzr|again"}),
]


@pytest.mark.parametrize(("make", "key", "again"), REBINDS)
def test_moving_a_channel_elsewhere_without_its_credentials_is_refused(staff_api, make, key, again):
    with http_server() as own, http_server(echo(200)) as attacker:
        channel = make(own.url)
        moved = {**channel.settings, key: f"{attacker.url}/steal" if key == "token_url" else attacker.url}
        refused = staff_api.patch(f"/api/v1/channels/{channel.code}/", {"settings": moved}, format="json")
        assert refused.status_code == 400, refused.content
        body = refused.json()
        assert body["code"] == "credentials_required" and body["field"] == f"settings.{key}"
        assert f"settings.{key}" in {entry["field"] for entry in body["errors"]}
        channel.refresh_from_db()
        assert channel.settings[key] != moved[key]
        # Only some of the credentials again: the others would still follow the new address.
        partial = dict(list(again.items())[:1])
        half = staff_api.patch(
            f"/api/v1/channels/{channel.code}/", {"settings": moved, "credentials": partial}, format="json"
        )
        assert half.status_code == 400 and half.json()["code"] == "credentials_required"
        # The stored credentials went nowhere: the test still asks the old address.
        channel_connection_test(channel=channel)
        assert attacker.seen == []
        # With the credentials given again it is the merchant moving their own channel.
        moved_ok = staff_api.patch(
            f"/api/v1/channels/{channel.code}/", {"settings": moved, "credentials": again}, format="json"
        )
        assert moved_ok.status_code == 200, moved_ok.content
        channel.refresh_from_db()
        assert channel.settings[key].rstrip("/") == moved[key].rstrip("/")
        assert channel_credentials(channel) == again


def test_other_settings_change_freely_with_the_credentials_stored(staff_api):
    with http_server() as own:
        channel = shopify_channel(own.url)
        moved = "gid://shopify/Location/2"  # the one location shown moves: its map with it
        changed = {**channel.settings, "location_id": moved, "location_map": {moved: []}, "shop_url": own.url + "/"}
        response = staff_api.patch("/api/v1/channels/shop/", {"settings": changed}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["settings"]["location_id"] == "gid://shopify/Location/2"


def test_a_new_push_url_needs_the_secret_again(staff_api):
    with http_server() as own, http_server() as attacker:
        channel = push_channel(own.url)
        refused = staff_api.patch("/api/v1/channels/push/", {"push_url": attacker.url}, format="json")
        assert refused.status_code == 400
        assert refused.json()["code"] == "credentials_required" and refused.json()["field"] == "push_url"
        channel.refresh_from_db()
        assert channel.push_url == own.url
        moved = staff_api.patch(
            "/api/v1/channels/push/", {"push_url": attacker.url, "secret": "a-new-secret"}, format="json"
        )
        assert moved.status_code == 200
        channel.refresh_from_db()
        assert (channel.push_url, channel.secret) == (attacker.url, "a-new-secret")


# --- the same in the admin --------------------------------------------------------------------------


def test_the_admin_refuses_a_new_shop_url_without_the_credentials(admin_client):
    with http_server() as own, http_server() as attacker:
        channel = shopify_channel(own.url)
        url = f"/admin/channels/channel/{channel.pk}/change/"
        form = admin_form(admin_client, url)
        form["settings__shopify__shop_url"] = attacker.url
        response = admin_client.post(url, form)
        assert response.status_code == 200  # the form again, with the error on the field
        errors = response.context["adminform"].form.errors
        assert "credentials" in " ".join(errors["settings__shopify__shop_url"])
        channel.refresh_from_db()
        assert channel.settings["shop_url"] == own.url
        form["credentials__shopify__access_token"] = "shpat_typed_again"
        form["credentials__shopify__webhook_secret"] = "whsec_typed_again"
        assert admin_client.post(url, form).status_code == 302
        channel.refresh_from_db()
        assert channel.settings["shop_url"] == attacker.url


def test_the_admin_takes_a_new_push_url_only_with_the_secret_typed_again(admin_client):
    with http_server() as own, http_server() as attacker:
        channel = push_channel(own.url)
        url = f"/admin/channels/channel/{channel.pk}/change/"
        form = admin_form(admin_client, url)
        form["push_url"] = attacker.url
        response = admin_client.post(url, form)
        assert response.status_code == 200
        assert "secret" in " ".join(response.context["adminform"].form.errors["push_url"])
        channel.refresh_from_db()
        assert channel.push_url == own.url
        assert (
            'name="new_secret"' in response.content.decode() and "push-secret-stored" not in response.content.decode()
        )
        form["new_secret"] = "typed-again-secret"
        assert admin_client.post(url, form).status_code == 302
        channel.refresh_from_db()
        assert (channel.push_url, channel.secret) == (attacker.url, "typed-again-secret")


# --- Amazon's endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["endpoint", "token_url"])
def test_amazon_endpoints_are_amazons_where_overriding_is_off(settings, staff_api, key):
    settings.STOCKROOM_AMAZON_ENDPOINT_OVERRIDE = False
    fields = {
        "code": "amz", "name": "Amazon", "rate_per_s": 5, "connector": "amazon",
        "settings": {"seller_id": "S1", "marketplace_id": "ATVPDKIKX0DER", key: "https://evil.example.com/x"},
        "credentials": {"client_id": "c", "client_secret": "s", "refresh_token": "Atzr|x"},
    }  # fmt: skip
    refused = staff_api.post("/api/v1/channels/", fields, format="json")
    assert refused.status_code == 400
    assert f"settings.{key}" in {entry["field"] for entry in refused.json()["errors"]}
    del fields["settings"][key]  # Amazon's own, by default
    created = staff_api.post("/api/v1/channels/", fields, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["settings"]["token_url"] == "https://api.amazon.com/auth/o2/token"
