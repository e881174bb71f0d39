"""The Shopify connector against the Shopify fake over real HTTP on loopback, and the fake's own faithfulness."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import ChannelRef, ConnectorError, PlatformOrder, QuantityUpdate
from apps.channels.connectors.shopify import (
    MAX_QUANTITIES,
    ShopifyConnector,
    ShopifyCredentials,
    ShopifySettings,
    ShopifyThrottled,
    order_from_rest,
    sign_webhook,
)
from sandbox.fakes.shopify import ShopifyFake

TOKEN = "shpat_test_token"
SECRET = "whsec-test"
connector = ShopifyConnector()


class Receiver:
    """Where the fake sends its webhooks: keeps each delivery's headers and raw body."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


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


def ref(fake: ShopifyFake, **credentials: str) -> ChannelRef:
    return ChannelRef(
        id=1,
        code="web",
        settings={"shop_url": fake.url, "api_version": "2026-07", "location_id": fake.location_id},
        credentials={"access_token": TOKEN, "webhook_secret": SECRET, **credentials},
    )


def update(listing_id: int, external_id: str, available: int, last_pushed: int | None) -> QuantityUpdate:
    return QuantityUpdate(
        listing_id=listing_id,
        sku=f"SKU-{listing_id}",
        external_id=external_id,
        available=available,
        last_pushed=last_pushed,
    )


# --- pushing quantities ----------------------------------------------------------------------


def test_the_registry_knows_the_shopify_connector():
    found = connector_named("shopify")
    assert isinstance(found, ShopifyConnector)
    assert found.receives_orders and found.polls_orders and found.max_batch == 250


def test_a_push_sets_available_in_one_compare_and_set_request(shop):
    a, b, c = shop.add_item("A", 10), shop.add_item("B", 4), shop.add_item("C", 0)
    result = connector.push(ref(shop), [update(1, a, 7, 10), update(2, b, 0, 4), update(3, c, 12, 0)])
    assert sorted(result.accepted) == [1, 2, 3] and not result.failed and not result.mismatched
    assert result.requests == 1 and result.throttled_for is None
    assert (shop.available(a), shop.available(b), shop.available(c)) == (7, 0, 12)
    [mutation] = shop.mutations()
    assert mutation["quantities"] == 3


def test_the_first_push_of_a_listing_opts_out_of_the_compare(shop):
    a = shop.add_item("A", 33)  # whatever Shopify showed before Stockroom was connected
    result = connector.push(ref(shop), [update(1, a, 5, None)])
    assert result.accepted == [1] and shop.available(a) == 5


def test_a_sale_on_shopify_is_never_overwritten_and_is_reported_with_what_shopify_shows(shop):
    a, b = shop.add_item("A", 10), shop.add_item("B", 6)
    shop.create_order([("A", 2)], send_webhook=False)  # a sale Stockroom has not heard of yet
    assert shop.available(a) == 8
    result = connector.push(ref(shop), [update(1, a, 9, 10), update(2, b, 5, 6)])
    assert result.mismatched == {1: 8}, "the quantity Shopify shows, read back"
    assert result.accepted == [2], "the rest of the batch still goes (a second request: the mutation is all or nothing)"
    assert shop.available(a) == 8 and shop.available(b) == 5
    assert len(shop.mutations()) == 2 and result.requests == 3  # two mutations and one read


def test_a_mismatch_that_already_shows_the_quantity_we_meant_is_accepted(shop):
    a = shop.add_item("A", 10)
    shop.set_available(a, 4)  # the merchant typed the same number Stockroom is about to push
    result = connector.push(ref(shop), [update(1, a, 4, 10)])
    assert result.accepted == [1] and not result.mismatched


def test_an_unknown_inventory_item_fails_only_its_listing(shop):
    a = shop.add_item("A", 1)
    result = connector.push(ref(shop), [update(1, "gid://shopify/InventoryItem/999", 3, 1), update(2, a, 2, 1)])
    assert result.accepted == [2] and shop.available(a) == 2
    assert list(result.failed) == [1] and "INVALID_INVENTORY_ITEM" in result.failed[1]


def test_a_listing_without_an_inventory_item_id_fails_without_a_request(shop):
    result = connector.push(ref(shop), [update(1, "", 3, None), update(2, "12345", 3, None)])
    assert set(result.failed) == {1, 2} and "gid://shopify/InventoryItem" in result.failed[1]
    assert result.requests == 0 and not shop.requests


def test_a_quantity_not_stocked_at_the_location_fails_only_its_listing(shop):
    elsewhere = shop.add_item("ELSEWHERE", 1, stocked=False)
    a = shop.add_item("A", 1)
    result = connector.push(ref(shop), [update(1, elsewhere, 3, None), update(2, a, 2, 1)])
    assert "ITEM_NOT_STOCKED_AT_LOCATION" in result.failed[1] and result.accepted == [2]


def test_more_than_the_documented_maximum_goes_in_requests_of_at_most_250(fakes):
    shop = fakes(maximum_available=10_000, restore_rate=1000)
    items = [shop.add_item(f"S{n}", 1) for n in range(MAX_QUANTITIES + 30)]
    result = connector.push(ref(shop), [update(n, gid, 2, 1) for n, gid in enumerate(items)])
    assert len(result.accepted) == MAX_QUANTITIES + 30 and result.requests == 2
    assert [m["quantities"] for m in shop.mutations()] == [MAX_QUANTITIES, 30]
    assert all(shop.available(gid) == 2 for gid in items)


def test_pause_for_is_computed_from_the_cost_budget_shopify_reports(fakes):
    shop = fakes(maximum_available=60, restore_rate=10)
    a = shop.add_item("A", 1)
    first = connector.push(ref(shop), [update(1, a, 2, 1)])
    assert first.accepted == [1]
    # 60 - 11 actual = 49 left; the next push requests 12 and the connector keeps 20% (12) for polls and reads.
    assert first.pause_for is None
    for n in range(3):
        connector.push(ref(shop), [update(1, a, 3 + n, 2 + n)])
    last = connector.push(ref(shop), [update(1, a, 6, 5)])
    throttle = shop.log()["bucket"]
    expected = (12 + 12 - throttle["currentlyAvailable"]) / 10
    assert last.pause_for is not None and abs(last.pause_for - expected) < 0.5
    assert shop.throttled == 0


def test_a_push_that_would_not_fit_the_budget_is_not_sent(fakes):
    shop = fakes(maximum_available=30, restore_rate=2)
    a = shop.add_item("A", 1)
    connector.push(ref(shop), [update(1, a, 2, 1)])
    connector.push(ref(shop), [update(1, a, 3, 2)])
    before = len(shop.requests)
    result = connector.push(ref(shop), [update(1, a, 4, 3)])  # 30 - 11 - 11 = 8 left: 12 does not fit
    assert result.throttled_for is not None and 1.0 <= result.throttled_for <= 3.0
    assert not result.accepted and result.requests == 0 and len(shop.requests) == before
    assert shop.throttled == 0 and shop.available(a) == 3


def test_a_throttled_answer_returns_the_wait_computed_from_the_cost(fakes):
    shop = fakes(maximum_available=30, restore_rate=2)
    a = shop.add_item("A", 1)
    shop.bucket.available = 5  # spent by a process whose answers this one has not seen
    result = connector.push(ref(shop), [update(1, a, 4, 1)])
    assert shop.throttled == 1 and shop.available(a) == 1
    assert result.throttled_for is not None and abs(result.throttled_for - (12 - 5) / 2) < 0.6
    assert not result.accepted and not result.failed


def test_an_http_429_throttles_the_push_for_its_retry_after(shop):
    a = shop.add_item("A", 1)
    shop.down_status, shop.down_remaining = 429, 1
    result = connector.push(ref(shop), [update(1, a, 2, 1)])
    assert result.throttled_for == 1.0 and not result.accepted and shop.available(a) == 1


def test_a_bad_token_is_a_connector_error_that_says_what_to_fix(shop):
    a = shop.add_item("A", 1)
    bad = ref(shop, access_token="shpat_wrong")
    with pytest.raises(ConnectorError, match=r"access token \(401\)"):
        connector.push(bad, [update(1, a, 2, 1)])
    with pytest.raises(ConnectorError, match="access_token"):
        connector.read_back(bad, [update(1, a, 0, None)])
    with pytest.raises(ConnectorError, match="401"):
        connector.test_connection(bad)
    assert shop.unauthorized == 3 and shop.available(a) == 1


def test_a_server_error_is_a_connector_error(shop):
    a = shop.add_item("A", 1)
    shop.down_status, shop.down_remaining = 503, 1
    with pytest.raises(ConnectorError, match="HTTP 503"):
        connector.push(ref(shop), [update(1, a, 2, 1)])
    assert connector.push(ref(shop), [update(1, a, 2, 1)]).accepted == [1]


def test_an_unreachable_shop_is_a_connector_error():
    channel = ChannelRef(
        id=1,
        code="web",
        settings={"shop_url": "http://127.0.0.1:9", "location_id": "gid://shopify/Location/1"},
        credentials={"access_token": TOKEN, "webhook_secret": SECRET},
    )
    with pytest.raises(ConnectorError, match="could not be reached"):
        connector.test_connection(channel)


# --- reading back --------------------------------------------------------------------------


def test_read_back_shows_each_listings_available_at_the_location(shop):
    a, b = shop.add_item("A", 3), shop.add_item("B", 0)
    elsewhere = shop.add_item("E", 5, stocked=False)
    shown = connector.read_back(
        ref(shop),
        [
            update(1, a, 0, None),
            update(2, b, 0, None),
            update(3, "gid://shopify/InventoryItem/424242", 0, None),
            update(4, elsewhere, 0, None),
            update(5, "", 0, None),
        ],
    )
    assert shown == {1: 3, 2: 0, 3: None, 4: None, 5: None}


def test_read_back_of_many_listings_stays_under_the_single_query_cost_cap(fakes):
    shop = fakes(maximum_available=10_000, restore_rate=1000)
    items = [shop.add_item(f"S{n}", n) for n in range(230)]
    shown = connector.read_back(ref(shop), [update(n, gid, 0, None) for n, gid in enumerate(items)])
    assert shown == {n: n for n in range(230)}
    assert all(r["requested"] <= 1000 for r in shop.requests)


def test_read_back_waits_for_a_short_budget_and_refuses_a_long_one(fakes, stockroom_knobs):
    stockroom_knobs(SYNC_INLINE_WAIT_S="0.5")
    shop = fakes(maximum_available=20, restore_rate=1)
    a = shop.add_item("A", 3)
    connector.read_back(ref(shop), [update(1, a, 0, None)])
    shop.bucket.available = 0
    with pytest.raises(ShopifyThrottled) as caught:
        connector.read_back(ref(shop), [update(1, a, 0, None)])
    assert caught.value.wait_s > 1


# --- orders ----------------------------------------------------------------------------------


def test_the_backfill_poll_pages_through_orders_and_maps_their_states(shop):
    a = shop.add_item("A", 100)
    shop.add_item("B", 100)
    since = datetime.now(UTC) - timedelta(seconds=5)
    created = [shop.create_order([("A", 1), ("B", 2)], send_webhook=False) for _ in range(23)]
    shop.cancel_order(created[0]["id"], send_webhook=False)
    shop.fulfill_order(created[1]["id"], send_webhook=False)
    shop.fulfill_order(created[2]["id"], {"B": 1}, send_webhook=False)
    pending = shop.create_order([("A", 4)], financial_status="pending", send_webhook=False)
    channel = ref(shop)
    seen: dict[str, PlatformOrder] = {}
    cursor, pages = None, 0
    while True:
        page = connector.orders_since(channel, since, cursor)
        pages += 1
        seen.update({o.external_id: o for o in page.orders})
        if page.next_cursor is None:
            break
        assert page.complete_until is None
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == 24
    assert page.complete_until is not None and page.complete_until >= since
    first = seen[str(created[0]["id"])]
    assert first.status == PlatformOrder.Status.CANCELLED and first.number == created[0]["name"]
    assert seen[str(created[1]["id"])].status == PlatformOrder.Status.FULFILLED
    partial = seen[str(created[2]["id"])]
    assert partial.status == PlatformOrder.Status.PARTIALLY_FULFILLED
    assert [(line.sku, line.quantity, line.fulfilled) for line in partial.lines] == [("A", 1, 0), ("B", 2, 1)]
    assert seen[str(pending["id"])].status == PlatformOrder.Status.PENDING
    fresh = seen[str(created[5]["id"])]
    assert fresh.status == PlatformOrder.Status.OPEN and fresh.lines[0].external_id == a
    assert fresh.updated_at is not None and fresh.updated_at.tzinfo is not None


def test_the_poll_returns_only_orders_changed_since_the_watermark(shop):
    shop.add_item("A", 10)
    old = shop.create_order([("A", 1)], send_webhook=False)
    shop.orders[old["id"]].updated_at -= timedelta(hours=2)
    recent = shop.create_order([("A", 1)], send_webhook=False)
    page = connector.orders_since(ref(shop), datetime.now(UTC) - timedelta(minutes=5))
    assert [o.external_id for o in page.orders] == [str(recent["id"])]
    started = datetime.now(UTC)
    assert page.complete_until is not None and page.complete_until <= started


def test_an_order_with_many_lines_is_read_whole(shop):
    for n in range(27):
        shop.add_item(f"L{n}", 5)
    order = shop.create_order([(f"L{n}", 1) for n in range(27)], send_webhook=False)
    page = connector.orders_since(ref(shop), None)
    [found] = page.orders
    assert found.external_id == str(order["id"]) and [line.sku for line in found.lines] == [f"L{n}" for n in range(27)]


def test_webhooks_are_verified_and_carry_the_order(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 5)
    order = shop.create_order([("A", 2)])
    shop.cancel_order(order["id"])
    topics = [headers["X-Shopify-Topic"] for headers, _ in receiver.deliveries]
    assert topics == ["orders/create", "orders/updated", "orders/cancelled"]
    headers, body = receiver.deliveries[0]
    hook = connector.webhook_verify(ref(shop), headers, body)
    assert hook is not None and hook.topic == "orders/create"
    assert hook.delivery_id == f"event:orders/create:{headers['X-Shopify-Event-Id']}"
    [created] = hook.orders
    assert created.external_id == str(order["id"]) and created.status == PlatformOrder.Status.OPEN
    assert created.lines[0].sku == "A" and created.lines[0].quantity == 2 and created.lines[0].fulfilled == 0
    assert created.updated_at == datetime.fromisoformat(order["updated_at"])
    cancelled = connector.webhook_verify(ref(shop), *receiver.deliveries[2])
    assert cancelled is not None and cancelled.orders[0].status == PlatformOrder.Status.CANCELLED


def test_a_forged_or_unsigned_webhook_is_refused(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 5)
    shop.create_order([("A", 1)])
    headers, body = receiver.deliveries[0]
    tampered = body.replace(b'"quantity": 1', b'"quantity": 9')
    assert connector.webhook_verify(ref(shop), headers, tampered) is None
    assert connector.webhook_verify(ref(shop, webhook_secret="another"), headers, body) is None
    unsigned = {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}
    assert connector.webhook_verify(ref(shop), unsigned, body) is None
    assert connector.webhook_verify(ref(shop), {k.lower(): v for k, v in headers.items()}, body) is not None


def test_a_retried_delivery_keeps_its_webhook_id(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 5)
    shop.create_order([("A", 1)])
    shop.redeliver(shop.deliveries[0].webhook_id)
    first, again = (connector.webhook_verify(ref(shop), h, b) for h, b in receiver.deliveries)
    assert first is not None and again is not None and first.delivery_id == again.delivery_id


def test_a_signed_webhook_of_another_topic_carries_no_order(shop):
    body = json.dumps({"id": 1, "title": "T-shirt"}).encode()
    headers = {"X-Shopify-Topic": "products/update", "X-Shopify-Hmac-Sha256": sign_webhook(body, SECRET)}
    hook = connector.webhook_verify(ref(shop), headers, body)
    assert hook is not None and hook.orders == [] and hook.topic == "products/update"


def test_a_signed_webhook_that_is_not_an_order_is_a_connector_error(shop):
    body = b"not json"
    headers = {"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": sign_webhook(body, SECRET)}
    with pytest.raises(ConnectorError):
        connector.webhook_verify(ref(shop), headers, body)


def test_rest_order_states_map_to_stockroom_states():
    base = {"id": 7, "name": "#1007", "updated_at": "2026-12-04T08:00:00-05:00", "line_items": []}
    assert order_from_rest(base | {"financial_status": "paid"}).status == PlatformOrder.Status.OPEN
    assert order_from_rest(base | {"financial_status": "authorized"}).status == PlatformOrder.Status.OPEN
    assert order_from_rest(base | {"financial_status": "pending"}).status == PlatformOrder.Status.PENDING
    assert order_from_rest(base | {"fulfillment_status": "partial"}).status == PlatformOrder.Status.PARTIALLY_FULFILLED
    assert order_from_rest(base | {"fulfillment_status": "fulfilled"}).status == PlatformOrder.Status.FULFILLED
    assert order_from_rest(base | {"fulfillment_status": "restocked"}).status == PlatformOrder.Status.CANCELLED
    cancelled = order_from_rest(base | {"cancelled_at": "2026-12-04T09:00:00-05:00"})
    assert cancelled.status == PlatformOrder.Status.CANCELLED
    assert cancelled.updated_at == datetime(2026, 12, 4, 13, 0, tzinfo=UTC)


# --- set-up ------------------------------------------------------------------------------------


def test_test_connection_names_the_shop_and_the_location(shop):
    line = connector.test_connection(ref(shop))
    assert "Stockroom Test Shop" in line and "Main warehouse" in line


def test_test_connection_says_when_the_location_is_not_in_the_shop(shop):
    channel = ref(shop)
    wrong = ChannelRef(
        id=1,
        code="web",
        settings={**channel.settings, "location_id": "gid://shopify/Location/1"},
        credentials=channel.credentials,
    )
    with pytest.raises(ConnectorError, match="no location gid://shopify/Location/1"):
        connector.test_connection(wrong)


def test_settings_are_validated_and_the_api_version_defaults_to_the_pinned_one(settings):
    settings.SHOPIFY_API_VERSION = "2026-07"
    good = ShopifySettings(data={"shop_url": "https://demo.myshopify.com/", "location_id": "123"})
    assert good.is_valid(), good.errors
    assert good.validated_data == {
        "shop_url": "https://demo.myshopify.com",
        "location_id": "gid://shopify/Location/123",
        "location_map": {"gid://shopify/Location/123": []},  # one location: the channel's whole ATP
        "api_version": "2026-07",
    }
    bad = ShopifySettings(
        data={"shop_url": "demo.myshopify.com", "location_id": "gid://shopify/Product/1", "api_version": "v3"}
    )
    assert not bad.is_valid() and set(bad.errors) == {"shop_url", "location_id", "api_version"}
    assert not ShopifyCredentials(data={"access_token": "shpat_x"}).is_valid()
    assert ShopifyCredentials(data={"access_token": "shpat_x", "webhook_secret": "s"}).is_valid()


# --- the fake's own faithfulness ------------------------------------------------------------------


def graphql(
    fake: ShopifyFake, query: str, variables: dict[str, Any] | None = None, token: str = TOKEN
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{fake.url}/admin/api/2026-07/graphql.json",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"X-Shopify-Access-Token": token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


SET = """mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) %s { inventoryAdjustmentGroup { id } userErrors { code field message } }
}"""


def quantities(fake: ShopifyFake, gid: str, quantity: int, **extra: Any) -> dict[str, Any]:
    entry = {"inventoryItemId": gid, "locationId": fake.location_id, "quantity": quantity, **extra}
    return {"input": {"name": "available", "reason": "correction", "quantities": [entry]}}


def test_the_fake_requires_the_idempotent_directive_and_change_from_quantity(shop):
    a = shop.add_item("A", 1)
    _, answer = graphql(shop, SET % "", quantities(shop, a, 2, changeFromQuantity=1))
    assert answer["errors"][0]["extensions"]["code"] == "BAD_REQUEST" and shop.available(a) == 1
    _, answer = graphql(shop, SET % '@idempotent(key: "k1")', quantities(shop, a, 2))
    assert "changeFromQuantity" in answer["errors"][0]["message"] and shop.available(a) == 1


def test_the_fake_applies_an_idempotent_retry_once(shop):
    a = shop.add_item("A", 1)
    variables = quantities(shop, a, 5, changeFromQuantity=None)
    first = graphql(shop, SET % '@idempotent(key: "same")', variables)[1]
    shop.set_available(a, 9)
    again = graphql(shop, SET % '@idempotent(key: "same")', variables)[1]
    assert again["data"] == first["data"] and shop.available(a) == 9
    other = graphql(shop, SET % '@idempotent(key: "same")', quantities(shop, a, 6, changeFromQuantity=None))[1]
    codes = [e["code"] for e in other["data"]["inventorySetQuantities"]["userErrors"]]
    assert codes == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]


def test_the_fake_validates_queries_against_the_schema_and_reports_cost(shop):
    status, answer = graphql(shop, "{ shop { nam } }")
    assert status == 200 and "Cannot query field" in answer["errors"][0]["message"]
    status, answer = graphql(shop, "{ shop { name } }")
    cost = answer["extensions"]["cost"]
    assert answer["data"] == {"shop": {"name": "Stockroom Test Shop"}}
    assert cost["requestedQueryCost"] == 1 and set(cost["throttleStatus"]) == {
        "maximumAvailable",
        "currentlyAvailable",
        "restoreRate",
    }


def test_the_fake_refuses_a_query_above_the_single_query_cost_cap(shop):
    query = "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }"
    _, answer = graphql(shop, query)
    assert answer["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_the_fake_throttles_when_the_bucket_is_empty_and_refills_at_the_restore_rate(fakes):
    shop = fakes(maximum_available=10, restore_rate=20)
    graphql(shop, "{ orders(first: 4) { nodes { id } } }")  # 2 + 4 = 6 requested, 2 actual
    shop.bucket.available = 0
    _, answer = graphql(shop, "{ shop { name } }")
    assert (
        answer["errors"][0]["extensions"]["code"] == "THROTTLED"
        and answer["extensions"]["cost"]["actualQueryCost"] is None
    )
    time.sleep(0.15)
    _, answer = graphql(shop, "{ shop { name } }")
    assert "errors" not in answer


def test_the_fake_answers_401_to_a_wrong_token(shop):
    status, answer = graphql(shop, "{ shop { name } }", token="nope")
    assert status == 401 and "Invalid API key or access token" in answer["errors"]


def test_the_fakes_orders_move_available_like_shopify(shop):
    a = shop.add_item("A", 10)
    order = shop.create_order([("A", 3)], send_webhook=False)
    assert shop.available(a) == 7
    shop.fulfill_order(order["id"], {"A": 1}, send_webhook=False)
    assert shop.available(a) == 7
    shop.cancel_order(order["id"], send_webhook=False)
    assert shop.available(a) == 9  # the two unshipped units are restocked


def test_the_fakes_webhooks_are_signed_like_shopifys(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 1)
    shop.create_order([("A", 1)])
    headers, body = receiver.deliveries[0]
    assert headers["X-Shopify-Hmac-Sha256"] == sign_webhook(body, SECRET)
    assert json.loads(body)["line_items"][0]["sku"] == "A"
    assert {"X-Shopify-Webhook-Id", "X-Shopify-Shop-Domain", "X-Shopify-Triggered-At"} <= set(headers)


def test_the_fake_loses_webhooks_when_told(fakes, receiver):
    shop = fakes(webhook_url=receiver.url)
    shop.drop_webhooks = True
    shop.add_item("A", 1)
    shop.create_order([("A", 1)])
    assert receiver.deliveries == [] and len(shop.deliveries) == 1


def test_the_fake_runs_standalone_with_its_control_api():
    import subprocess
    import sys

    from django.conf import settings

    process = subprocess.Popen(
        [sys.executable, "manage.py", "fake_shopify", "--port", "0", "--token", TOKEN, "--item", "SOCK=40"],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        url = lines[1].split(" on ")[1].split(" ")[0]
        with urllib.request.urlopen(f"{url}/_fake/state", timeout=5) as response:
            state = json.loads(response.read())
        assert [(i["sku"], i["available"]) for i in state["items"]] == [("SOCK", 40)]
        order = urllib.request.Request(
            f"{url}/_fake/orders", data=json.dumps({"lines": [{"sku": "SOCK", "quantity": 3}]}).encode(), method="POST"
        )
        with urllib.request.urlopen(order, timeout=5) as response:
            placed = json.loads(response.read())
            assert placed["line_items"][0]["quantity"] == 3
        channel = ChannelRef(
            id=1,
            code="web",
            settings={"shop_url": url, "location_id": state["location_id"]},
            credentials={"access_token": TOKEN, "webhook_secret": SECRET},
        )
        inventory_item = state["items"][0]["inventory_item_id"]
        assert connector.read_back(channel, [update(1, inventory_item, 0, None)]) == {1: 37}

        def control(path: str, body: dict[str, Any]) -> Any:
            request = urllib.request.Request(f"{url}/_fake/{path}", data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())

        edited = control(f"orders/{placed['id']}/edit", {"quantities": {"SOCK": 5}})  # the order edited: 3 -> 5
        assert edited["line_items"][0]["current_quantity"] == 5
        assert connector.read_back(channel, [update(1, inventory_item, 0, None)]) == {1: 35}
        control("outage", {"seconds": 30})
        with pytest.raises(ConnectorError, match="503"):
            connector.read_back(channel, [update(1, inventory_item, 0, None)])
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- Dev Dashboard apps: tokens by the client credentials grant ------------------------------------


def dev_dashboard_ref(fake: ShopifyFake, secret: str = "app-secret") -> ChannelRef:
    return ChannelRef(
        id=1,
        code="web",
        settings={"shop_url": fake.url, "api_version": "2026-07", "location_id": fake.location_id},
        credentials={"client_id": "app-id", "client_secret": secret},
    )


def test_a_dev_dashboard_app_gets_its_token_with_the_client_credentials_and_renews_it(fakes, receiver):
    shop = fakes(access_token="", client_id="app-id", client_secret="app-secret", webhook_url=receiver.url)
    shop.webhook_secret = "app-secret"  # Shopify signs a Dev Dashboard app's webhooks with its client secret
    a = shop.add_item("A", 3)
    channel = dev_dashboard_ref(shop)
    assert connector.push(channel, [update(1, a, 4, 3)]).accepted == [1]
    assert len(shop.issued_tokens) == 1
    shop.issued_tokens = dict.fromkeys(shop.issued_tokens, 0.0)  # Shopify expired it before we expected
    assert connector.push(channel, [update(1, a, 5, 4)]).accepted == [1]
    assert len(shop.issued_tokens) == 2 and shop.available(a) == 5
    shop.create_order([("A", 1)])
    assert connector.webhook_verify(channel, *receiver.deliveries[0]) is not None


def test_wrong_client_credentials_are_a_connector_error_that_says_so(fakes):
    shop = fakes(access_token="", client_id="app-id", client_secret="app-secret")
    with pytest.raises(ConnectorError, match="client_id and client_secret"):
        connector.test_connection(dev_dashboard_ref(shop, secret="wrong"))


def test_credentials_take_a_token_or_a_dev_dashboard_apps_id_and_secret():
    assert ShopifyCredentials(data={"client_id": "i", "client_secret": "s"}).is_valid()
    alone = ShopifyCredentials(data={"client_id": "i"})
    assert not alone.is_valid() and "client_secret" in str(alone.errors["access_token"])
    assert not ShopifyCredentials(data={"access_token": " ", "webhook_secret": "s"}).is_valid()
    token = ShopifyCredentials(data={"access_token": "shpat_x", "webhook_secret": "s", "client_id": ""})
    assert token.is_valid() and token.validated_data == {"access_token": "shpat_x", "webhook_secret": "s"}


def test_the_documented_webhook_check_accepts_the_fakes_deliveries_and_refuses_forged_ones(fakes, receiver):
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "shopify.md"
    snippet = re.search(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert snippet is not None
    scope: dict[str, Any] = {}
    exec(snippet.group(1), scope)  # the reader's own code, as printed
    shop = fakes(webhook_url=receiver.url)
    shop.add_item("A", 1)
    shop.create_order([("A", 1)])
    headers, body = receiver.deliveries[0]
    assert scope["webhook_is_from_shopify"](body, headers["X-Shopify-Hmac-Sha256"], SECRET)
    assert not scope["webhook_is_from_shopify"](body + b" ", headers["X-Shopify-Hmac-Sha256"], SECRET)
    assert "/api/v1/channels/<code>/webhooks/shopify/" in doc.read_text()


def test_test_connection_names_missing_access_scopes(fakes):
    shop = fakes(scopes=["read_inventory", "read_locations"])
    with pytest.raises(ConnectorError, match="lacks the access scopes write_inventory, read_orders"):
        connector.test_connection(ref(shop))
    a = shop.add_item("A", 1)
    with pytest.raises(ConnectorError, match="ACCESS_DENIED"):
        connector.push(ref(shop), [update(1, a, 2, 1)])
    assert shop.available(a) == 1


def test_test_connection_warns_when_shopify_no_longer_serves_the_pinned_version(fakes):
    shop = fakes(api_versions=["2027-01", "2027-04"])
    line = connector.test_connection(ref(shop))
    assert "no longer serves API version 2026-07" in line and "2027-01" in line


def test_a_cancelled_order_counts_only_what_had_shipped(fakes, receiver):
    hooked = fakes(webhook_url=receiver.url)
    hooked.add_item("A", 10)
    placed = hooked.create_order([("A", 3)])
    hooked.fulfill_order(placed["id"], {"A": 1})
    hooked.cancel_order(placed["id"])
    cancelled = connector.webhook_verify(ref(hooked), *receiver.deliveries[-1])
    assert cancelled is not None
    [order] = cancelled.orders
    assert order.status == PlatformOrder.Status.CANCELLED
    assert [(line.quantity, line.fulfilled) for line in order.lines] == [(1, 1)]
    [polled] = connector.orders_since(ref(hooked), None).orders
    assert polled.status == PlatformOrder.Status.CANCELLED and [(ln.quantity, ln.fulfilled) for ln in polled.lines] == [
        (1, 1)
    ]


# --- the merchant's set-up page, with the real connector -------------------------------------------


@pytest.mark.django_db
def test_the_admin_sets_up_a_shopify_channel_and_tests_the_connection(shop, admin_client):
    from django.contrib.messages import get_messages

    from apps.channels.services.config import channel_create
    from apps.channels.services.connection import channel_credentials

    channel = channel_create(fields={"code": "shop", "name": "Shop", "kind": "webshop"})
    page = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    for name in ("settings__shopify__shop_url", "settings__shopify__location_id", "credentials__shopify__client_id"):
        assert f'name="{name}"' in page
    form = {
        "code": "shop", "name": "Shop", "kind": "webshop", "connector": "shopify", "push_url": "",
        "rate_per_s": "20", "burst": "40", "batch_size": "250", "coefficient": "1", "buffer": "0",
        "is_active": "on", "can_import": "unknown", "import_cap_units": "",
        "channel_locations-TOTAL_FORMS": "0", "channel_locations-INITIAL_FORMS": "0",
        "channel_locations-MIN_NUM_FORMS": "0", "channel_locations-MAX_NUM_FORMS": "1000",
        "settings__shopify__shop_url": shop.url, "settings__shopify__location_id": shop.location_id.rsplit("/", 1)[1],
        "credentials__shopify__access_token": TOKEN, "credentials__shopify__webhook_secret": SECRET,
        "_test_connection": "1",
    }  # fmt: skip
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "Connected to Stockroom Test Shop" in message and "Main warehouse" in message
    channel.refresh_from_db()
    assert channel.connector == "shopify" and channel.settings["location_id"] == shop.location_id
    assert channel.settings["api_version"] == "2026-07"
    assert channel_credentials(channel) == {"access_token": TOKEN, "webhook_secret": SECRET}
