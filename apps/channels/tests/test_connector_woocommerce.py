"""The WooCommerce connector against the fake store, over real HTTP on loopback (no database needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import (
    ChannelRef,
    ConnectorError,
    ConnectorThrottled,
    OrderLine,
    PlatformOrder,
    QuantityUpdate,
)
from apps.channels.connectors.woocommerce import (
    WooCommerceConnector,
    WooCommerceCredentials,
    WooCommerceSettings,
    external_id_for,
    oauth_signature,
    parse_external_id,
    sign_webhook,
)
from sandbox.fakes.woocommerce import WooCommerceFake

Status = PlatformOrder.Status


@pytest.fixture
def fake() -> Iterator[WooCommerceFake]:
    store = WooCommerceFake().start()
    yield store
    store.stop()


@pytest.fixture
def connector() -> WooCommerceConnector:
    found = connector_named("woocommerce")
    assert isinstance(found, WooCommerceConnector)
    return found


def ref(store: WooCommerceFake, **settings: Any) -> ChannelRef:
    return ChannelRef(
        id=1, code="web", settings=store.channel_settings(**settings), credentials=store.channel_credentials()
    )


def update(listing_id: int, external_id: str, available: int, last_pushed: int | None = None) -> QuantityUpdate:
    return QuantityUpdate(
        listing_id=listing_id,
        sku=f"SKU-{listing_id}",
        external_id=external_id,
        available=available,
        last_pushed=last_pushed,
    )


class Receiver:
    """A webhook endpoint on loopback that keeps every delivery's headers and raw body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


# --- pushing quantities ------------------------------------------------------------------------


def test_push_sets_managed_quantities_on_products_and_variations(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    counted = fake.add_product(sku="MUG", stock_quantity=5)
    uncounted = fake.add_product(sku="POSTER")  # not managing stock yet: the push turns it on
    shirt = fake.add_product(sku="SHIRT")
    small = fake.add_variation(shirt, sku="SHIRT-S", stock_quantity=1)
    large = fake.add_variation(shirt, sku="SHIRT-L", manage_stock="parent")

    result = connector.push(
        ref(fake),
        [
            update(1, str(counted), 7, last_pushed=5),
            update(2, str(uncounted), 3),
            update(3, external_id_for(shirt, small), 4, last_pushed=1),
            update(4, external_id_for(shirt, large), 6),
        ],
    )

    assert sorted(result.accepted) == [1, 2, 3, 4] and not result.failed and not result.mismatched
    assert (fake.quantity(counted), fake.quantity(uncounted), fake.quantity(small), fake.quantity(large)) == (
        7,
        3,
        4,
        6,
    )
    assert fake.product(large)["manage_stock"] is True
    batches = [r for r in fake.requests() if r["method"] == "POST"]
    assert {r["path"] for r in batches} == {
        "/wp-json/wc/v3/products/batch",
        f"/wp-json/wc/v3/products/{shirt}/variations/batch",
    }
    # One compare read per route before the writes, and the engine is told every request made.
    assert result.requests == len(fake.requests()) == 4


def test_push_never_sends_more_than_100_items_a_request(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    ids = [fake.add_product(sku=f"P{i}", stock_quantity=0) for i in range(150)]

    result = connector.push(ref(fake), [update(i, str(pid), i) for i, pid in enumerate(ids)])

    assert len(result.accepted) == 150
    assert [r["items"] for r in fake.requests("/batch")] == [100, 50]
    assert [fake.quantity(pid) for pid in ids] == list(range(150))


def test_the_fake_refuses_a_batch_over_its_limit_as_woocommerce_does(fake: WooCommerceFake) -> None:
    body = {"update": [{"id": i, "stock_quantity": 1} for i in range(101)]}
    response = requests.post(
        f"{fake.url}/wp-json/wc/v3/products/batch", json=body, auth=(fake.consumer_key, fake.consumer_secret), timeout=5
    )
    # Plain HTTP: Basic credentials are not even looked at (WooCommerce wants OAuth there).
    assert response.status_code == 401
    assert response.json()["code"] == "woocommerce_rest_cannot_batch"

    signed = signed_request(fake, "POST", "/wp-json/wc/v3/products/batch", json_body=body)
    assert signed.status_code == 413
    assert signed.json() == {
        "code": "woocommerce_rest_request_entity_too_large",
        "message": "Unable to accept more than 100 items for this request.",
        "data": {"status": 413},
    }


def test_items_the_store_refuses_fail_alone(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    good = fake.add_product(sku="GOOD", stock_quantity=1)
    external = fake.add_product(sku="AFFILIATE", type="external")
    vetoed = fake.add_product(sku="VETO", stock_quantity=2)
    fake.refuse_stock(vetoed, "product_invalid_manage_stock", "Stock is kept by the bundle plugin.")
    tee = fake.add_product(sku="TEE")
    other = fake.add_product(sku="OTHER")
    tee_small = fake.add_variation(tee, sku="TEE-S", stock_quantity=1)

    result = connector.push(
        ref(fake),
        [
            update(1, str(good), 9),
            update(2, str(external), 1),
            update(3, str(vetoed), 1),
            update(4, "999999", 1),  # no such product
            update(5, external_id_for(other, tee_small), 1),  # a variation under the wrong parent
            update(6, external_id_for(tee, tee_small), 8),
            update(7, "", 1),  # never linked to a product
            update(8, "SKU-8", 1),
        ],
    )

    assert sorted(result.accepted) == [1, 6]
    assert result.failed == {
        2: "product_external_invalid_manage_stock: External products cannot be stock managed.",
        3: "product_invalid_manage_stock: Stock is kept by the bundle plugin.",
        4: "woocommerce_rest_product_invalid_id: Invalid ID.",
        5: "woocommerce_rest_product_variation_invalid_id: Invalid ID.",
        7: result.failed[7],
        8: result.failed[8],
    }
    assert "external id" in result.failed[7] and "<parent id>/<variation id>" in result.failed[8]
    assert (fake.quantity(good), fake.quantity(tee_small), fake.quantity(vetoed)) == (9, 8, 2)


def test_two_listings_on_one_product_do_not_overwrite_each_other(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=1)

    result = connector.push(ref(fake), [update(1, str(product), 4), update(2, f" {product}", 9)])

    assert result.accepted == [1] and fake.quantity(product) == 4
    assert result.failed == {
        2: f"listing 1 of this channel is linked to the same WooCommerce product ( {product}); "
        "link each product to one listing"
    }


def test_the_fake_refuses_a_quantity_that_is_not_an_integer(fake: WooCommerceFake) -> None:
    good = fake.add_product(sku="GOOD", stock_quantity=1)
    bad = fake.add_product(sku="BAD", stock_quantity=1)
    body = {"update": [{"id": good, "stock_quantity": 4}, {"id": bad, "manage_stock": True, "stock_quantity": "lots"}]}

    answer = signed_request(fake, "POST", "/wp-json/wc/v3/products/batch", json_body=body).json()["update"]

    assert answer[0]["stock_quantity"] == 4
    assert answer[1]["id"] == bad and answer[1]["error"]["code"] == "rest_invalid_param"
    assert answer[1]["error"]["data"]["params"] == {"stock_quantity": "stock_quantity is not of type integer."}
    assert fake.quantity(bad) == 1


def test_a_negative_quantity_is_pushed_as_zero(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    product = fake.add_product(sku="OVERSOLD", stock_quantity=0)

    result = connector.push(ref(fake), [update(1, str(product), -3, last_pushed=-1)])

    assert result.accepted == [1] and fake.quantity(product) == 0


def test_a_quantity_changed_on_the_store_is_not_overwritten(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    sold_there = fake.add_product(sku="SOLD-THERE", stock_quantity=5)
    untouched = fake.add_product(sku="UNTOUCHED", stock_quantity=5)
    fake.create_order([(sold_there, 2)])  # WooCommerce lowers stock itself when the order is paid

    result = connector.push(ref(fake), [update(1, str(sold_there), 6, last_pushed=5), update(2, str(untouched), 6, 5)])

    assert result.mismatched == {1: 3} and result.accepted == [2]
    assert (fake.quantity(sold_there), fake.quantity(untouched)) == (3, 6)

    # Told what the store shows, the next push goes through.
    assert connector.push(ref(fake), [update(1, str(sold_there), 3, last_pushed=3)]).accepted == [1]

    # A merchant who wants blind overwrites can switch the check off.
    fake.set_quantity(untouched, 1)
    blind = connector.push(ref(fake, blind_overwrite=True), [update(2, str(untouched), 6, last_pushed=6)])
    assert blind.accepted == [2] and fake.quantity(untouched) == 6
    assert blind.requests == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "waits"),
    [(429, "7", 7.0), (503, "30", 30.0), (429, None, 5.0)],
)
def test_throttling_by_the_host_comes_back_as_throttled_for(
    fake: WooCommerceFake, connector: WooCommerceConnector, status: int, retry_after: str | None, waits: float
) -> None:
    product = fake.add_product(sku="P", stock_quantity=1)
    fake.fail_next(status, retry_after=retry_after, path_contains="/batch")

    result = connector.push(ref(fake), [update(1, str(product), 4)])

    assert result.throttled_for == waits
    assert not result.accepted and not result.failed
    assert fake.quantity(product) == 1
    assert connector.push(ref(fake), [update(1, str(product), 4)]).accepted == [1]


def test_a_host_rate_limit_throttles_rather_than_fails(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    product = fake.add_product(sku="P", stock_quantity=1)
    fake.limit(rate=0.5, burst=1)

    first = connector.push(ref(fake), [update(1, str(product), 2, last_pushed=1)])
    assert first.throttled_for is not None and 1 <= first.throttled_for <= 2


def test_throttled_reads_and_polls_say_how_long_to_wait(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    fake.fail_next(429, retry_after="9", count=2)
    with pytest.raises(ConnectorThrottled) as read:
        connector.read_back(ref(fake), [update(1, "5", 0)])
    with pytest.raises(ConnectorThrottled) as polled:
        connector.orders_since(ref(fake), datetime.now(UTC))
    assert read.value.wait_s == polled.value.wait_s == 9.0
    fake.fail_next(502, retry_after="30")
    with pytest.raises(ConnectorError, match="HTTP 502") as failed:
        connector.orders_since(ref(fake), datetime.now(UTC))
    assert failed.value.retry_after == "30" and not isinstance(failed.value, ConnectorThrottled)


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (500, None), (502, "12")])
def test_a_failing_store_fails_the_batch_and_passes_retry_after_on(
    fake: WooCommerceFake, connector: WooCommerceConnector, status: int, retry_after: str | None
) -> None:
    product = fake.add_product(sku="P", stock_quantity=1)
    fake.fail_next(status, retry_after=retry_after, path_contains="/batch")

    result = connector.push(ref(fake), [update(1, str(product), 4)])

    assert list(result.failed) == [1] and f"HTTP {status}" in result.failed[1]
    assert result.retry_after == retry_after and result.throttled_for is None


def test_an_unreachable_store_fails_without_waiting_per_batch(connector: WooCommerceConnector) -> None:
    store = WooCommerceFake()
    channel = ref(store, blind_overwrite=True)
    store.stop()  # nothing listens there any more

    result = connector.push(channel, [update(1, "11", 1), update(2, "12/13", 1), update(3, "14/15", 1)])

    assert sorted(result.failed) == [1, 2, 3] and result.requests == 1
    assert "connection failed" in result.failed[1]


# --- reading back ------------------------------------------------------------------------------


def test_read_back_shows_what_the_store_counts(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    counted = fake.add_product(sku="MUG", stock_quantity=5)
    uncounted = fake.add_product(sku="POSTER")
    parent = fake.add_product(sku="SHIRT", stock_quantity=12)
    own = fake.add_variation(parent, sku="SHIRT-S", stock_quantity=2)
    inherits = fake.add_variation(parent, sku="SHIRT-L", manage_stock="parent")

    shown = connector.read_back(
        ref(fake),
        [
            update(1, str(counted), 0),
            update(2, str(uncounted), 0),
            update(3, external_id_for(parent, own), 0),
            update(4, external_id_for(parent, inherits), 0),
            update(5, "424242", 0),
            update(6, "", 0),
            update(7, external_id_for(counted, own), 0),  # not a variation of that product
        ],
    )

    assert shown == {1: 5, 2: None, 3: 2, 4: 12, 5: None, 6: None, 7: None}
    reads = fake.requests()
    assert {r["path"] for r in reads} == {
        "/wp-json/wc/v3/products",
        f"/wp-json/wc/v3/products/{parent}/variations",
        f"/wp-json/wc/v3/products/{counted}/variations",
    }
    assert all(r["query"]["_fields"] == "id,manage_stock,stock_quantity" for r in reads)


def test_read_back_asks_for_at_most_100_ids_a_request(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    ids = [fake.add_product(sku=f"P{i}", stock_quantity=i) for i in range(130)]

    shown = connector.read_back(ref(fake), [update(i, str(pid), 0) for i, pid in enumerate(ids)])

    assert shown == {i: i for i in range(130)}
    assert [len(r["query"]["include"].split(",")) for r in fake.requests()] == [100, 30]


# --- orders ------------------------------------------------------------------------------------


def test_order_statuses_map_to_stockroom(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=50)
    parent = fake.add_product(sku="SHIRT")
    small = fake.add_variation(parent, sku="SHIRT-S", stock_quantity=5)
    expected = {
        "pending": Status.PENDING,
        "processing": Status.OPEN,
        "on-hold": Status.OPEN,
        "completed": Status.FULFILLED,
        "cancelled": Status.CANCELLED,
        "refunded": Status.CANCELLED,
        "failed": Status.CANCELLED,
    }
    ids = {status: fake.create_order([(product, 2), (f"{parent}/{small}", 1)], status=status) for status in expected}
    draft = fake.create_order([(product, 1)], status="checkout-draft")

    page = connector.orders_since(ref(fake), datetime.now(UTC) - timedelta(hours=1))

    by_id = {o.external_id: o for o in page.orders}
    assert str(draft) not in by_id
    for status, order_id in ids.items():
        order = by_id[str(order_id)]
        assert order.status == expected[status], status
        fulfilled = 2 if status == "completed" else 0
        assert order.lines[0] == OrderLine(sku="MUG", quantity=2, fulfilled=fulfilled, external_id=str(product))
        assert order.lines[1].external_id == f"{parent}/{small}" and order.lines[1].sku == "SHIRT-S"
        assert order.number == str(order_id) and order.updated_at is not None
    assert page.next_cursor is None and page.complete_until is not None


def test_plugin_statuses_are_open_unless_mapped(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    row = {"id": 7, "status": "shipped", "line_items": [], "date_modified_gmt": "2026-01-01T10:00:00"}
    plain = connector._order(row, connector._status_map(ref(fake)))
    mapped = connector._order(row, connector._status_map(ref(fake, order_statuses="wc-shipped=fulfilled")))
    assert plain is not None and plain.status == Status.OPEN
    assert mapped is not None and mapped.status == Status.FULFILLED


def test_orders_since_reads_modified_dates_in_gmt(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    """The fake's site is two hours east of UTC: a connector that forgot dates_are_gmt would get old orders."""
    product = fake.add_product(sku="MUG", stock_quantity=50)
    old = fake.create_order([(product, 1)])
    fresh = fake.create_order([(product, 1)])
    with fake.lock:
        fake.orders[old].modified -= timedelta(minutes=30)

    page = connector.orders_since(ref(fake), datetime.now(UTC) - timedelta(minutes=10))

    assert [o.external_id for o in page.orders] == [str(fresh)]
    query = fake.requests("/orders")[0]["query"]
    assert query["dates_are_gmt"] == "true" and query["orderby"] == "modified" and query["order"] == "asc"


def test_the_first_poll_takes_every_order_that_holds_stock(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=50)
    held = [fake.create_order([(product, 1)], status=s) for s in ("pending", "processing", "on-hold")]
    fake.create_order([(product, 1)], status="completed")
    fake.create_order([(product, 1)], status="cancelled")
    with fake.lock:
        for order in fake.orders.values():
            order.modified -= timedelta(days=400)

    page = connector.orders_since(ref(fake), None)

    assert sorted(o.external_id for o in page.orders) == sorted(str(i) for i in held)
    assert page.complete_until is not None and page.complete_until > datetime.now(UTC) - timedelta(minutes=1)


def _poll_all(
    connector: WooCommerceConnector, channel: ChannelRef, since: datetime, between: Any = None
) -> tuple[list[str], Any]:
    seen: list[str] = []
    page = connector.orders_since(channel, since)
    seen += [o.external_id for o in page.orders]
    while page.next_cursor:
        if between is not None:
            between()
            between = None
        assert page.complete_until is None or page.complete_until >= since
        page = connector.orders_since(channel, since, page.next_cursor)
        seen += [o.external_id for o in page.orders]
    return seen, page


def test_orders_come_in_pages_of_100_until_complete(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=1000)
    ids = [fake.create_order([(product, 1)]) for _ in range(230)]  # all within a second or two
    since = datetime.now(UTC) - timedelta(minutes=5)

    seen, last = _poll_all(connector, ref(fake), since)

    assert set(seen) == {str(i) for i in ids}
    assert last.complete_until is not None and since < last.complete_until <= datetime.now(UTC)
    assert all(int(r["query"]["per_page"]) == 100 for r in fake.requests("/orders"))
    assert len(fake.requests("/orders")) >= 3


def test_an_order_changed_while_paging_loses_no_other_order(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=1000)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    ids = [fake.create_order([(product, 1)]) for _ in range(150)]
    with fake.lock:
        for n, order_id in enumerate(ids):
            fake.orders[order_id].modified = start + timedelta(seconds=n)

    def a_change_on_page_one() -> None:  # jumps to the end of the list: plain page numbers would skip one
        fake.set_order_status(ids[0], "completed")

    seen, last = _poll_all(connector, ref(fake), start - timedelta(seconds=1), between=a_change_on_page_one)

    assert set(seen) == {str(i) for i in ids}
    assert last.next_cursor is None


def test_the_first_poll_loses_no_order_when_one_leaves_the_list_while_paging(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=1000)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    ids = [fake.create_order([(product, 1)]) for _ in range(150)]
    with fake.lock:
        for n, order_id in enumerate(ids):
            fake.orders[order_id].modified = start + timedelta(seconds=n)
    channel = ref(fake)

    page = connector.orders_since(channel, None)
    assert page.complete_until is None and page.next_cursor is not None
    seen = [o.external_id for o in page.orders]
    fake.complete_order(ids[0])  # no longer holds stock: it leaves the filtered list
    while page.next_cursor:
        page = connector.orders_since(channel, None, page.next_cursor)
        seen += [o.external_id for o in page.orders]

    assert set(seen) >= {str(i) for i in ids[1:]}
    assert all(r["query"]["status"] == "pending,processing,on-hold" for r in fake.requests("/orders"))
    assert page.complete_until is not None and page.complete_until > datetime.now(UTC) - timedelta(minutes=1)


def test_a_bad_cursor_is_an_error(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    with pytest.raises(ConnectorError, match="cursor"):
        connector.orders_since(ref(fake), None, "page-2")


# --- webhooks ----------------------------------------------------------------------------------


def test_signed_webhooks_from_the_store_carry_the_order(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    product = fake.add_product(sku="MUG", stock_quantity=5)
    order_id = fake.create_order([(product, 2)])
    fake.cancel_order(order_id)
    fake.delete_order(order_id)
    fake.wait_for_deliveries(3)
    channel = ChannelRef(id=1, code="web", settings=fake.channel_settings(), credentials=fake.channel_credentials())

    hooks = [connector.webhook_verify(channel, headers, body) for headers, body in receiver.received]

    assert [h.topic if h else None for h in hooks] == ["order.created", "order.updated", "order.deleted"]
    created, cancelled, deleted = (h.orders[0] for h in hooks if h is not None)
    assert created.external_id == str(order_id) and created.status == Status.OPEN
    assert created.lines[0].sku == "MUG" and created.lines[0].quantity == 2
    assert cancelled.status == Status.CANCELLED
    assert deleted == PlatformOrder(external_id=str(order_id), status=Status.CANCELLED, lines=())
    headers = receiver.received[0][0]
    assert headers["X-WC-Webhook-Resource"] == "order" and headers["X-WC-Webhook-Event"] == "created"
    assert headers["User-Agent"].startswith("WooCommerce/")


def test_forged_or_unsigned_webhooks_are_refused(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    channel = ref(fake)
    body = json.dumps({"id": 5, "status": "processing", "line_items": []}).encode()
    good = {"X-WC-Webhook-Signature": sign_webhook(body, fake.webhook_secret), "X-WC-Webhook-Topic": "order.created"}

    assert connector.webhook_verify(channel, good, body) is not None
    assert (
        connector.webhook_verify(channel, {**good, "X-WC-Webhook-Signature": sign_webhook(body, "guess")}, body) is None
    )
    assert connector.webhook_verify(channel, good, body.replace(b"processing", b"cancelled")) is None
    assert connector.webhook_verify(channel, {"X-WC-Webhook-Topic": "order.created"}, body) is None
    no_secret = ChannelRef(id=1, code="web", settings=fake.channel_settings(), credentials={"webhook_secret": ""})
    assert connector.webhook_verify(no_secret, good, body) is None


def test_the_ping_of_a_new_webhook_is_answered(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url)
    assert fake.ping() == 200
    headers, body = receiver.received[0]

    hook = connector.webhook_verify(ref(fake), headers, body)

    assert hook is not None and hook.topic == "ping" and hook.orders == []
    assert connector.webhook_verify(ref(fake), {}, b"webhook_id=1&status=cancelled") is None


def test_deliveries_in_the_same_second_stay_apart(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    """WooCommerce's delivery id is the webhook id hashed with the second: two orders can share it."""
    fake.set_webhook(receiver.url)
    product = fake.add_product(sku="MUG", stock_quantity=5)
    for _ in range(30):
        receiver.received.clear()
        with fake.lock:
            fake._deliveries.clear()
        first, second = fake.create_order([(product, 1)]), fake.create_order([(product, 1)])
        deliveries = fake.wait_for_deliveries(2)
        if deliveries[0]["delivery_id"] == deliveries[1]["delivery_id"]:
            break
    else:
        pytest.fail("no two deliveries in the same second")

    hooks = [connector.webhook_verify(ref(fake), h, b) for h, b in receiver.received]

    assert hooks[0] is not None and hooks[1] is not None
    assert hooks[0].delivery_id != hooks[1].delivery_id
    assert {hooks[0].orders[0].external_id, hooks[1].orders[0].external_id} == {str(first), str(second)}
    # The same delivery again is recognised as such.
    again = connector.webhook_verify(ref(fake), *receiver.received[0])
    assert again is not None and again.delivery_id == hooks[0].delivery_id


def test_signed_but_unreadable_webhooks_are_errors(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    for body in (b"not json", b"[1, 2]"):
        headers = {
            "X-WC-Webhook-Signature": sign_webhook(body, fake.webhook_secret),
            "X-WC-Webhook-Topic": "order.updated",
        }
        with pytest.raises(ConnectorError):
            connector.webhook_verify(ref(fake), headers, body)
    other = b'{"id": 3, "name": "Mug"}'
    hook = connector.webhook_verify(
        ref(fake),
        {"X-WC-Webhook-Signature": sign_webhook(other, fake.webhook_secret), "X-WC-Webhook-Topic": "product.updated"},
        other,
    )
    assert hook is not None and hook.orders == []


def test_the_store_disables_a_webhook_after_repeated_failures(fake: WooCommerceFake, receiver: Receiver) -> None:
    fake.set_webhook(receiver.url)
    receiver.status = 500
    product = fake.add_product(sku="MUG", stock_quantity=50)
    for _ in range(7):
        fake.create_order([(product, 1)])
    fake.wait_for_deliveries(7)
    assert "order.created" in fake.disabled_topics
    fake.create_order([(product, 1)])
    time.sleep(0.3)
    assert len(receiver.received) == 7 and len(fake.deliveries()) == 7


def test_a_lost_webhook_is_caught_by_the_poll(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url)
    product = fake.add_product(sku="MUG", stock_quantity=5)
    fake.lose_webhooks(1)
    lost = fake.create_order([(product, 1)])
    fake.wait_for_deliveries(1)

    assert receiver.received == []
    page = connector.orders_since(ref(fake), datetime.now(UTC) - timedelta(minutes=5))
    assert [o.external_id for o in page.orders] == [str(lost)]


# --- the fake's stock follows orders as WooCommerce's does --------------------------------------


def test_paid_orders_lower_stock_and_cancelled_ones_restore_it(fake: WooCommerceFake) -> None:
    product = fake.add_product(sku="MUG", stock_quantity=10)
    parent = fake.add_product(sku="SHIRT", stock_quantity=4)
    inherits = fake.add_variation(parent, sku="SHIRT-L", manage_stock="parent")

    pending = fake.create_order([(product, 2)], status="pending")
    assert fake.quantity(product) == 10
    fake.set_order_status(pending, "processing")
    paid = fake.create_order([(product, 3), (f"{parent}/{inherits}", 1)])
    assert (fake.quantity(product), fake.quantity(parent)) == (5, 3)
    fake.cancel_order(paid)
    fake.complete_order(pending)
    assert (fake.quantity(product), fake.quantity(parent)) == (8, 4)


# --- authentication ----------------------------------------------------------------------------


def signed_request(
    store: WooCommerceFake,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    nonce: str = "",
    timestamp: int | None = None,
    secret: str | None = None,
) -> requests.Response:
    oauth = {
        "oauth_consumer_key": store.consumer_key,
        "oauth_nonce": nonce or hashlib.sha1(str(time.time_ns()).encode()).hexdigest(),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
    }
    query = {**(params or {}), **oauth}
    query["oauth_signature"] = oauth_signature(
        method, store.url + path, query.items(), secret or store.consumer_secret, "HMAC-SHA1"
    )
    return requests.request(method, store.url + path, params=query, json=json_body, timeout=5)


def test_the_fake_checks_oauth_like_woocommerce(fake: WooCommerceFake) -> None:
    path = "/wp-json/wc/v3/products"
    assert signed_request(fake, "GET", path, params={"per_page": "5"}, nonce="n1").status_code == 200

    replay = signed_request(fake, "GET", path, params={"per_page": "5"}, nonce="n1")
    assert (replay.status_code, replay.json()["message"]) == (401, "Invalid nonce - nonce has already been used.")
    stale = signed_request(fake, "GET", path, timestamp=int(time.time()) - 16 * 60)
    assert stale.json()["message"] == "Invalid timestamp."
    wrong = signed_request(fake, "GET", path, secret="cs_wrong")
    assert wrong.json()["message"] == "Invalid signature - provided signature does not match."
    partial = requests.get(fake.url + path, params={"oauth_consumer_key": fake.consumer_key}, timeout=5)
    assert partial.json()["code"] == "woocommerce_rest_authentication_missing_parameter"
    # Over plain HTTP the bare key and secret in the query string are not accepted: the request is anonymous.
    bare = requests.get(
        fake.url + path, params={"consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret}, timeout=5
    )
    assert (bare.status_code, bare.json()["code"]) == (401, "woocommerce_rest_cannot_view")


def test_the_connector_signs_with_oauth_over_http(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    connector.read_back(ref(fake), [update(1, "5", 0)])
    query = fake.requests()[0]["query"]
    assert query["oauth_signature_method"] == "HMAC-SHA256" and "consumer_secret" not in query
    assert fake.consumer_secret not in json.dumps(fake.requests())


def test_bad_keys_are_a_clear_connector_error(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    wrong = ChannelRef(
        id=1,
        code="web",
        settings=fake.channel_settings(),
        credentials={**fake.channel_credentials(), "consumer_secret": "cs_" + "0" * 40},
    )
    calls = [
        lambda: connector.push(wrong, [update(1, "101", 1)]),
        lambda: connector.read_back(wrong, [update(1, "101", 0)]),
        lambda: connector.orders_since(wrong, None),
        lambda: connector.test_connection(wrong),
    ]
    for call in calls:
        with pytest.raises(
            ConnectorError, match=r"WooCommerce refused the API key .*check the consumer key and secret"
        ):
            call()


def test_a_read_only_key_fails_the_connection_test(connector: WooCommerceConnector) -> None:
    store = WooCommerceFake(permissions="read").start()
    try:
        with pytest.raises(ConnectorError, match="can read but not write"):
            connector.test_connection(ref(store))
    finally:
        store.stop()


def test_connection_names_the_store(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    fake.add_product(sku="MUG", stock_quantity=1)
    line = connector.test_connection(ref(fake))
    assert line == (
        f"Connected to Fake WooCommerce store ({fake.url}), WooCommerce REST wc/v3: "
        "1 products, the key can read and write."
    )


def test_connection_to_something_that_is_not_woocommerce(connector: WooCommerceConnector, receiver: Receiver) -> None:
    channel = ChannelRef(
        id=1,
        code="web",
        settings={"store_url": receiver.url.removesuffix("/hook")},
        credentials={"consumer_key": "ck_1", "consumer_secret": "cs_1", "webhook_secret": "x"},
    )
    with pytest.raises(ConnectorError, match="is not a WordPress REST API"):
        connector.test_connection(channel)


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("query_string_auth", [False, True])
def test_over_https_the_key_goes_as_basic_auth_or_in_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connector: WooCommerceConnector, query_string_auth: bool
) -> None:
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # requests trusts the test certificate
    store = WooCommerceFake(tls=(cert, key)).start()
    try:
        product = store.add_product(sku="MUG", stock_quantity=1)
        channel = ref(store, query_string_auth=query_string_auth)
        assert channel.settings["store_url"].startswith("https://")

        assert connector.push(channel, [update(1, str(product), 6, last_pushed=1)]).accepted == [1]

        assert store.quantity(product) == 6
        query = store.requests()[0]["query"]
        assert ("consumer_key" in query) is query_string_auth and not any(k.startswith("oauth_") for k in query)
        bad = {**store.channel_credentials(), "consumer_secret": "cs_bad"}
        with pytest.raises(ConnectorError, match="refused the API key"):
            connector.read_back(ChannelRef(1, "web", channel.settings, bad), [update(1, str(product), 0)])
    finally:
        store.stop()


# --- settings, credentials, ids ----------------------------------------------------------------


def test_settings_and_credentials_are_validated() -> None:
    settings = WooCommerceSettings(data={"store_url": "https://shop.example.com/"})
    assert settings.is_valid(), settings.errors
    assert settings.validated_data == {
        "store_url": "https://shop.example.com",
        "api_version": "wc/v3",
        "query_string_auth": False,
        "blind_overwrite": False,
        "order_statuses": "",
    }
    mapped = WooCommerceSettings(
        data={"store_url": "https://s.example", "order_statuses": "WC-Shipped = fulfilled;ready=open"}
    )
    assert mapped.is_valid(), mapped.errors
    assert mapped.validated_data["order_statuses"] == "shipped=fulfilled, ready=open"
    assert not WooCommerceSettings(data={"store_url": "shop.example.com"}).is_valid()
    assert not WooCommerceSettings(data={"store_url": "https://s.example", "api_version": "wc/v2"}).is_valid()
    for bad in ("shipped", "shipped=gone", "=open", "a b=open"):
        assert not WooCommerceSettings(data={"store_url": "https://s.example", "order_statuses": bad}).is_valid(), bad

    assert WooCommerceCredentials(
        data={"consumer_key": "ck_ab12", "consumer_secret": "cs_cd34", "webhook_secret": "s"}
    ).is_valid()
    assert not WooCommerceCredentials(
        data={"consumer_key": "cs_ab12", "consumer_secret": "cs_cd34", "webhook_secret": "s"}
    ).is_valid()
    assert not WooCommerceCredentials(data={"consumer_key": "ck_ab12", "consumer_secret": "cs_cd34"}).is_valid()


def test_external_ids_name_a_product_or_a_variation_under_its_parent() -> None:
    assert parse_external_id("123") is not None and parse_external_id("123").parent_id is None  # type: ignore[union-attr]
    variation = parse_external_id(" 123/456 ")
    assert variation is not None and (variation.parent_id, variation.product_id) == (123, 456)
    for bad in ("", "0", "abc", "123/", "/456", "1/2/3", "123/0", "gid://shopify/1"):
        assert parse_external_id(bad) is None, bad
    assert external_id_for(123) == "123" and external_id_for(123, 456) == "123/456" and external_id_for(123, 0) == "123"


def test_webhook_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":1}'
    assert sign_webhook(body, "k") == base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()


# --- the channel page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_channel_page_connects_a_store_and_saves_it_again_unchanged(fake: WooCommerceFake, admin_client) -> None:
    from django.contrib.messages import get_messages

    from apps.channels.models import Channel
    from apps.channels.services.connection import channel_credentials
    from apps.channels.tests.factories import ChannelFactory
    from apps.channels.tests.test_connector_admin import form_of

    channel = ChannelFactory(code="web", connector="stockroom")
    form = form_of(
        channel,
        connector="woocommerce",
        settings__woocommerce__store_url=fake.url,
        settings__woocommerce__order_statuses="shipped=fulfilled",
        credentials__woocommerce__consumer_key=fake.consumer_key,
        credentials__woocommerce__consumer_secret=fake.consumer_secret,
        credentials__woocommerce__webhook_secret=fake.webhook_secret,
        _test_connection="1",
    )
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Test connection of web: Connected to Fake WooCommerce store ({fake.url}), WooCommerce REST wc/v3: "
        "0 products, the key can read and write."
    ]
    channel = Channel.objects.get(pk=channel.pk)
    saved = {
        "store_url": fake.url,
        "api_version": "wc/v3",
        "query_string_auth": False,
        "blind_overwrite": False,
        "order_statuses": "shipped=fulfilled",
    }
    assert channel.connector == "woocommerce" and channel.settings == saved
    assert channel_credentials(channel) == fake.channel_credentials()

    # The page as the merchant sees it, saved again without touching anything: nothing changes.
    page = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/")
    again = {k: v for k, v in form.items() if not k.startswith("credentials__") and k != "_test_connection"}
    for name in page.context["adminform"].form.fields:
        if name.startswith("settings__woocommerce__"):
            value = page.context["adminform"].form[name].value()
            if value not in (None, False):
                again[name] = "on" if value is True else str(value)
            else:
                again.pop(name, None)
    assert admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", again).status_code == 302
    channel.refresh_from_db()
    assert channel.settings == saved and channel_credentials(channel) == fake.channel_credentials()
