"""Going live on an existing WooCommerce store: its location, its catalog and its order webhooks, read and
subscribed by the connector against the fake store over real HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import ChannelRef, ConnectorError
from apps.channels.connectors.woocommerce import WooCommerceConnector, sign_webhook
from apps.channels.tests.test_connector_woocommerce import Receiver, receiver  # noqa: F401  (fixture)
from sandbox.fakes.woocommerce import WooCommerceFake


@pytest.fixture
def fake() -> Iterator[WooCommerceFake]:
    store = WooCommerceFake(site_name="Hat Shop").start()
    yield store
    store.stop()


@pytest.fixture
def connector() -> WooCommerceConnector:
    found = connector_named("woocommerce")
    assert isinstance(found, WooCommerceConnector)
    return found


def ref(store: WooCommerceFake, **credentials: str) -> ChannelRef:
    return ChannelRef(
        id=1, code="web", settings=store.channel_settings(), credentials={**store.channel_credentials(), **credentials}
    )


def test_the_store_is_one_location_named_after_it(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    (location,) = connector.locations(ref(fake))
    assert (location.id, location.name, location.active) == ("default", "Hat Shop", True)


@pytest.mark.slow
def test_the_catalog_reads_every_page_of_products_and_variations(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    # 250 variants: 63 simple products and 187 variations of 38 variable products (5 each, one with 2),
    # more than two pages of products, so paging matters.
    seeded = fake.seed_catalog(250, per_parent=5, simple_every=4)
    seen: list[int] = []

    catalog = connector.catalog(ref(fake), progress=lambda done, total: seen.append(done))

    by_id = {entry.external_id: entry for entry in catalog.entries}
    assert len(catalog.entries) == 250 and set(by_id) == {s.external_id for s in seeded}
    for variant in seeded:
        entry = by_id[variant.external_id]
        assert (entry.sku, entry.tracked, entry.platform_managed) == (variant.sku, True, False)
        assert entry.quantities == {"default": variant.quantity}
    assert sum("/" in e.external_id for e in catalog.entries) == 187
    # One request per product page (101 products: 2 pages) and one per variable product.
    product_pages = fake.requests("/products")
    assert len(product_pages) == catalog.requests == 2 + 38
    assert {r["query"]["per_page"] for r in product_pages} == {"100"}
    assert seen and seen[-1] == 250 and seen == sorted(seen)


def test_a_variable_product_with_more_than_100_variations_is_paged(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    fake.seed_catalog(230, per_parent=230, simple_every=0)

    catalog = connector.catalog(ref(fake))

    assert len({e.external_id for e in catalog.entries}) == 230
    pages = [r["query"]["page"] for r in fake.requests("/variations")]
    assert pages == ["1", "2", "3"]


def test_the_catalog_shows_each_problem_as_the_store_has_it(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    seeded = fake.seed_catalog(40, no_sku=3, duplicate_sku=2, untracked=4, parent_stock=3, simple_every=3)
    shirt = fake.add_product(sku="SHIRT", name="Shirt")
    fake.add_variation(shirt, sku="SHIRT-S", stock_quantity=2)
    fake.add_variation(shirt, sku="SHIRT-L", stock_quantity=1)
    fake.add_product(sku="GIFT", type="grouped", name="Gift set")  # sells its children, not itself
    fake.add_product(sku="", name="Empty variable", type="variable")  # no variations yet

    catalog = connector.catalog(ref(fake))

    entries = {e.external_id: e for e in catalog.entries}
    assert "GIFT" not in {e.sku for e in catalog.entries} and len(entries) == 42
    no_sku = [s for s in seeded if s.problem == "no_sku"]
    assert all(entries[s.external_id].sku == "" for s in no_sku) and len(no_sku) == 3
    duplicated = [s for s in seeded if s.problem == "duplicate_sku"]
    assert [entries[s.external_id].sku for s in duplicated] == ["SKU-00040", "SKU-00039"]
    assert sum(e.sku == "SKU-00040" for e in catalog.entries) == 2
    untracked = [entries[s.external_id] for s in seeded if s.problem == "untracked"]
    assert len(untracked) == 4 and all(not e.tracked and e.quantities == {} for e in untracked)
    # Stock kept on the parent: the variations are tracked and show the parent's count.
    on_parent = seeded[9:12]
    assert len({s.external_id.split("/")[0] for s in on_parent}) == 1
    assert {entries[s.external_id].quantities["default"] for s in on_parent} == {on_parent[0].quantity}
    assert all(entries[s.external_id].tracked for s in on_parent)
    assert entries[f"{shirt}/{shirt + 1}"].title == "Shirt - SHIRT-S"


def test_a_throttling_host_is_waited_out(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    fake.seed_catalog(30, per_parent=3, simple_every=2)
    fake.fail_next(429, count=2, retry_after="1", path_contains="/variations")

    started = time.monotonic()
    catalog = connector.catalog(ref(fake))

    assert time.monotonic() - started >= 2.0  # it waited the Retry-After, twice
    assert len(catalog.entries) == 30
    statuses = [r["status"] for r in fake.requests("/variations")]
    assert statuses[:3] == [429, 429, 200] and statuses.count(429) == 2


def test_a_host_that_keeps_failing_is_a_clear_error(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    fake.seed_catalog(5)
    fake.fail_next(500, count=1, path_contains="/products")

    with pytest.raises(ConnectorError, match="HTTP 500 Internal Server Error from products"):
        connector.catalog(ref(fake))


def test_subscribing_creates_each_order_webhook_once_with_the_channel_secret(
    fake: WooCommerceFake,
    connector: WooCommerceConnector,
    receiver: Receiver,  # noqa: F811
) -> None:
    channel = ref(fake, webhook_secret="the-channel-secret")

    first = connector.webhooks_subscribe(channel, receiver.url)
    again = connector.webhooks_subscribe(channel, receiver.url)

    hooks = fake.subscriptions()
    assert sorted(h.topic for h in hooks) == ["order.created", "order.deleted", "order.updated"]
    assert {(h.delivery_url, h.secret, h.status) for h in hooks} == {(receiver.url, "the-channel-secret", "active")}
    assert [s.id for s in first] == [s.id for s in again] and all(s.active for s in again)
    assert {s.topic for s in connector.webhook_subscriptions(channel)} == set(connector.webhook_topics)
    # WooCommerce pings each new webhook's address once; an order then arrives signed with the channel's secret.
    product = fake.add_product(sku="HAT", stock_quantity=3)
    order_id = fake.create_order([(product, 1)])
    (delivery,) = fake.wait_for_deliveries(1)
    assert delivery["status"] == 200 and delivery["order_id"] == order_id
    deadline = time.monotonic() + 5
    while len(receiver.received) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    pings = [body for _, body in receiver.received if body.startswith(b"webhook_id=")]
    assert len(pings) == 3
    headers, body = next((h, b) for h, b in receiver.received if not b.startswith(b"webhook_id="))
    assert headers["X-WC-Webhook-Signature"] == sign_webhook(body, "the-channel-secret")
    webhook = connector.webhook_verify(channel, headers, body)
    assert webhook is not None and [o.external_id for o in webhook.orders] == [str(order_id)]


def test_subscribing_reuses_hooks_made_by_hand_and_revives_a_disabled_one(
    fake: WooCommerceFake,
    connector: WooCommerceConnector,
    receiver: Receiver,  # noqa: F811
) -> None:
    fake.set_webhook(receiver.url, "an-old-secret")  # the merchant's own three order webhooks
    with fake.lock:
        fake.webhooks[2].status = "disabled"  # order.updated failed too often
    other = "http://127.0.0.1:9/elsewhere"
    channel = ref(fake, webhook_secret="the-channel-secret")
    connector.webhooks_subscribe(channel, other)  # another address gets its own webhooks

    subscribed = connector.webhooks_subscribe(channel, receiver.url)

    assert sorted(s.id for s in subscribed) == ["1", "2", "3"] and all(s.active for s in subscribed)
    mine = [h for h in fake.subscriptions() if h.delivery_url == receiver.url]
    assert len(mine) == 3 and {(h.secret, h.status) for h in mine} == {("the-channel-secret", "active")}
    assert len(fake.subscriptions()) == 6


def test_subscribing_without_a_webhook_secret_is_refused(
    fake: WooCommerceFake,
    connector: WooCommerceConnector,
    receiver: Receiver,  # noqa: F811
) -> None:
    with pytest.raises(ConnectorError, match="webhook_secret"):
        connector.webhooks_subscribe(ref(fake, webhook_secret=""), receiver.url)
    assert fake.subscriptions() == []


def test_the_default_budget_is_gentle_on_the_host(connector: WooCommerceConnector) -> None:
    assert connector.default_rate_per_s <= 2.0 and connector.default_burst <= 5
    assert connector.webhook_topics == ("order.created", "order.updated", "order.deleted")


def test_a_standalone_store_is_seeded_over_http(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    answer = requests.post(f"{fake.url}/_fake/seed", json={"variants": 12, "no_sku": 1, "prefix": "HAT"}, timeout=10)

    assert answer.status_code == 201 and len(answer.json()["variants"]) == 12
    skus = sorted(e.sku for e in connector.catalog(ref(fake)).entries)
    assert skus == ["", *(f"HAT-{n:05d}" for n in range(2, 13))]
    hooks = requests.get(f"{fake.url}/_fake/webhooks", timeout=10).json()["webhooks"]
    assert hooks == []
