"""The Shopify connector's side of order convergence, against the Shopify fake over real HTTP on loopback.

``orders_get`` (the order truth sweep's read), shipped units from successful fulfillments only, webhooks
deduplicated by Shopify's event id and signed with the app's client secret, and the fake's own model of
what Shopify does (order edits, fulfillments, deleted orders, lost, held and repeated webhooks, outages).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.channels.connectors.base import ChannelRef, ConnectorError, PlatformOrder
from apps.channels.connectors.shopify import (
    FULFILLMENT_LINES,
    FULFILLMENTS,
    ORDERS_GET_COST,
    ShopifyConnector,
    sign_webhook,
)
from apps.channels.tests.test_connector_shopify import SECRET, TOKEN, Receiver, ref
from sandbox.fakes.shopify import ShopifyFake
from sandbox.fakes.shopify.api import SINGLE_QUERY_MAX_COST

connector = ShopifyConnector()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.server.shutdown()
    started.server.server_close()


@pytest.fixture
def fakes() -> Iterator[Callable[..., ShopifyFake]]:
    started: list[ShopifyFake] = []

    def start(**kwargs: Any) -> ShopifyFake:
        kwargs.setdefault("access_token", TOKEN)
        kwargs.setdefault("webhook_secret", SECRET)
        fake = ShopifyFake(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def shop(fakes: Callable[..., ShopifyFake]) -> ShopifyFake:
    return fakes()


def lines_of(order: PlatformOrder) -> list[tuple[str, int, int]]:
    return [(line.sku, line.quantity, line.fulfilled) for line in order.lines]


# --- orders_get ------------------------------------------------------------------------------------


def test_orders_get_reads_each_order_by_its_id_and_a_deleted_one_comes_back_cancelled(shop):
    shop.add_item("A", 50)
    shop.add_item("B", 50)
    placed = [shop.create_order([("A", 1), ("B", 2)], send_webhook=False) for _ in range(11)]
    shop.edit_order(placed[0]["id"], {"A": 4, "B": 0}, send_webhook=False)
    shop.cancel_order(placed[1]["id"], send_webhook=False)
    shop.fulfill_order(placed[2]["id"], {"B": 1}, send_webhook=False)
    shop.cancel_order(placed[3]["id"], send_webhook=False)
    shop.delete_order(placed[3]["id"])
    ids = [str(p["id"]) for p in placed] + ["not-a-shopify-id"]
    before = len(shop.requests)
    found = {o.external_id: o for o in connector.orders_get(ref(shop), ids)}
    assert set(found) == {str(p["id"]) for p in placed}  # the id Shopify cannot name is left out
    edited = found[str(placed[0]["id"])]
    assert edited.status == PlatformOrder.Status.OPEN and lines_of(edited) == [("A", 4, 0), ("B", 0, 0)]
    assert found[str(placed[1]["id"])].status == PlatformOrder.Status.CANCELLED
    partial = found[str(placed[2]["id"])]
    assert partial.status == PlatformOrder.Status.PARTIALLY_FULFILLED and lines_of(partial) == [
        ("A", 1, 0),
        ("B", 2, 1),
    ]
    deleted = found[str(placed[3]["id"])]
    assert deleted.status == PlatformOrder.Status.CANCELLED and deleted.lines == ()
    fresh = found[str(placed[5]["id"])]
    assert fresh.number == placed[5]["name"] and fresh.updated_at is not None
    asked = list(shop.requests)[before:]
    assert len(asked) == 2  # 11 ids in batches of orders_get_batch (8)
    assert all(r["status"] == 200 and r["requested"] <= SINGLE_QUERY_MAX_COST for r in asked)
    assert max(r["requested"] for r in asked) <= ORDERS_GET_COST <= SINGLE_QUERY_MAX_COST


def test_orders_get_is_a_connector_error_when_shopify_is_down(shop):
    shop.add_item("A", 5)
    placed = shop.create_order([("A", 1)], send_webhook=False)
    shop.outage(30)
    with pytest.raises(ConnectorError, match="503"):
        connector.orders_get(ref(shop), [str(placed["id"])])


# --- shipped units -----------------------------------------------------------------------------------


def test_only_successful_fulfillments_count_as_shipped_in_the_poll_orders_get_and_webhooks(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 20)
    placed = shop.create_order([("A", 5)])
    shop.fulfill_order(placed["id"], {"A": 2}, status="PENDING")  # handed to the warehouse, not shipped
    shop.fulfill_order(placed["id"], {"A": 1})  # shipped
    body = json.loads(receiver.deliveries[-1][1])
    assert body["line_items"][0]["fulfillable_quantity"] == 2  # what Shopify says is left counts the pending 2
    hooked = connector.webhook_verify(ref(shop), *receiver.deliveries[-1])
    assert hooked is not None
    [read] = connector.orders_get(ref(shop), [str(placed["id"])])
    [polled] = connector.orders_since(ref(shop), None).orders
    for order in (hooked.orders[0], read, polled):
        assert order.status == PlatformOrder.Status.PARTIALLY_FULFILLED and lines_of(order) == [("A", 5, 1)]
    pending = shop.orders[placed["id"]].fulfillments[0].id
    shop.fulfillment_status(placed["id"], pending, "CANCELLED")  # the warehouse could not ship them
    shop.fulfill_order(placed["id"])  # the rest (4) shipped
    [read] = connector.orders_get(ref(shop), [str(placed["id"])])
    assert read.status == PlatformOrder.Status.FULFILLED and lines_of(read) == [("A", 5, 5)]
    hooked = connector.webhook_verify(ref(shop), *receiver.deliveries[-1])
    assert hooked is not None and lines_of(hooked.orders[0]) == [("A", 5, 5)]


def test_a_shipped_fulfillment_cancelled_afterwards_no_longer_counts(shop):
    shop.add_item("A", 20)
    placed = shop.create_order([("A", 3)], send_webhook=False)
    shop.fulfill_order(placed["id"], send_webhook=False)
    shop.fulfillment_status(placed["id"], shop.orders[placed["id"]].fulfillments[0].id, "CANCELLED", send_webhook=False)
    [read] = connector.orders_get(ref(shop), [str(placed["id"])])
    assert read.status == PlatformOrder.Status.OPEN and lines_of(read) == [("A", 3, 0)]


def test_an_order_with_many_fulfillments_of_many_lines_is_counted_whole(shop):
    skus = [f"L{n}" for n in range(FULFILLMENT_LINES + 5)]
    for sku in skus:
        shop.add_item(sku, 50)
    placed = shop.create_order([(sku, FULFILLMENTS + 2) for sku in skus], send_webhook=False)
    for _ in range(FULFILLMENTS + 2):  # more fulfillments than the first read holds, each with more lines
        shop.fulfill_order(placed["id"], dict.fromkeys(skus, 1), send_webhook=False)
    [read] = connector.orders_get(ref(shop), [str(placed["id"])])
    assert read.status == PlatformOrder.Status.FULFILLED
    assert {line.fulfilled for line in read.lines} == {FULFILLMENTS + 2}
    [polled] = connector.orders_since(ref(shop), None).orders
    assert lines_of(polled) == lines_of(read)


def test_a_cancelled_order_keeps_what_shipped_and_its_pending_fulfillment_never_ships(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    a = shop.add_item("A", 10)
    placed = shop.create_order([("A", 4)])
    shop.fulfill_order(placed["id"], {"A": 1})
    shop.fulfill_order(placed["id"], {"A": 2}, status="OPEN")
    shop.cancel_order(placed["id"])
    assert shop.available(a) == 9  # three unshipped units restocked
    hooked = connector.webhook_verify(ref(shop), *receiver.deliveries[-1])
    assert hooked is not None
    [read] = connector.orders_get(ref(shop), [str(placed["id"])])
    for order in (hooked.orders[0], read):
        assert order.status == PlatformOrder.Status.CANCELLED and lines_of(order) == [("A", 1, 1)]


# --- webhooks: duplicates and signatures ------------------------------------------------------------


def test_a_repeated_event_under_a_new_webhook_id_has_the_same_delivery_id(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 5)
    shop.create_order([("A", 1)])
    shop.resend_event(shop.deliveries[0])  # the same event, another webhook
    shop.redeliver(shop.deliveries[0].webhook_id)  # a retry: the same webhook
    shop.create_order([("A", 1)])  # another event
    (h1, _), (h2, _), (h3, _), (h4, b4) = receiver.deliveries
    assert (
        h1["X-Shopify-Webhook-Id"] != h2["X-Shopify-Webhook-Id"]
        and h3["X-Shopify-Webhook-Id"] == h1["X-Shopify-Webhook-Id"]
    )
    assert h1["X-Shopify-Event-Id"] == h2["X-Shopify-Event-Id"] == h3["X-Shopify-Event-Id"]
    ids = [connector.webhook_verify(ref(shop), h, b).delivery_id for h, b in receiver.deliveries]  # type: ignore[union-attr]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    without_event = {k: v for k, v in h4.items() if k != "X-Shopify-Event-Id"}
    hook = connector.webhook_verify(ref(shop), without_event, b4)
    assert hook is not None and hook.delivery_id == h4["X-Shopify-Webhook-Id"]


def test_api_subscriptions_of_a_dev_dashboard_app_are_signed_with_its_client_secret(fakes, receiver):
    shop = fakes(access_token="", client_id="app-id", client_secret="app-secret", webhook_secret="notifications-key")
    channel = ChannelRef(
        id=1,
        code="web",
        settings={"shop_url": shop.url, "api_version": "2026-07", "location_id": shop.location_id},
        credentials={"client_id": "app-id", "client_secret": "app-secret", "webhook_secret": "notifications-key"},
    )
    connector.webhooks_subscribe(channel, receiver.url)
    shop.add_item("A", 5)
    shop.create_order([("A", 1)])
    headers, body = receiver.deliveries[0]
    assert headers["X-Shopify-Hmac-Sha256"] == sign_webhook(body, "app-secret")
    hook = connector.webhook_verify(channel, headers, body)
    assert hook is not None and hook.orders[0].lines[0].quantity == 1
    # A webhook made under Settings > Notifications is signed with the key shown there: still accepted.
    notified = {**headers, "X-Shopify-Hmac-Sha256": sign_webhook(body, "notifications-key")}
    assert connector.webhook_verify(channel, notified, body) is not None
    # Signed with neither key: refused; a channel without the client secret cannot check the app's signature.
    assert (
        connector.webhook_verify(channel, {**headers, "X-Shopify-Hmac-Sha256": sign_webhook(body, "x")}, body) is None
    )
    only_token = ChannelRef(1, "web", channel.settings, {"access_token": TOKEN, "webhook_secret": SECRET})
    assert connector.webhook_verify(only_token, headers, body) is None


# --- the fake --------------------------------------------------------------------------------------


def test_the_fakes_order_edit_moves_available_and_sends_edited_then_updated(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    a, b = shop.add_item("A", 10), shop.add_item("B", 10)
    placed = shop.create_order([("A", 2)])
    shop.edit_order(placed["id"], {"A": 5, "B": 1})
    assert (shop.available(a), shop.available(b)) == (5, 9)
    topics = [h["X-Shopify-Topic"] for h, _ in receiver.deliveries]
    assert topics == ["orders/create", "orders/edited", "orders/updated"]
    edit = json.loads(receiver.deliveries[1][1])["order_edit"]
    assert edit["order_id"] == placed["id"] and len(edit["line_items"]["additions"]) == 2
    edited = connector.webhook_verify(ref(shop), *receiver.deliveries[1])
    assert edited is not None and edited.orders == []  # the edit's delta, not the order: orders/updated carries it
    updated = connector.webhook_verify(ref(shop), *receiver.deliveries[2])
    assert updated is not None and lines_of(updated.orders[0]) == [("A", 5, 0), ("B", 1, 0)]
    shop.edit_order(placed["id"], {"A": 0})
    assert shop.available(a) == 10


def test_the_fake_holds_and_reorders_repeats_and_loses_webhooks_as_told(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 10)
    fates = iter(["hold", "deliver", "repeat", "drop"])
    shop.chaos = lambda _delivery: next(fates)
    placed = shop.create_order([("A", 1)])  # held
    shop.cancel_order(placed["id"])  # orders/updated delivered; orders/cancelled delivered twice
    shop.create_order([("A", 1)])  # lost
    assert [h["X-Shopify-Topic"] for h, _ in receiver.deliveries] == [
        "orders/updated",
        "orders/cancelled",
        "orders/cancelled",
    ]
    assert shop.release_held() == 1
    assert receiver.deliveries[-1][0]["X-Shopify-Topic"] == "orders/create"  # the create, after its cancel


def test_the_fakes_outage_answers_every_request_with_503_until_it_ends(shop):
    shop.outage(0.5)
    request = urllib.request.Request(
        f"{shop.url}/admin/api/2026-07/graphql.json",
        data=json.dumps({"query": "{ shop { name } }"}).encode(),
        headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as down:
        urllib.request.urlopen(request, timeout=5)
    assert down.value.code == 503
    time.sleep(0.6)
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read())["data"]["shop"]["name"]
