"""From the attacker's side: the channel webhook endpoint (``/api/v1/channels/<code>/webhooks/<connector>/``).

Someone who holds a channel's webhook secret (or none) sends bodies built to crash the parser or
the connectors, probes which channel codes exist, or floods the endpoint with forgeries. None of
it may end in a 500, tell channels apart, or write a log line per request.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.utils import timezone

from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.connectors import shopify, woocommerce
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.core.secrets import encrypt_json
from apps.orders.models import Order, WebhookDelivery

pytestmark = pytest.mark.django_db

SECRET = "whsec-attack-test"
DEEP = b"[" * 5000 + b"]" * 5000


def platform_channel(code: str, connector: str) -> Channel:
    channel = Channel.objects.create(
        code=code,
        name=code,
        kind=Channel.Kind.WEBSHOP,
        connector=connector,
        settings={"shop_url": "https://shop.example.com", "location_id": "1", "store_url": "https://woo.example.com"},
        orders_imported_until=timezone.now(),
    )
    channel.credentials_encrypted = encrypt_json({"access_token": "t", "webhook_secret": SECRET})
    channel.save(update_fields=["credentials_encrypted"])
    return channel


@pytest.fixture
def shops():
    warehouse = LocationFactory(code="WH")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 10)
    shop, woo = platform_channel("shop", "shopify"), platform_channel("woo", "woocommerce")
    for channel in (shop, woo):
        ChannelLocation.objects.create(channel=channel, location=warehouse, priority=0)
        Listing.objects.create(
            channel=channel, channel_sku="HOOD-M", product=product_of(f"P-{channel.code}", {hood: 1})
        )
    return shop, woo


def shopify_post(client, body: bytes, *, code: str = "shop", connector: str = "shopify", secret: str = SECRET):
    return client.post(
        f"/api/v1/channels/{code}/webhooks/{connector}/",
        data=body,
        content_type="application/json",
        HTTP_X_SHOPIFY_HMAC_SHA256=shopify.sign_webhook(body, secret),
        HTTP_X_SHOPIFY_TOPIC="orders/create",
        HTTP_X_SHOPIFY_WEBHOOK_ID=f"d-{time.monotonic_ns()}",
    )


def woo_post(client, body: bytes, *, code: str = "woo", secret: str = SECRET):
    return client.post(
        f"/api/v1/channels/{code}/webhooks/woocommerce/",
        data=body,
        content_type="application/json",
        HTTP_X_WC_WEBHOOK_SIGNATURE=woocommerce.sign_webhook(body, secret),
        HTTP_X_WC_WEBHOOK_TOPIC="order.created",
        HTTP_X_WC_WEBHOOK_DELIVERY_ID=f"d-{time.monotonic_ns()}",
    )


def assert_refused_400(response) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_webhook"


# --- Signed, malformed bodies are a 400, never a 500 ---------------------------------------------

MALFORMED_SHOPIFY = [
    DEEP,
    b'{"id": 1, "id": 2, "line_items": []}',  # a key twice
    b'{"id": 1, "line_items": 7}',
    b'{"id": 1, "line_items": [7]}',
    b'{"id": 1, "line_items": [{"sku": "HOOD-M", "quantity": "many"}]}',
    b'{"id": 1, "line_items": [{"sku": "HOOD-M", "quantity": 1e300}]}',
    b'{"id": 1, "line_items": [{"sku": ["HOOD-M"], "quantity": {"n": 1}}]}',
    b'{"line_items": []}',
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"id": 1, "line_items": [{"sku": "HOOD-\\u0000M", "quantity": 1}]}',
    b"\xff\xfe not utf-8",
]

MALFORMED_WOO = [
    DEEP,
    b'{"id": 7, "status": "processing", "line_items": 5}',
    b'{"id": 7, "status": "processing", "line_items": ["x"]}',
    b'{"id": 7, "status": "processing", "line_items": [{"quantity": [1], "product_id": 1}]}',
    b'{"id": 7, "status": "processing", "line_items": [{"quantity": 99999999999999, "product_id": 1}]}',
    b'{"id": {"nested": 1}, "status": "processing", "line_items": []}',
    b'{"id": 7, "status": ["processing"], "line_items": []}',
    b'{"id": 7, "id": 8}',
    b"{not json",
]


@pytest.mark.parametrize("body", MALFORMED_SHOPIFY, ids=range(len(MALFORMED_SHOPIFY)))
def test_a_signed_malformed_shopify_order_is_400_and_stores_nothing(shops, client, body):
    assert_refused_400(shopify_post(client, body))
    assert not Order.objects.exists() and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("body", MALFORMED_WOO, ids=range(len(MALFORMED_WOO)))
def test_a_signed_malformed_woocommerce_order_is_400_and_stores_nothing(shops, client, body):
    assert_refused_400(woo_post(client, body))
    assert not Order.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_well_formed_signed_order_still_goes_through(shops, client):
    body = {"id": 42, "name": "#42", "line_items": [{"sku": "HOOD-M", "quantity": 2, "fulfillable_quantity": 2}]}
    answer = shopify_post(client, json.dumps(body).encode())
    assert answer.status_code == 200 and answer.json()["orders"][0]["result"] == "created"
    woo = {"id": 43, "status": "processing", "line_items": [{"sku": "HOOD-M", "quantity": 1, "product_id": 9}]}
    answer = woo_post(client, json.dumps(woo).encode())
    assert answer.status_code == 200 and answer.json()["orders"][0]["result"] == "created"


# --- Nothing tells a real channel code from a made-up one --------------------------------------


def test_unknown_channel_wrong_connector_and_bad_signature_answer_identically(shops, client):
    body = json.dumps({"id": 1, "line_items": []}).encode()
    bad_signature = shopify_post(client, body, secret="a guess")
    unknown_channel = shopify_post(client, body, code="no-such-shop")
    wrong_connector = shopify_post(client, body, code="woo")  # a real channel, on WooCommerce
    wrong_path = shopify_post(client, body, connector="woocommerce")  # a real Shopify channel, the Woo path
    push_protocol = Channel.objects.create(code="classic", name="Classic")  # takes no webhooks at all
    no_webhooks = shopify_post(client, body, code=push_protocol.code, connector="stockroom")

    answers = [bad_signature, unknown_channel, wrong_connector, wrong_path, no_webhooks]
    assert {(a.status_code, a.content) for a in answers} == {(bad_signature.status_code, bad_signature.content)}
    assert bad_signature.status_code == 401 and bad_signature.json()["code"] == "invalid_signature"
    assert not Order.objects.exists()


# --- A flood of forgeries is one log line a minute, with its count --------------------------------


def forged_lines(caplog) -> list[dict]:
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "platform_webhook_forged"
    ]


@pytest.fixture
def fresh_window(settings):
    """A one-second logging window, under a key prefix of this test's own (the count lives in Redis)."""
    settings.REFUSAL_LOG_WINDOW_S = 1
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"forged-test-{time.monotonic_ns()}"},
    }


def test_200_forged_deliveries_write_one_log_line_with_their_count(shops, client, caplog, fresh_window, settings):
    caplog.set_level(logging.WARNING, logger="stockroom.orders")
    settings.REFUSAL_LOG_WINDOW_S = 600  # the whole flood inside one window, however slow the machine
    body = json.dumps({"id": 1, "line_items": [{"sku": "HOOD-M", "quantity": 5}]}).encode()

    answers = {shopify_post(client, body, secret=f"guess-{n}").status_code for n in range(200)}

    assert answers == {401}
    (line,) = forged_lines(caplog)
    assert (line["endpoint"], line["repeats"], line["reason"]) == ("webhooks:shop:shopify", 1, "signature refused")


def test_the_next_line_after_a_window_counts_the_forgeries_kept_quiet(shops, client, caplog, fresh_window):
    caplog.set_level(logging.WARNING, logger="stockroom.orders")
    body = b"{}"
    for n in range(5):
        shopify_post(client, body, secret=f"guess-{n}")
    time.sleep(1.1)  # the one-second window has passed
    shopify_post(client, body, secret="guess-again")
    assert [line["repeats"] for line in forged_lines(caplog)] == [1, 5]  # 4 kept quiet, and the new one


def test_made_up_channel_codes_share_one_log_line(shops, client, caplog, fresh_window, settings):
    caplog.set_level(logging.WARNING, logger="stockroom.orders")
    settings.REFUSAL_LOG_WINDOW_S = 600  # all 50 inside one window, however slow the machine
    body = b"{}"
    for n in range(50):
        assert shopify_post(client, body, code=f"probe-{n}").status_code == 401
    (line,) = forged_lines(caplog)
    assert line["endpoint"] == "webhooks:unknown-channel" and line["channel"] == "probe-0"
