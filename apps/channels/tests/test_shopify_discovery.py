"""Going live on an existing Shopify shop: locations, the catalog (paged and by bulk operation) and the order
webhook subscriptions, read and made by the connector against the Shopify fake over real HTTP on loopback."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.channels.connectors.base import ChannelRef, ConnectorError
from apps.channels.connectors.shopify import ShopifyConnector
from sandbox.fakes.shopify import ShopifyFake, gid
from sandbox.fakes.shopify.seed import SeededCatalog, seed_catalog

TOKEN = "shpat_discovery"
connector = ShopifyConnector()


@pytest.fixture
def fakes() -> Iterator[Callable[..., ShopifyFake]]:
    started: list[ShopifyFake] = []

    def start(**kwargs: Any) -> ShopifyFake:
        kwargs.setdefault("access_token", TOKEN)
        kwargs.setdefault("webhook_secret", "whsec")
        fake = ShopifyFake(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def ref(fake: ShopifyFake) -> ChannelRef:
    return ChannelRef(
        id=1,
        code="shop",
        settings={"shop_url": fake.url, "location_id": fake.location_id},
        credentials={"access_token": TOKEN, "webhook_secret": "whsec"},
    )


def seeded(fake: ShopifyFake, total: int = 60) -> SeededCatalog:
    return seed_catalog(fake, total, untracked=4, no_sku=4, duplicates=4, not_stocked=4)


def assert_catalog_is_the_shops(entries: list[Any], catalog: SeededCatalog) -> None:
    """Every variant once, with its SKU, tracking, and its available quantity at each location that stocks it."""
    assert len(entries) == catalog.total
    by_item = {entry.external_id: entry for entry in entries}
    assert set(by_item) == set(catalog.quantities)
    for item, quantities in catalog.quantities.items():
        assert by_item[item].quantities == quantities
    for sku, item in catalog.clean.items():
        assert (by_item[item].sku, by_item[item].tracked) == (sku, True)
        assert set(by_item[item].quantities) == set(catalog.locations)
        assert " - " in by_item[item].title  # "<product> - <size>", as the merchant sees it
    assert all(not by_item[item].tracked for item in catalog.untracked.values())
    assert all(by_item[item].sku == "" for item in catalog.no_sku)
    for sku, items in catalog.duplicates.items():
        assert [by_item[item].sku for item in items] == [sku, sku]
    for item in catalog.not_stocked.values():
        assert list(by_item[item].quantities) == catalog.locations[:1]


def test_locations_are_listed_with_their_names_and_whether_active(fakes):
    shop = fakes()
    store = shop.add_location("Store 1")
    shop.add_location("Closed store", active=False)
    found = connector.locations(ref(shop))
    assert [(p.id, p.name, p.active) for p in found] == [
        (shop.location_id, "Main warehouse", True),
        (gid("Location", store), "Store 1", True),
        (gid("Location", store + 1000), "Closed store", False),
    ]


def test_many_locations_are_read_page_by_page(fakes):
    shop = fakes()
    for number in range(300):
        shop.add_location(f"Pop-up {number}")
    found = connector.locations(ref(shop))
    assert len(found) == 301 and found[-1].name == "Pop-up 299"


def test_a_small_catalog_is_read_page_by_page_with_every_location_and_problem(fakes):
    shop = fakes()
    catalog = seeded(shop, 60)
    calls: list[tuple[int, int | None]] = []
    result = connector.catalog(ref(shop), lambda done, total: calls.append((done, total)), bulk=False)
    assert_catalog_is_the_shops(result.entries, catalog)
    assert not shop.bulk_operations
    assert calls[0] == (0, 60) and calls[-1] == (60, 60)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert result.requests >= 3  # locations, the count, at least one page


def test_a_catalog_is_read_through_a_bulk_operation_and_its_jsonl(fakes):
    shop = fakes()
    catalog = seeded(shop, 60)
    calls: list[tuple[int, int | None]] = []
    result = connector.catalog(ref(shop), lambda done, total: calls.append((done, total)), bulk=True)
    assert_catalog_is_the_shops(result.entries, catalog)
    [operation] = shop.bulk_operations.values()
    assert operation.status == "COMPLETED" and operation.root_object_count == 60
    assert calls[0] == (0, 60) and calls[-1] == (60, 60)
    # locations, count, the bulk query, at least one status look, the download
    assert result.requests >= 5


def test_the_bulk_operation_reports_progress_while_shopify_runs_it(fakes):
    shop = fakes()
    seeded(shop, 60)
    shop.bulk_objects_per_s = 40.0  # Shopify takes its time: about 1.5 s
    calls: list[tuple[int, int | None]] = []
    result = connector.catalog(ref(shop), lambda done, total: calls.append((done, total)), bulk=True)
    assert len(result.entries) == 60
    running = [done for done, _ in calls if 0 < done < 60]
    assert running, calls  # the merchant sees it move before the file is there


def test_the_catalog_takes_the_bulk_path_when_the_paged_read_would_not_fit_the_cost_bucket(fakes):
    small = fakes()
    seeded(small, 60)  # 60 variants x 10 points: fits a bucket of 2,000
    assert len(connector.catalog(ref(small)).entries) == 60
    assert not small.bulk_operations
    large = fakes(maximum_available=400.0)
    seeded(large, 60)
    assert len(connector.catalog(ref(large)).entries) == 60
    assert len(large.bulk_operations) == 1


def test_a_paged_catalog_larger_than_the_bucket_waits_for_the_cost_budget_and_is_never_throttled(fakes):
    shop = fakes(maximum_available=400.0, restore_rate=200.0)
    catalog = seeded(shop, 100)  # about 1,000 points: 600 more than the bucket holds, 3 s at 200 a second
    started = time.monotonic()
    result = connector.catalog(ref(shop), bulk=False)
    elapsed = time.monotonic() - started
    assert_catalog_is_the_shops(result.entries, catalog)
    assert shop.throttled == 0
    assert elapsed >= 2.0
    pages = [r for r in shop.requests if 20 < (r.get("requested") or 0) <= 200]  # at most half the bucket each
    assert len(pages) >= 5 and sum(r["actual"] for r in pages) >= 1000


def test_a_throttled_answer_during_discovery_is_waited_out(fakes):
    shop = fakes(maximum_available=400.0, restore_rate=400.0)
    catalog = seeded(shop, 40)
    drain = threading.Event()

    def spend() -> None:  # another app on the shop spends the bucket while we read
        while not drain.is_set():
            with shop.lock:
                shop.bucket.refill()
                shop.bucket.available = 0.0
            time.sleep(0.05)

    spender = threading.Thread(target=spend, daemon=True)
    spender.start()
    try:
        threading.Timer(1.0, drain.set).start()
        result = connector.catalog(ref(shop), bulk=False)
    finally:
        drain.set()
        spender.join()
    assert_catalog_is_the_shops(result.entries, catalog)
    assert shop.throttled >= 1


def test_a_failed_bulk_operation_is_a_connector_error_that_says_so(fakes):
    shop = fakes()
    seeded(shop, 20)
    shop.bulk_fail = "INTERNAL_SERVER_ERROR"
    with pytest.raises(ConnectorError, match=r"bulk query of the catalog ended FAILED \(INTERNAL_SERVER_ERROR\)"):
        connector.catalog(ref(shop), bulk=True)
    assert len(connector.catalog(ref(shop), bulk=True).entries) == 20  # the next try reads it


def test_a_bulk_operation_already_running_is_a_connector_error_that_says_so(fakes):
    shop = fakes()
    seeded(shop, 20)
    shop.bulk_objects_per_s = 5.0
    query = "{ products { edges { node { id } } } }"
    started = shop.graphql(
        {
            "query": "mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) "
            "{ bulkOperation { id } userErrors { code message } } }",
            "variables": {"q": query},
        }
    )
    assert started["data"]["bulkOperationRunQuery"]["userErrors"] == []
    with pytest.raises(ConnectorError, match="Another bulk query is running on this shop"):
        connector.catalog(ref(shop), bulk=True)


def test_discovery_without_the_products_scope_says_what_is_missing(fakes):
    shop = fakes(scopes=["read_inventory", "write_inventory", "read_locations", "read_orders"])
    with pytest.raises(ConnectorError, match="read_products"):
        connector.catalog(ref(shop))


def test_order_webhooks_are_subscribed_once_per_address_and_then_deliver(fakes):
    received: list[tuple[str, bytes]] = []
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            received.append((self.headers["X-Shopify-Topic"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}/api/v1/channels/shop/webhooks/shopify/"
    try:
        shop = fakes()
        other = connector.webhooks_subscribe(ref(shop), "https://other-app.example.com/hooks")[0]
        first = connector.webhooks_subscribe(ref(shop), address)
        again = connector.webhooks_subscribe(ref(shop), address)
        assert [s.topic for s in first] == [
            "orders/create",
            "orders/updated",
            "orders/cancelled",
            "fulfillment_orders/moved",
        ]
        assert [s.id for s in again] == [s.id for s in first]  # reused, not duplicated
        assert len(shop.subscriptions) == 8  # four for the other address, left alone, four for ours
        listed = connector.webhook_subscriptions(ref(shop))
        assert {(s.topic, s.address) for s in listed} >= {(s.topic, address) for s in first}
        assert other.id in {s.id for s in listed}
        shop.add_item("CAP", 5)
        order = shop.create_order([("CAP", 1)])
        shop.cancel_order(order["id"])
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [topic for topic, _ in received] == ["orders/create", "orders/updated", "orders/cancelled"]
        assert json.loads(received[0][1])["id"] == order["id"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_webhook_address_is_a_connector_error_with_shopifys_reason(fakes):
    shop = fakes()
    with pytest.raises(
        ConnectorError,
        match=re.escape("orders/create webhook to http://stockroom.example.com/hooks: Address protocol http:// is not"),
    ):
        connector.webhooks_subscribe(ref(shop), "http://stockroom.example.com/hooks")
    assert shop.subscriptions == {}


def test_the_connector_brings_shopifys_request_budget_and_webhook_topics():
    # A push costs about 10 points of the 100 restored each second: 4 a second leave room for polls and reads.
    assert connector.default_rate_per_s * 10 < 100
    assert connector.default_burst >= connector.default_rate_per_s
    assert connector.webhook_topics == (
        "orders/create",
        "orders/updated",
        "orders/cancelled",
        "fulfillment_orders/moved",  # the location an order ships from changed: its reservation moves
    )


# --- the fake's side of it ------------------------------------------------------------------


def graphql(fake: ShopifyFake, query: str, **variables: Any) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{fake.url}/admin/api/2026-07/graphql.json",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


RUN = (
    "mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) "
    "{ bulkOperation { id status } userErrors { code field message } } }"
)


def test_the_fakes_bulk_result_is_jsonl_with_children_after_their_parents(fakes):
    shop = fakes()
    catalog = seed_catalog(shop, 12, untracked=1, no_sku=1, duplicates=2, not_stocked=1)
    query = "{ products { edges { node { id title variants { edges { node { id sku inventoryItem { id } } } } } } } }"
    answer = graphql(shop, RUN, q=query)
    operation = answer["data"]["bulkOperationRunQuery"]["bulkOperation"]
    assert operation["status"] in ("CREATED", "RUNNING")
    for _ in range(100):
        status = graphql(
            shop, "query($id: ID!) { bulkOperation(id: $id) { status url objectCount } }", id=operation["id"]
        )
        if status["data"]["bulkOperation"]["status"] == "COMPLETED":
            break
        time.sleep(0.05)
    found = status["data"]["bulkOperation"]
    with urllib.request.urlopen(found["url"], timeout=10) as response:
        lines = [json.loads(line) for line in response.read().splitlines()]
    assert int(found["objectCount"]) == len(lines)
    seen: set[str] = set()
    for line in lines:
        assert line.get("__parentId") in (None, *seen)  # parents come first
        if "id" in line:
            seen.add(line["id"])
    products = [line for line in lines if "__parentId" not in line]
    variants = [line for line in lines if "__parentId" in line]
    assert len(products) == 3 and len(variants) == 12  # four sizes per product
    assert {line["inventoryItem"]["id"] for line in variants} == set(catalog.quantities)
    assert all(line["__parentId"].startswith("gid://shopify/Product/") for line in variants)


def test_the_fake_refuses_a_bulk_query_shopify_would_refuse(fakes):
    shop = fakes()
    no_connection = graphql(shop, RUN, q="{ shop { name } }")["data"]["bulkOperationRunQuery"]
    assert no_connection["userErrors"][0]["code"] == "INVALID"
    assert "at least one connection" in no_connection["userErrors"][0]["message"]
    misspelt = graphql(shop, RUN, q="{ productVariants { edges { node { skew } } } }")["data"]["bulkOperationRunQuery"]
    assert "Cannot query field 'skew'" in misspelt["userErrors"][0]["message"]
    too_deep = graphql(
        shop,
        RUN,
        q="{ products { edges { node { variants { edges { node { inventoryItem { inventoryLevels { edges { node "
        "{ id } } } } } } } } } } }",
    )["data"]["bulkOperationRunQuery"]
    assert "nesting depth" in too_deep["userErrors"][0]["message"]
    without_group = graphql(
        shop,
        'mutation { bulkOperationRunQuery(query: "{ products { edges { node { id } } } }") '
        "{ userErrors { message } } }",
    )
    assert "groupObjects" in without_group["errors"][0]["message"]  # required in 2026-07


def test_the_fakes_paged_catalog_costs_what_shopify_charges(fakes):
    shop = fakes()
    seeded(shop, 20)
    query = (
        "query($first: Int!) { productVariants(first: $first) { nodes { id sku inventoryItem { id tracked "
        'inventoryLevels(first: 2) { nodes { location { id } quantities(names: ["available"]) { quantity } } } } } '
        "pageInfo { hasNextPage } } }"
    )
    answer = graphql(shop, query, first=10)
    cost = answer["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 2 + 10 * (1 + 1 + 2 + 2 * 3)
    assert answer["data"]["productVariants"]["pageInfo"]["hasNextPage"] is True
    refused = graphql(shop, "{ productVariants { nodes { id } } }")
    assert "first or last" in refused["errors"][0]["message"]


def test_the_onboarding_shop_of_2000_variants_is_read_whole_through_the_bulk_path(fakes):
    shop = fakes()
    catalog = seed_catalog(shop)  # the browser test's shop: 1,800 clean and 50 of each problem class
    assert (len(catalog.clean), len(catalog.untracked), len(catalog.no_sku), len(catalog.not_stocked)) == (
        1800,
        50,
        50,
        50,
    )
    assert len(catalog.duplicates) == 25 and len(catalog.locations) == 2
    result = connector.catalog(ref(shop))
    assert len(shop.bulk_operations) == 1  # 2,000 variants x 10 points would not fit the bucket
    assert_catalog_is_the_shops(result.entries, catalog)
    assert result.requests < 20
