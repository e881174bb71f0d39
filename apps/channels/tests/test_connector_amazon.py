"""The Amazon connector against the local SP-API fake, over real HTTP on loopback (no database).

Buckets, cached access tokens and feed ledgers live in this run's Redis and are wiped between tests
(``clean_sync_redis``); the fast sync tunables of the conftest apply (push budget 1.5 s).
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from apps.channels.connectors import connector_named
from apps.channels.connectors.amazon import (
    AmazonConnector,
    AmazonCredentialsSerializer,
    AmazonSettingsSerializer,
    OperationBucket,
)
from apps.channels.connectors.base import (
    ChannelRef,
    ConnectorError,
    ConnectorThrottled,
    PlatformOrder,
    QuantityUpdate,
)
from apps.channels.tests.conftest import wait_for
from sandbox.fakes.amazon import AmazonFake

Status = PlatformOrder.Status


def channel_for(
    fake: AmazonFake, *, settings: dict[str, Any] | None = None, credentials: dict[str, Any] | None = None
) -> ChannelRef:
    config = fake.channel_settings()
    return ChannelRef(
        id=7,
        code="amazon-us",
        settings={**config["settings"], **(settings or {})},
        credentials={**config["credentials"], **(credentials or {})},
    )


def update(listing_id: int, sku: str, available: int, *, external_id: str = "") -> QuantityUpdate:
    return QuantityUpdate(
        listing_id=listing_id, sku=sku, external_id=external_id, available=available, last_pushed=None
    )


def calls(fake: AmazonFake, operation: str) -> list[dict[str, Any]]:
    return fake.requests(operation)


connector = AmazonConnector()
V0 = {"orders_api": "v0"}  # the fallback: Orders v0 (getOrders, getOrderItems)


# --- registry and set-up ---------------------------------------------------------------------------


def test_registry_serves_the_amazon_connector_with_its_settings_and_credentials() -> None:
    found = connector_named("amazon")
    assert isinstance(found, AmazonConnector)
    assert found.polls_orders and found.receives_orders
    settings = AmazonSettingsSerializer(data={"seller_id": "A2SELLER", "marketplace_id": "ATVPDKIKX0DER"})
    assert settings.is_valid(), settings.errors
    assert settings.validated_data["endpoint"] == "https://sellingpartnerapi-na.amazon.com"
    assert settings.validated_data["token_url"] == "https://api.amazon.com/auth/o2/token"
    assert settings.validated_data["product_type"] == ""
    missing = AmazonCredentialsSerializer(data={"client_id": "x"})
    assert not missing.is_valid()
    assert set(missing.errors) == {"client_secret", "refresh_token"}


# --- pushing quantities -----------------------------------------------------------------------------


def test_push_patches_each_quantity_with_the_listing_product_type_and_keeps_its_handling_time(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK-3PK", 4, product_type="SOCKS", lead_time_days=3)
    fake.add_listing("MUG-RED", 0, product_type="DRINKING_CUP")
    channel = channel_for(fake)

    result = connector.push(channel, [update(1, "SOCK-3PK", 9), update(2, "local-mug", 5, external_id="MUG-RED")])

    assert sorted(result.accepted) == [1, 2] and not result.failed and result.throttled_for is None
    assert fake.quantity("SOCK-3PK") == 9 and fake.quantity("MUG-RED") == 5
    # merge, not replace: the merchant's handling time survives the quantity update
    assert fake.availability("SOCK-3PK") == [
        {"fulfillment_channel_code": "DEFAULT", "quantity": 9, "lead_time_to_ship_max_days": 3}
    ]
    patches = calls(fake, "patchListingsItem")
    assert {p["body"]["productType"] for p in patches} == {"SOCKS", "DRINKING_CUP"}
    assert all(p["body"]["patches"][0]["op"] == "merge" for p in patches)
    assert all(p["query"]["marketplaceIds"] == ["ATVPDKIKX0DER"] for p in patches)
    assert len(calls(fake, "searchListingsItems")) == 1  # one lookup of both product types
    assert result.requests == 3

    # The product types are remembered: the next push is patches only.
    connector.push(channel, [update(1, "SOCK-3PK", 8)])
    assert len(calls(fake, "searchListingsItems")) == 1
    assert fake.quantity("SOCK-3PK") == 8


def test_product_type_from_settings_needs_no_lookup(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK-3PK", 4, product_type="SOCKS")
    result = connector.push(channel_for(fake, settings={"product_type": "SOCKS"}), [update(1, "SOCK-3PK", 2)])
    assert result.accepted == [1]
    assert not calls(fake, "searchListingsItems")


def test_a_product_type_changed_on_amazon_is_looked_up_again_after_the_rejection(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 0, product_type="SHIRT")
    channel = channel_for(fake)
    assert connector.push(channel, [update(1, "A", 1)]).accepted == [1]
    fake.listings["A"].product_type = "APPAREL"  # recategorised in Seller Central

    refused = connector.push(channel, [update(1, "A", 2)])
    assert "does not match the listing's product type" in refused.failed[1]

    assert connector.push(channel, [update(1, "A", 2)]).accepted == [1]
    assert calls(fake, "patchListingsItem")[-1]["body"]["productType"] == "APPAREL"
    assert fake.quantity("A") == 2


def test_rejected_unknown_and_amazon_fulfilled_listings_fail_one_by_one(amazon) -> None:
    fake = amazon()
    fake.add_listing("GOOD", 1)
    fake.add_listing("BLOCKED", 1)
    fake.add_listing("FBA-ONLY", None, fulfillment_channel="AMAZON_NA")
    fake.reject("BLOCKED", "This listing is suppressed: add a main image.", code="SUPPRESSED")

    result = connector.push(
        channel_for(fake),
        [update(1, "GOOD", 3), update(2, "BLOCKED", 3), update(3, "NOPE", 3), update(4, "FBA-ONLY", 3)],
    )

    assert result.accepted == [1]
    assert "This listing is suppressed: add a main image. [SUPPRESSED]" in result.failed[2]
    assert "no listing with seller SKU 'NOPE'" in result.failed[3]
    assert "fulfilled by Amazon (AMAZON_NA)" in result.failed[4]
    assert {p["path"].rsplit("/", 1)[1] for p in calls(fake, "patchListingsItem")} == {"GOOD", "BLOCKED"}
    assert fake.quantity("BLOCKED") == 1


def test_skus_with_special_characters_are_encoded_in_the_path(amazon) -> None:
    fake = amazon()
    fake.add_listing("TEE/BLUE M,2", 0)
    result = connector.push(channel_for(fake), [update(1, "TEE/BLUE M,2", 6)])
    assert result.accepted == [1]
    assert fake.quantity("TEE/BLUE M,2") == 6
    # a SKU with a comma cannot travel in searchListingsItems' comma-separated list
    assert calls(fake, "getListingsItem") and not calls(fake, "searchListingsItems")


# --- Login with Amazon --------------------------------------------------------------------------------


def test_access_token_is_cached_and_an_expired_one_is_refreshed_once(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 0)
    channel = channel_for(fake)
    connector.push(channel, [update(1, "A", 1)])
    connector.push(channel, [update(1, "A", 2)])
    assert fake.tokens_issued == 1  # one token for both pushes

    fake.expire_tokens()
    result = connector.push(channel, [update(1, "A", 3)])

    assert result.accepted == [1] and fake.quantity("A") == 3
    assert fake.tokens_issued == 2
    patches = calls(fake, "patchListingsItem")
    assert [p["status"] for p in patches[-2:]] == [403, 200]  # refused once, then sent again with a fresh token


def test_a_short_lived_token_is_renewed_before_it_expires(amazon) -> None:
    fake = amazon(token_lifetime_s=1.0)
    fake.add_listing("A", 0)
    channel = channel_for(fake)
    connector.push(channel, [update(1, "A", 1)])
    time.sleep(0.7)  # kept for half its life, renewed before Amazon would refuse it
    connector.push(channel, [update(1, "A", 2)])
    assert fake.tokens_issued == 2
    assert not [r for r in fake.requests() if r["status"] == 403]


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"refresh_token": "Atzr|revoked"}, "invalid_grant"),
    ],
)
def test_refused_credentials_are_a_clear_connector_error(amazon, credentials, expected) -> None:
    fake = amazon()
    fake.add_listing("A", 0)
    with pytest.raises(ConnectorError, match=expected):
        connector.push(channel_for(fake, credentials=credentials), [update(1, "A", 1)])
    assert not calls(fake, "patchListingsItem")


def test_access_denied_for_another_seller_is_not_retried(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 0)
    with pytest.raises(ConnectorError, match="seller_id A9OTHER is the account that authorized it"):
        connector.push(channel_for(fake, settings={"seller_id": "A9OTHER"}), [update(1, "A", 1)])
    assert fake.tokens_issued == 1  # a fresh token would not help: no refresh


def test_unreachable_amazon_is_a_connector_error(amazon) -> None:
    fake = amazon()
    closed = channel_for(fake, settings={"endpoint": "http://127.0.0.1:9"})
    with pytest.raises(ConnectorError, match="could not be reached"):
        connector.push(closed, [update(1, "A", 1)])


def test_a_server_error_before_anything_was_applied_fails_the_whole_push(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 0)
    fake.add_listing("B", 0)
    fake.fail_next("patchListingsItem", 503)
    with pytest.raises(ConnectorError, match="HTTP 503"):
        connector.push(channel_for(fake), [update(1, "A", 1), update(2, "B", 1)])
    assert fake.quantity("A") == 0


def test_a_server_error_mid_batch_fails_only_what_was_not_applied(amazon) -> None:
    fake = amazon()
    for sku in ("A", "B", "C"):
        fake.add_listing(sku, 0)
    fake.fail_next("patchListingsItem", 500, after=1)
    result = connector.push(channel_for(fake), [update(1, "A", 1), update(2, "B", 1), update(3, "C", 1)])
    assert result.accepted == [1]
    assert set(result.failed) == {2, 3} and "HTTP 500" in result.failed[2]
    assert fake.quantity("A") == 1 and fake.quantity("C") == 0


# --- rate limits -------------------------------------------------------------------------------------


def test_a_429_before_anything_applied_is_throttled_for_and_the_rate_header_is_learned(amazon) -> None:
    fake = amazon(rates={"patchListingsItem": (1.0, 1)})
    fake.add_listing("A", 0)
    channel = channel_for(fake, settings={"product_type": "PRODUCT"})
    assert connector.push(channel, [update(1, "A", 1)]).accepted == [1]

    throttled = connector.push(channel, [update(1, "A", 2)])

    assert throttled.throttled_for is not None and 0.5 < throttled.throttled_for < 2.0
    assert not throttled.accepted and not throttled.failed
    assert fake.quantity("A") == 1
    _, rate = OperationBucket(fake.seller_id, "patchListingsItem").look()
    assert rate == pytest.approx(0.9)  # Amazon's 1/s from x-amzn-RateLimit-Limit, at our margin
    # The bucket now paces us: the next push waits for its token instead of being refused again.
    assert connector.push(channel, [update(1, "A", 3)]).accepted == [1]
    assert fake.quantity("A") == 3
    assert fake.throttled("patchListingsItem") == 1


def test_a_429_mid_batch_waits_for_amazon_and_finishes_the_batch(amazon) -> None:
    fake = amazon(rates={"patchListingsItem": (4.0, 2)})
    for sku in ("A", "B", "C"):
        fake.add_listing(sku, 0)
    result = connector.push(
        channel_for(fake, settings={"product_type": "PRODUCT"}),
        [update(1, "A", 1), update(2, "B", 2), update(3, "C", 3)],
    )
    assert sorted(result.accepted) == [1, 2, 3] and not result.failed
    assert (fake.quantity("A"), fake.quantity("B"), fake.quantity("C")) == (1, 2, 3)
    assert fake.throttled("patchListingsItem") == 1
    assert result.requests == 4  # three patches and the one Amazon refused


def test_429s_carry_the_rate_header_in_amazons_error_shape(amazon) -> None:
    fake = amazon(rates={"getMarketplaceParticipations": (0.5, 1)})
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
    url = f"{fake.url}/sellers/v1/marketplaceParticipations"
    assert requests.get(url, headers={"x-amz-access-token": token}, timeout=5).status_code == 200
    refused = requests.get(url, headers={"x-amz-access-token": token}, timeout=5)
    assert refused.status_code == 429
    assert refused.headers["x-amzn-RateLimit-Limit"] == "0.5"
    assert refused.headers["x-amzn-RequestId"]
    assert refused.json() == {
        "errors": [
            {"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.", "details": ""}
        ]
    }


# --- the JSON listings feed ------------------------------------------------------------------------


def test_a_large_batch_goes_as_one_listings_feed_and_rejections_come_back_from_its_report(amazon) -> None:
    fake = amazon(feed_processing_s=0.2)
    for n in range(30):
        fake.add_listing(f"SKU-{n:02d}", 0, product_type="SHIRT")
    fake.reject("SKU-07", "Quantity updates are blocked for this ASIN.", code="BLOCKED")
    channel = channel_for(fake)
    batch = [update(n, f"SKU-{n:02d}", n + 1) for n in range(30)]

    result = connector.push(channel, batch)

    # Accepted when Amazon accepts the feed: the same promise a patch's ACCEPTED gives.
    assert sorted(result.accepted) == list(range(30)) and not result.failed
    assert not calls(fake, "patchListingsItem")
    assert [len(calls(fake, op)) for op in ("createFeedDocument", "createFeed")] == [1, 1]
    document = calls(fake, "createFeed")[0]["body"]
    assert document["feedType"] == "JSON_LISTINGS_FEED" and document["marketplaceIds"] == ["ATVPDKIKX0DER"]
    wait_for(lambda: fake.quantity("SKU-29") == 30, timeout=5)
    assert fake.quantity("SKU-00") == 1 and fake.quantity("SKU-07") == 0

    rejected = connector.settle_feeds(channel)

    assert list(rejected) == ["SKU-07"] and "Quantity updates are blocked for this ASIN." in rejected["SKU-07"]
    assert calls(fake, "getFeedDocument")
    # The next push of that SKU goes as its own patch, so Amazon's refusal is a failed push with its words;
    # the rest of the large batch still goes as a feed.
    again = connector.push(channel, [update(n, f"SKU-{n:02d}", 50) for n in range(25)])
    assert "Quantity updates are blocked for this ASIN." in again.failed[7]
    assert sorted(again.accepted) == [n for n in range(25) if n != 7]
    assert [p["path"].rsplit("/", 1)[1] for p in calls(fake, "patchListingsItem")] == ["SKU-07"]
    assert len(calls(fake, "createFeed")) == 2


def test_feed_reports_are_read_by_later_calls_without_being_asked(amazon, monkeypatch) -> None:
    monkeypatch.setattr("apps.channels.connectors.amazon.FEED_CHECK_EVERY_S", 0.05)
    fake = amazon(feed_processing_s=0.1)
    for n in range(25):
        fake.add_listing(f"SKU-{n:02d}", 0)
    fake.reject("SKU-03", "Listing deleted.")
    channel = channel_for(fake, settings={"product_type": "PRODUCT"})
    connector.push(channel, [update(n, f"SKU-{n:02d}", 5) for n in range(25)])
    wait_for(lambda: fake.quantity("SKU-24") == 5, timeout=5)
    time.sleep(0.1)

    shown = connector.read_back(channel, [update(3, "SKU-03", 0), update(4, "SKU-04", 0)])

    assert shown == {3: 0, 4: 5}
    assert calls(fake, "getFeed")
    push = connector.push(channel, [update(3, "SKU-03", 5)])
    assert "Listing deleted." in push.failed[3]


def test_when_the_feed_budget_is_spent_a_large_batch_is_throttled_not_lost(amazon) -> None:
    fake = amazon(rates={"createFeed": (0.0083, 1)})
    for n in range(25):
        fake.add_listing(f"SKU-{n:02d}", 0)
    channel = channel_for(fake, settings={"product_type": "PRODUCT"})
    assert len(connector.push(channel, [update(n, f"SKU-{n:02d}", 1) for n in range(25)]).accepted) == 25

    second = connector.push(channel, [update(n, f"SKU-{n:02d}", 2) for n in range(25)])

    assert second.throttled_for is not None and second.throttled_for > 60
    assert not second.accepted and not second.failed


# --- reading back ------------------------------------------------------------------------------------


def test_read_back_asks_twenty_skus_per_request(amazon) -> None:
    fake = amazon()
    for n in range(23):
        fake.add_listing(f"SKU-{n:02d}", n)
    fake.add_listing("FBA", None, fulfillment_channel="AMAZON_NA")
    listings = [update(n, f"SKU-{n:02d}", 0) for n in range(23)] + [update(90, "FBA", 0), update(91, "GONE", 0)]

    shown = connector.read_back(channel_for(fake), listings)

    assert shown == {**{n: n for n in range(23)}, 90: None, 91: None}
    searches = calls(fake, "searchListingsItems")
    assert len(searches) == 2
    assert searches[0]["query"]["identifiersType"] == ["SKU"]
    assert searches[0]["query"]["includedData"] == ["summaries,fulfillmentAvailability"]


def test_read_back_sees_a_hand_edit_in_seller_central(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 3)
    channel = channel_for(fake)
    assert connector.read_back(channel, [update(1, "A", 0)]) == {1: 3}
    fake.set_quantity("A", 11)
    assert connector.read_back(channel, [update(1, "A", 0)]) == {1: 11}


# --- orders ------------------------------------------------------------------------------------------


def _poll_all(channel: ChannelRef, since: datetime) -> tuple[list[PlatformOrder], datetime | None, int]:
    page = connector.orders_since(channel, since)
    orders, pages = list(page.orders), 1
    while page.next_cursor:
        assert page.complete_until is None  # only the last page moves the watermark
        page = connector.orders_since(channel, since, page.next_cursor)
        orders.extend(page.orders)
        pages += 1
    return orders, page.complete_until, pages


def test_v0_orders_are_polled_in_pages_with_their_items_and_statuses(amazon) -> None:
    fake = amazon(rates={"getOrderItems": (50.0, 100)}, settle_s=1.0)
    fake.add_listing("SOCK", 100)
    fake.add_listing("MUG", 100)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ids = [fake.create_order([("SOCK", 1)]) for _ in range(41)]
    pending = fake.create_order([("MUG", 2)], status="Pending")
    partly = fake.create_order([("SOCK", 2), ("MUG", 3)])
    fake.ship_order(partly, {"MUG": 3})
    shipped = fake.create_order([("SOCK", 1)])
    fake.ship_order(shipped)
    cancelled = fake.create_order([("MUG", 1)])
    fake.cancel_order(cancelled)
    channel = channel_for(fake, settings=V0)

    started = datetime.now(UTC)
    orders, complete_until, pages = _poll_all(channel, since)

    assert pages == 3  # 45 orders, 20 per page
    by_id = {o.external_id: o for o in orders}
    assert set(by_id) == {*ids, pending, partly, shipped, cancelled}
    assert by_id[ids[0]].status == Status.OPEN and by_id[ids[0]].lines[0].sku == "SOCK"
    assert by_id[pending].status == Status.PENDING and by_id[pending].lines[0].quantity == 2
    assert by_id[partly].status == Status.PARTIALLY_FULFILLED
    assert {(line.sku, line.quantity, line.fulfilled) for line in by_id[partly].lines} == {
        ("SOCK", 2, 0),
        ("MUG", 3, 3),
    }
    assert by_id[shipped].status == Status.FULFILLED and by_id[shipped].lines[0].fulfilled == 1
    assert by_id[cancelled].status == Status.CANCELLED
    assert all(line.external_id == line.sku for o in orders for line in o.lines)
    # The watermark is what Amazon vouches for (its LastUpdatedBefore), not the time of the poll.
    assert complete_until is not None
    assert started - timedelta(seconds=3) <= complete_until <= started - timedelta(seconds=0.5)
    first = calls(fake, "getOrders")[0]["query"]
    assert first["FulfillmentChannels"] == ["MFN"] and first["MaxResultsPerPage"] == ["20"]
    assert first["LastUpdatedAfter"] == [since.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")]
    # NextToken does not replace the filters: every page repeats them.
    for later in calls(fake, "getOrders")[1:]:
        query = later["query"]
        assert query["NextToken"] and query["FulfillmentChannels"] == ["MFN"]
        assert query["LastUpdatedAfter"] == first["LastUpdatedAfter"]
        assert query["MarketplaceIds"] == [fake.marketplace_id]


def test_v0_an_order_seen_again_unchanged_costs_no_item_request(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 10)
    order = fake.create_order([("SOCK", 1), ("SOCK", 2)])
    channel = channel_for(fake, settings=V0)
    since = datetime.now(UTC) - timedelta(minutes=1)
    first = connector.orders_since(channel, since)
    assert [(line.sku, line.quantity) for line in first.orders[0].lines] == [("SOCK", 3)]  # one line per SKU
    connector.orders_since(channel, since)
    assert len(calls(fake, "getOrderItems")) == 1
    fake.cancel_order(order)
    again = connector.orders_since(channel, since)
    assert again.orders[0].status == Status.CANCELLED
    assert len(calls(fake, "getOrderItems")) == 2


def test_a_cancelled_order_gives_its_units_back_on_the_fake(amazon) -> None:
    fake = amazon()
    fake.add_listing("SOCK", 10)
    order = fake.create_order([("SOCK", 4)])
    assert fake.quantity("SOCK") == 6
    fake.cancel_order(order)
    assert fake.quantity("SOCK") == 10


def test_the_watermark_never_moves_back_before_since(amazon) -> None:
    fake = amazon(settle_s=60.0)
    channel = channel_for(fake, settings=V0)
    since = datetime.now(UTC) - timedelta(seconds=10)
    page = connector.orders_since(channel, since)
    assert page.complete_until == since


@pytest.mark.slow
def test_a_throttled_poll_says_how_long_to_wait(amazon) -> None:
    fake = amazon(rates={"getOrders": (0.0167, 1)})
    channel = channel_for(fake, settings=V0)
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert connector.orders_since(channel, since).complete_until is not None
    with pytest.raises(ConnectorThrottled) as throttled:
        connector.orders_since(channel, since)
    assert throttled.value.wait_s > 30  # Amazon's one getOrders a minute, learned from its rate header
    assert fake.throttled("getOrders") == 1
    # Our bucket knows now: the next poll is refused here, without asking Amazon again.
    with pytest.raises(ConnectorThrottled):
        connector.orders_since(channel, since)
    assert len(calls(fake, "getOrders")) == 2


def test_a_throttled_read_back_says_how_long_to_wait(amazon) -> None:
    fake = amazon(rates={"searchListingsItems": (0.05, 1)})
    fake.add_listing("A", 1)
    channel = channel_for(fake)
    assert connector.read_back(channel, [update(1, "A", 0)]) == {1: 1}
    with pytest.raises(ConnectorThrottled) as throttled:
        connector.read_back(channel, [update(1, "A", 0)])
    assert throttled.value.wait_s > 10


def test_the_fake_refuses_order_queries_amazon_refuses(amazon) -> None:
    fake = amazon()
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
    url = f"{fake.url}/orders/v0/orders"
    now = datetime.now(UTC)

    def get(**params: str) -> requests.Response:
        return requests.get(
            url,
            params={"MarketplaceIds": fake.marketplace_id, **params},
            headers={"x-amz-access-token": token},
            timeout=5,
        )

    too_recent = get(LastUpdatedAfter=(now - timedelta(hours=1)).isoformat(), LastUpdatedBefore=now.isoformat())
    assert too_recent.status_code == 400 and "two minutes" in too_recent.json()["errors"][0]["message"]
    assert get().status_code == 400  # neither CreatedAfter nor LastUpdatedAfter
    both = get(CreatedAfter=now.isoformat(), LastUpdatedAfter=now.isoformat())
    assert both.status_code == 400 and both.json()["errors"][0]["code"] == "InvalidInput"


# --- webhooks and the connection test ---------------------------------------------------------------


def test_amazon_has_no_http_webhooks(amazon) -> None:
    fake = amazon()
    assert connector.webhook_verify(channel_for(fake), {"X-Anything": "1"}, b"{}") is None


def test_connection_test_names_the_store_and_marketplace(amazon) -> None:
    fake = amazon()
    line = connector.test_connection(channel_for(fake))
    assert "A1STOCKROOMFAKE" in line and "Stockroom Fake Store" in line and "ATVPDKIKX0DER" in line
    assert fake.tokens_issued == 1


def test_connection_test_says_when_the_seller_does_not_sell_in_the_marketplace(amazon) -> None:
    fake = amazon()
    with pytest.raises(ConnectorError, match="does not sell in marketplace A1PA6795UKMFR9; it sells in: ATVPDKIKX0DER"):
        connector.test_connection(channel_for(fake, settings={"marketplace_id": "A1PA6795UKMFR9"}))


def test_connection_test_reports_bad_credentials(amazon) -> None:
    fake = amazon()
    with pytest.raises(ConnectorError, match="invalid_client"):
        connector.test_connection(channel_for(fake, credentials={"client_id": "someone-else"}))


# --- the fake's own faithfulness ----------------------------------------------------------------------


def test_fake_token_endpoint_speaks_login_with_amazon(amazon) -> None:
    fake = amazon(token_lifetime_s=120)
    good = {
        "grant_type": "refresh_token",
        "refresh_token": fake.refresh_token,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    answer = requests.post(fake.token_url, data=good, timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 120 and body["access_token"].startswith("Atza|")
    bad_grant = requests.post(fake.token_url, data={**good, "refresh_token": "Atzr|x"}, timeout=5)
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "invalid_grant"
    bad_client = requests.post(fake.token_url, data={**good, "client_secret": "x"}, timeout=5)
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"


def test_fake_expired_token_gets_amazons_403(amazon) -> None:
    fake = amazon(token_lifetime_s=0.2)
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
    time.sleep(0.3)
    answer = requests.get(
        f"{fake.url}/sellers/v1/marketplaceParticipations", headers={"x-amz-access-token": token}, timeout=5
    )
    assert answer.status_code == 403
    assert answer.json() == {
        "errors": [{"code": "Unauthorized", "message": "The access token you provided has expired.", "details": ""}]
    }
    unknown = requests.get(
        f"{fake.url}/sellers/v1/marketplaceParticipations", headers={"x-amz-access-token": "Atza|nope"}, timeout=5
    )
    assert unknown.status_code == 403 and "revoked, malformed or invalid" in unknown.json()["errors"][0]["details"]


def test_fake_replace_drops_what_merge_keeps_and_validates_quantities(amazon) -> None:
    fake = amazon()
    fake.add_listing("A", 1, lead_time_days=4)
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

    def patch(op: str, quantity: Any) -> dict[str, Any]:
        body = {
            "productType": "PRODUCT",
            "patches": [
                {
                    "op": op,
                    "path": "/attributes/fulfillment_availability",
                    "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
                }
            ],
        }
        response = requests.patch(
            f"{fake.url}/listings/2021-08-01/items/{fake.seller_id}/A",
            params={"marketplaceIds": fake.marketplace_id},
            json=body,
            headers={"x-amz-access-token": token},
            timeout=5,
        )
        assert response.status_code == 200 and response.headers["x-amzn-RateLimit-Limit"] == "5"
        return response.json()

    assert patch("merge", 2)["status"] == "ACCEPTED"
    assert fake.availability("A") == [
        {"fulfillment_channel_code": "DEFAULT", "quantity": 2, "lead_time_to_ship_max_days": 4}
    ]
    assert patch("replace", 3)["status"] == "ACCEPTED"
    assert fake.availability("A") == [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]
    refused = patch("merge", -1)
    assert refused["status"] == "INVALID" and refused["issues"][0]["severity"] == "ERROR"
    assert fake.quantity("A") == 3


def test_fake_feed_report_is_gzip_json_in_amazons_report_shape(amazon) -> None:
    fake = amazon(feed_processing_s=0.05)
    for n in range(25):
        fake.add_listing(f"SKU-{n:02d}", 0)
    fake.reject("SKU-01", "Nope.")
    connector.push(
        channel_for(fake, settings={"product_type": "PRODUCT"}), [update(n, f"SKU-{n:02d}", 1) for n in range(25)]
    )
    wait_for(lambda: all(f.status == "DONE" for f in fake.feeds.values()), timeout=5)
    feed = next(iter(fake.feeds.values()))
    raw = fake._documents[feed.result_document_id or ""].body or b""
    report = json.loads(gzip.decompress(raw))
    assert report["summary"] == {
        "errors": 1,
        "warnings": 0,
        "messagesProcessed": 25,
        "messagesAccepted": 24,
        "messagesInvalid": 1,
    }
    assert report["issues"] == [
        {"messageId": 2, "sku": "SKU-01", "code": "LISTING_BLOCKED", "severity": "ERROR", "message": "Nope."}
    ]


def test_fake_presigned_upload_needs_its_signature(amazon) -> None:
    fake = amazon()
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
    created = requests.post(
        f"{fake.url}/feeds/2021-06-30/documents",
        json={"contentType": "application/json; charset=UTF-8"},
        headers={"x-amz-access-token": token},
        timeout=5,
    )
    assert created.status_code == 201
    url = created.json()["url"]
    forged = requests.put(
        url.split("?")[0] + "?X-Amz-Signature=bad",
        data=b"{}",
        headers={"Content-Type": "application/json; charset=UTF-8"},
        timeout=5,
    )
    assert forged.status_code == 403
    assert (
        requests.put(
            url, data=b"{}", headers={"Content-Type": "application/json; charset=UTF-8"}, timeout=5
        ).status_code
        == 200
    )


def test_fake_control_over_http_for_the_standalone_fake(amazon) -> None:
    fake = amazon()
    control = f"{fake.url}/_control"
    assert requests.put(f"{control}/listings/SOCK", json={"quantity": 5}, timeout=5).status_code == 200
    created = requests.post(f"{control}/orders", json={"lines": [{"sku": "SOCK", "quantity": 2}]}, timeout=5)
    assert created.status_code == 201
    order_id = created.json()["AmazonOrderId"]
    shipped = requests.post(f"{control}/orders/{order_id}/ship", json={}, timeout=5).json()
    assert shipped["OrderStatus"] == "Shipped" and shipped["NumberOfItemsShipped"] == 2
    state = requests.get(f"{control}/state", timeout=5).json()
    assert state["listings"]["SOCK"] == [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]
    assert requests.post(f"{control}/orders/nope/cancel", json={}, timeout=5).status_code == 400
