"""Amazon orders through Orders 2026-01-01 (searchOrders, getOrder), the v0 fallback, the order truth read
(``orders_get``) and JSON_LISTINGS_FEED's own budget, against the SP-API fake over real HTTP (no database).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from apps.channels.connectors.amazon import AmazonConnector, AmazonSettingsSerializer
from apps.channels.connectors.base import ChannelRef, ConnectorError, ConnectorThrottled, PlatformOrder, QuantityUpdate
from sandbox.fakes.amazon import AmazonFake

Status = PlatformOrder.Status
connector = AmazonConnector()
V0 = {"orders_api": "v0"}


def channel_for(fake: AmazonFake, settings: dict[str, Any] | None = None) -> ChannelRef:
    config = fake.channel_settings()
    return ChannelRef(
        id=7, code="amazon-us", settings={**config["settings"], **(settings or {})}, credentials=config["credentials"]
    )


def poll_all(channel: ChannelRef, since: datetime) -> tuple[list[PlatformOrder], datetime | None, int]:
    page = connector.orders_since(channel, since)
    orders, pages = list(page.orders), 1
    while page.next_cursor:
        assert page.complete_until is None
        page = connector.orders_since(channel, since, page.next_cursor)
        orders.extend(page.orders)
        pages += 1
    return orders, page.complete_until, pages


def lines_of(order: PlatformOrder) -> set[tuple[str, int, int]]:
    return {(line.sku, line.quantity, line.fulfilled) for line in order.lines}


def test_the_orders_api_is_2026_01_01_unless_the_channel_falls_back_to_v0() -> None:
    base = {"seller_id": "A1", "marketplace_id": "ATVPDKIKX0DER"}
    assert AmazonSettingsSerializer(data=base).is_valid()
    default = AmazonSettingsSerializer(data=base)
    default.is_valid()
    assert default.validated_data["orders_api"] == "2026-01-01"
    assert AmazonSettingsSerializer(data={**base, "orders_api": "v0"}).is_valid()
    assert not AmazonSettingsSerializer(data={**base, "orders_api": "2013-09-01"}).is_valid()


def test_orders_come_through_search_orders_with_their_items_statuses_and_shipped_units(amazon) -> None:
    fake = amazon(settle_s=1.0)
    fake.add_listing("SOCK", 100)
    fake.add_listing("MUG", 100)
    since = datetime.now(UTC) - timedelta(seconds=5)
    opened = fake.create_order([("SOCK", 1), ("SOCK", 2)])
    pending = fake.create_order([("MUG", 2)], status="Pending")
    partly = fake.create_order([("SOCK", 2), ("MUG", 3)])
    fake.ship_order(partly, {"MUG": 3})
    shipped = fake.create_order([("SOCK", 1)])
    fake.ship_order(shipped)
    cancelled = fake.create_order([("MUG", 1)])
    fake.cancel_order(cancelled)
    fake.create_order([("SOCK", 5)], fulfillment_channel="AFN")  # Amazon ships it from its own stock
    channel = channel_for(fake)

    orders, complete_until, pages = poll_all(channel, since)

    by_id = {o.external_id: o for o in orders}
    assert set(by_id) == {opened, pending, partly, shipped, cancelled} and pages == 1
    assert by_id[opened].status == Status.OPEN and lines_of(by_id[opened]) == {("SOCK", 3, 0)}
    assert by_id[pending].status == Status.PENDING
    assert by_id[partly].status == Status.PARTIALLY_FULFILLED
    assert lines_of(by_id[partly]) == {("SOCK", 2, 0), ("MUG", 3, 3)}
    assert by_id[shipped].status == Status.FULFILLED and lines_of(by_id[shipped]) == {("SOCK", 1, 1)}
    assert by_id[cancelled].status == Status.CANCELLED
    assert complete_until is not None and complete_until <= datetime.now(UTC) - timedelta(seconds=0.5)
    (search,) = fake.requests("searchOrders")
    query = search["query"]
    assert query["fulfilledBy"] == ["MERCHANT"] and query["includedData"] == ["FULFILLMENT"]
    assert query["marketplaceIds"] == [fake.marketplace_id] and query["maxResultsPerPage"] == ["100"]
    assert "CANCELLED" in query["fulfillmentStatuses"][0] and "UNFULFILLABLE" not in query["fulfillmentStatuses"][0]
    # The items come with the order: no per-order call, and nothing of v0.
    assert not fake.requests("getOrders") and not fake.requests("getOrderItems") and not fake.requests("getOrder")


def test_later_search_pages_repeat_the_filters_and_never_bring_amazon_fulfilled_orders(amazon) -> None:
    fake = amazon(settle_s=1.0)
    fake.add_listing("SOCK", 1000)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ours = [fake.create_order([("SOCK", 1)]) for _ in range(110)]
    for _ in range(30):
        fake.create_order([("SOCK", 1)], fulfillment_channel="AFN")
    channel = channel_for(fake)

    orders, _, pages = poll_all(channel, since)

    assert pages == 2 and sorted(o.external_id for o in orders) == sorted(ours)
    first, second = (r["query"] for r in fake.requests("searchOrders"))
    assert second["paginationToken"]
    for name in ("lastUpdatedAfter", "fulfilledBy", "fulfillmentStatuses", "marketplaceIds", "includedData"):
        assert second[name] == first[name], name


def test_v0_later_pages_repeat_the_filters_where_dropping_them_brings_afn_orders(amazon) -> None:
    fake = amazon(settle_s=1.0, rates={"getOrderItems": (100.0, 100)})
    fake.add_listing("SOCK", 1000)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ours = [fake.create_order([("SOCK", 1)]) for _ in range(22)]
    afn = [fake.create_order([("SOCK", 1)], fulfillment_channel="AFN") for _ in range(5)]

    orders, _, pages = poll_all(channel_for(fake, V0), since)

    assert pages == 2 and sorted(o.external_id for o in orders) == sorted(ours)
    for request in fake.requests("getOrders"):
        assert request["query"]["FulfillmentChannels"] == ["MFN"]
        assert request["query"]["LastUpdatedAfter"] == [since.strftime("%Y-%m-%dT%H:%M:%SZ")]
    # What the connector guards against: a page token alone, without the filters, brings them in.
    token = requests.post(
        fake.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": fake.refresh_token,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        timeout=5,
    ).json()["access_token"]
    headers = {"x-amz-access-token": token}
    url = f"{fake.url}/orders/v0/orders"
    base = {"MarketplaceIds": fake.marketplace_id, "MaxResultsPerPage": "20"}
    first = requests.get(
        url, params={**base, "LastUpdatedAfter": since.isoformat(), "FulfillmentChannels": "MFN"}, headers=headers
    ).json()["payload"]
    bare = requests.get(url, params={**base, "NextToken": first["NextToken"]}, headers=headers).json()["payload"]
    assert {o["AmazonOrderId"] for o in bare["Orders"]} & set(afn)


def test_orders_get_reads_each_order_as_amazon_shows_it_now(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 100)
    fake.add_listing("MUG", 100)
    kept = fake.create_order([("SOCK", 2), ("MUG", 1)])
    changed = fake.create_order([("SOCK", 2)])
    cancelled = fake.create_order([("MUG", 4)])
    gone = fake.create_order([("MUG", 1)])
    fake.change_order(changed, "SOCK", 5)
    fake.cancel_order(cancelled)
    fake.delete_order(gone)
    fake.ship_order(kept, {"SOCK": 1})
    assert fake.quantity("SOCK") == 100 - 2 - 5 and fake.quantity("MUG") == 100 - 1 - 1  # the cancel gave 4 back

    found = {o.external_id: o for o in connector.orders_get(channel_for(fake), [kept, changed, cancelled, gone])}

    assert found[kept].status == Status.PARTIALLY_FULFILLED
    assert lines_of(found[kept]) == {("SOCK", 2, 1), ("MUG", 1, 0)}
    assert lines_of(found[changed]) == {("SOCK", 5, 0)} and found[changed].status == Status.OPEN
    assert found[cancelled].status == Status.CANCELLED
    # Amazon says the order does not exist (404): cancelled, no lines.
    assert found[gone].status == Status.CANCELLED and found[gone].lines == ()
    gets = fake.requests("getOrder")
    assert [g["path"].rsplit("/", 1)[1] for g in gets] == [kept, changed, cancelled, gone]
    assert all(g["path"].startswith("/orders/2026-01-01/orders/") for g in gets)
    assert all(g["query"] == {"includedData": ["FULFILLMENT"]} for g in gets)


def test_orders_get_under_v0_reads_get_order_and_its_items(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 100)
    changed = fake.create_order([("SOCK", 2)])
    gone = fake.create_order([("SOCK", 1)])
    fake.change_order(changed, "SOCK", 1)
    fake.delete_order(gone)

    found = {o.external_id: o for o in connector.orders_get(channel_for(fake, V0), [changed, gone])}

    assert lines_of(found[changed]) == {("SOCK", 1, 0)} and found[changed].status == Status.OPEN
    assert found[gone].status == Status.CANCELLED and found[gone].lines == ()
    assert [g["path"] for g in fake.requests("getOrder")] == [
        f"/orders/v0/orders/{changed}",
        f"/orders/v0/orders/{gone}",
    ]
    assert len(fake.requests("getOrderItems")) == 1


def test_an_order_amazon_will_not_show_now_is_left_out_not_cancelled(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 10)
    first = fake.create_order([("SOCK", 1)])
    second = fake.create_order([("SOCK", 1)])
    fake.fail_next("getOrder", status=400, count=1)

    found = connector.orders_get(channel_for(fake), [first, second])

    assert [o.external_id for o in found] == [second]


def test_orders_get_keeps_to_get_orders_rate_and_returns_what_it_read(amazon) -> None:
    fake = amazon(rates={"getOrder": (0.05, 2)})
    fake.add_listing("SOCK", 10)
    ids = [fake.create_order([("SOCK", 1)]) for _ in range(4)]
    channel = channel_for(fake)
    assert connector.orders_get_batch <= 30  # within getOrder's burst

    found = connector.orders_get(channel, ids)

    # Two in the burst (at our 0.9 margin: one), the next one 20 s away: what was read comes back, nothing
    # is sent beyond the budget and nothing is called cancelled.
    assert 1 <= len(found) <= 2 and all(o.status == Status.OPEN for o in found)
    assert fake.throttled("getOrder") <= 1
    with pytest.raises(ConnectorThrottled):
        connector.orders_get(channel, ids)


def test_json_listings_feeds_keep_to_five_per_five_minutes_and_a_large_batch_waits_for_the_next(amazon) -> None:
    fake = amazon(feed_processing_s=0.1, rates={"createFeed": (10.0, 50), "createFeedDocument": (10.0, 50)})
    for n in range(40):
        fake.add_listing(f"SKU-{n:02d}", 0)
    channel = channel_for(fake, {"product_type": "PRODUCT"})
    results = []
    for round_ in range(7):
        batch = [QuantityUpdate(n, f"SKU-{n:02d}", "", round_ + 1, None) for n in range(40)]
        results.append(connector.push(channel, batch))

    feeds = fake.feed_submissions()
    assert len(feeds) == 4 and fake.throttled("createFeed") == 0  # Amazon's 5, at our 0.9 margin
    assert all(len(r.accepted) == 40 for r in results[:4])
    # The feed budget spent: the batch waits for the next feed (about a minute), nothing sent or counted.
    for waiting in results[4:]:
        assert waiting.throttled_for is not None and 30 < waiting.throttled_for < 120
        assert not waiting.accepted and not waiting.failed
    assert len(fake.requests("createFeedDocument")) == 4 and not fake.requests("patchListingsItem")
    # A small batch still goes at once, item by item.
    small = connector.push(channel, [QuantityUpdate(1, "SKU-01", "", 99, None)])
    assert small.accepted == [1] and fake.quantity("SKU-01") == 99


def test_the_fake_holds_json_listings_feeds_to_their_own_limit(amazon) -> None:
    """Over Amazon's feed-type limit createFeed answers 429 even when createFeed's own budget has room."""
    fake = amazon(feed_type_rate=(5 / 300, 2), rates={"createFeed": (10.0, 50)})
    for n in range(40):
        fake.add_listing(f"SKU-{n:02d}", 0)
    channel = channel_for(fake, {"product_type": "PRODUCT"})
    batch = [QuantityUpdate(n, f"SKU-{n:02d}", "", 3, None) for n in range(40)]
    assert len(connector.push(channel, batch).accepted) == 40
    assert len(connector.push(channel, batch).accepted) == 40
    third = connector.push(channel, batch)
    assert fake.throttled("createFeed") == 1 and len(fake.feed_submissions()) == 2
    assert third.throttled_for is not None and not third.accepted
    # Amazon's 429 emptied our feed bucket too: the next push waits without trying another feed.
    fourth = connector.push(channel, batch)
    assert fourth.throttled_for is not None and fourth.throttled_for > 30
    assert len(fake.requests("createFeed")) == 3


def test_the_fake_outage_switch_answers_503_everywhere(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 3)
    order = fake.create_order([("SOCK", 1)])
    channel = channel_for(fake)
    fake.set_outage(True)
    with pytest.raises(ConnectorError, match=r"503|not answering"):
        connector.orders_get(channel, [order])
    fake.set_outage(False)
    assert [o.external_id for o in connector.orders_get(channel, [order])] == [order]


def test_a_late_order_is_found_once_amazon_shows_it(amazon) -> None:
    fake = amazon(settle_s=0.0)
    fake.add_listing("SOCK", 10)
    since = datetime.now(UTC) - timedelta(seconds=5)
    late = fake.create_order([("SOCK", 2)], late_s=1.5)
    channel = channel_for(fake)
    assert [o.external_id for o in connector.orders_since(channel, since).orders] == []
    time.sleep(1.6)
    assert [o.external_id for o in connector.orders_since(channel, since).orders] == [late]
