"""Going live on an existing Amazon seller account: its marketplace as the location and its listings from the
merchant listings report (Reports API 2021-06-30), against the SP-API fake over real HTTP on loopback.

Buckets and cached tokens live in this run's Redis and are wiped between tests (``clean_sync_redis``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from apps.channels.connectors.amazon import AmazonConnector
from apps.channels.connectors.base import ChannelRef, ConnectorError
from sandbox.fakes.amazon import AmazonFake

connector = AmazonConnector()


@pytest.fixture
def amazon() -> Iterator[Callable[..., AmazonFake]]:
    started: list[AmazonFake] = []

    def start(**kwargs: Any) -> AmazonFake:
        fake = AmazonFake(**{"report_processing_s": 0.3, **kwargs}).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def channel_for(fake: AmazonFake) -> ChannelRef:
    config = fake.channel_settings()
    return ChannelRef(id=7, code="amazon-us", settings=config["settings"], credentials=config["credentials"])


def test_the_marketplace_is_the_one_location(amazon: Callable[..., AmazonFake]) -> None:
    fake = amazon(marketplace_id="A1PA6795UKMFR9")

    (location,) = connector.locations(channel_for(fake))

    assert location.id == "A1PA6795UKMFR9" and "Amazon.de" in location.name
    assert fake.requests() == []  # nothing to ask Amazon for


@pytest.mark.parametrize("compression", ["GZIP", None])
def test_the_catalog_is_the_merchant_listings_report(
    amazon: Callable[..., AmazonFake], compression: str | None
) -> None:
    fake = amazon(report_compression=compression)
    seeded = fake.seed_listings(120, fba=10, inactive=5)
    seen: list[tuple[int, int | None]] = []

    catalog = connector.catalog(channel_for(fake), progress=lambda done, total: seen.append((done, total)))

    entries = {e.sku: e for e in catalog.entries}
    assert len(catalog.entries) == 120 and set(entries) == {s.sku for s in seeded}
    for listing in seeded:
        entry = entries[listing.sku]
        assert entry.external_id == listing.sku and entry.title == f"Item {listing.sku} \u2013 blue"
        if listing.fulfillment_channel == "DEFAULT":
            assert not entry.platform_managed and entry.quantities == {fake.marketplace_id: listing.quantity}
        else:  # fulfilled by Amazon: Amazon keeps that stock, never pushed
            assert entry.platform_managed and entry.quantities == {}
    assert sum(e.platform_managed for e in catalog.entries) == 10
    (created,) = fake.requests("createReport")
    assert created["status"] == 202
    assert created["body"] == {"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": ["ATVPDKIKX0DER"]}
    assert [r["status"] for r in fake.requests("getReportDocument")] == [200]
    assert len(fake.requests("document")) == 1
    # createReport, the polls, getReportDocument and the download: a handful of requests for the whole catalog.
    assert catalog.requests == 3 + len(fake.requests("getReport"))
    assert seen[0] == (0, None) and seen[-1] == (120, 120)


def test_a_fatal_report_is_a_clear_error(amazon: Callable[..., AmazonFake]) -> None:
    fake = amazon()
    fake.seed_listings(5)
    fake.fail_reports("FATAL")

    with pytest.raises(ConnectorError, match=r"could not make the listings report .*FATAL: The report could not be"):
        connector.catalog(channel_for(fake))

    assert fake.reports and next(iter(fake.reports.values())).status == "FATAL"


def test_a_seller_without_listings_gets_amazons_cancelled_report_explained(
    amazon: Callable[..., AmazonFake],
) -> None:
    fake = amazon()

    with pytest.raises(ConnectorError, match=r"cancelled the listings report.*no listings in marketplace"):
        connector.catalog(channel_for(fake))


def test_the_report_operations_keep_to_amazons_limits(amazon: Callable[..., AmazonFake]) -> None:
    # Amazon's createReport lets this seller make one report every two seconds, burst 1.
    fake = amazon(rates={"createReport": (0.5, 1)})
    fake.seed_listings(20, fba=2)
    channel = channel_for(fake)
    connector.catalog(channel)

    started = time.monotonic()
    catalog = connector.catalog(channel)  # at once: Amazon says 429, the connector waits its rate out

    assert len(catalog.entries) == 20 and time.monotonic() - started >= 2.0
    statuses = [r["status"] for r in fake.requests("createReport")]
    assert statuses == [202, 429, 202]  # one refusal, then it waited rather than asking again at once
    refused, accepted = fake.requests("createReport")[1:]
    assert accepted["at"] - refused["at"] >= 2.0


def test_the_default_budget_is_amazons_for_a_push(amazon: Callable[..., AmazonFake]) -> None:
    assert (connector.default_rate_per_s, connector.default_burst) == (5.0, 5)
    assert connector.webhook_topics == ()
    assert connector.webhooks_subscribe(channel_for(amazon()), "https://example.com/hook") == []


def test_a_standalone_fake_is_seeded_and_failed_over_http(amazon: Callable[..., AmazonFake]) -> None:
    fake = amazon()
    seeded = requests.post(f"{fake.url}/_control/seed", json={"count": 6, "fba": 2}, timeout=10)
    failed = requests.post(f"{fake.url}/_control/fail-reports", json={"outcome": "FATAL"}, timeout=10)

    assert seeded.status_code == 201 and failed.status_code == 200
    with pytest.raises(ConnectorError, match="FATAL"):
        connector.catalog(channel_for(fake))
    catalog = connector.catalog(channel_for(fake))  # the next report is made
    assert sorted((e.sku, e.platform_managed) for e in catalog.entries) == [
        ("SKU-00001", True),
        ("SKU-00002", True),
        *((f"SKU-{n:05d}", False) for n in range(3, 7)),
    ]
