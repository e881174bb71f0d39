"""Going live through the API against each platform's fake (real HTTP on loopback): platform locations, link
by SKU, opening stock, the go-live preview, then the first push; the platform's quantities do not move before
the merchant confirms, and afterwards each equals what Stockroom pushes. And a large catalog read in the
background by a real Celery worker, its progress polled, the previews then answered without reading again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.catalog.models import StockLevel
from apps.catalog.tests.factories import stock
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.push import channel_push
from apps.channels.tests.conftest import wait_for
from apps.channels.tests.factories import Shop, shop

pytestmark = pytest.mark.django_db


def _walk(
    api: APIClient,
    code: str,
    body: dict[str, object],
    shown: Callable[[str], int | None],
    s: Shop,
    *,
    settle: Callable[[], None] = lambda: None,
) -> None:
    """Create the channel, link, take the platform's quantities as opening stock, receive more hoodies, preview,
    go live; then every linked listing shows Stockroom's quantity, and the first push changed exactly the
    hoodies, as the preview said."""
    created = api.post("/api/v1/channels/", {"code": code, "name": code, **body}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["state"] == "setup"
    locations = api.get(f"/api/v1/channels/{code}/platform-locations/")
    assert locations.status_code == 200 and locations.json()["results"], locations.content
    preview = api.post(f"/api/v1/channels/{code}/link/", {}, format="json").json()
    assert {row["sku"] for row in preview["matched"]} == {"HOOD-M", "CAP"}, preview
    assert api.post(f"/api/v1/channels/{code}/link/", {"apply": True}, format="json").json()["created"] == 2
    external = dict(Listing.objects.filter(channel__code=code).values_list("channel_sku", "external_id"))
    before = {sku: shown(ext) for sku, ext in external.items()}
    assert before == {"HOOD-M": 7, "CAP": 25}
    where = s.warehouse.code
    opening = api.post(f"/api/v1/channels/{code}/opening-stock/", {"location": where}, format="json")
    assert opening.status_code == 200, opening.content
    lines = {line["sku"]: line for line in opening.json()["results"]}
    assert {sku: line["platform_quantity"] for sku, line in lines.items()} == before
    assert {sku: line["on_hand"] for sku, line in lines.items()} == {"HOOD-M": 30, "CAP": 10}
    booked = api.post(f"/api/v1/channels/{code}/opening-stock/", {"location": where, "apply": True}, format="json")
    assert booked.status_code == 200 and booked.json()["booked"] == 2, booked.content
    on_hand = dict(StockLevel.objects.filter(location=s.warehouse).values_list("item__sku", "on_hand"))
    assert on_hand == before  # Stockroom's on hand is the platform's now
    stock(s.hoodie, s.warehouse, 10)  # three hoodies received since: the first push sends them
    answer = api.post(f"/api/v1/channels/{code}/go-live/", {}, format="json")
    assert answer.status_code == 409 and answer.json()["code"] == "go_live_needs_confirmation"
    first = {item["sku"]: (item["from"], item["to"]) for item in answer.json()["first_push"]["items"]}
    assert first == {"HOOD-M": (7, 10)}, first
    assert {sku: pair[0] for sku, pair in first.items()} == {sku: before[sku] for sku in first}
    settle()
    assert {sku: shown(ext) for sku, ext in external.items()} == before  # nothing moved before go-live
    confirmed = api.post(f"/api/v1/channels/{code}/go-live/", {"confirm": True}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5), next_attempt_at=timezone.now())
    channel = Channel.objects.get(code=code)
    channel_push(channel_id=channel.pk)
    truth = {
        a.channel_sku: a.available
        for a in listings_availability(list(channel.listings.values_list("pk", flat=True))).values()
    }
    assert {sku: to for sku, (_from, to) in first.items()} == {sku: truth[sku] for sku in first}
    deadline = time.monotonic() + 15
    while True:
        settle()
        now = {sku: shown(ext) for sku, ext in external.items()}
        if now == truth or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert now == truth


@pytest.fixture
def public_url(settings) -> None:
    settings.STOCKROOM_PUBLIC_URL = "http://127.0.0.1:9"


def test_a_shopify_store_goes_live_as_previewed(staff_api, public_url) -> None:
    from sandbox.fakes.shopify import ShopifyFake

    s = shop(hoodies=30, caps=10)
    fake = ShopifyFake(access_token="shpat_golive", webhook_secret="whsec-golive").start()
    try:
        fake.add_item("HOOD-M", 7)
        fake.add_item("CAP", 25)
        body = {
            "connector": "shopify",
            "settings": {"shop_url": fake.url, "location_id": fake.location_id},
            "credentials": {"access_token": "shpat_golive", "webhook_secret": "whsec-golive"},
            "locations": [s.warehouse.code],
        }
        _walk(staff_api, "web", body, lambda ext: fake.available(ext), s)
    finally:
        fake.stop()


@pytest.fixture
def woo() -> Iterator[object]:
    from sandbox.fakes.woocommerce import WooCommerceFake

    store = WooCommerceFake().start()
    yield store
    store.stop()


def test_a_woocommerce_store_goes_live_as_previewed(staff_api, public_url, woo) -> None:
    s = shop(hoodies=30, caps=10)
    woo.add_product(sku="HOOD-M", stock_quantity=7)  # type: ignore[attr-defined]
    woo.add_product(sku="CAP", stock_quantity=25)  # type: ignore[attr-defined]
    body = {
        "connector": "woocommerce",
        "settings": woo.channel_settings(),  # type: ignore[attr-defined]
        "credentials": woo.channel_credentials(),  # type: ignore[attr-defined]
        "locations": [s.warehouse.code],
    }
    _walk(staff_api, "woo", body, lambda ext: woo.quantity(int(ext.rsplit("/", 1)[-1])), s)  # type: ignore[attr-defined]


def test_an_amazon_seller_goes_live_as_previewed(staff_api, public_url) -> None:
    from sandbox.fakes.amazon import AmazonFake

    s = shop(hoodies=30, caps=10)
    fake = AmazonFake(settle_s=0.0).start()
    try:
        fake.add_listing("HOOD-M", 7, product_type="SWEATSHIRT")
        fake.add_listing("CAP", 25, product_type="HAT")
        config = fake.channel_settings()
        body = {
            "connector": "amazon",
            "settings": config["settings"],
            "credentials": config["credentials"],
            "locations": [s.warehouse.code],
        }
        _walk(staff_api, "amazon-us", body, lambda ext: fake.quantity(ext), s, settle=fake.process_feeds)
    finally:
        fake.stop()


@pytest.mark.worker
@pytest.mark.slow
def test_a_large_catalog_is_read_in_the_background_and_the_previews_reuse_it(
    staff_api, public_url, celery_worker
) -> None:
    """5,000 variants on the Shopify fake read by the real worker: the API answers 202 and the progress at
    once, the link preview waits (202) while the read is under way, then answers from it without a request to
    the shop; asking to read again reads again."""
    from sandbox.fakes.shopify import ShopifyFake
    from sandbox.fakes.shopify.seed import seed_catalog

    s = shop(hoodies=30, caps=10)
    fake = ShopifyFake(access_token="shpat_bg").start()
    try:
        seeded = seed_catalog(fake, 5000, locations=1)
        body = {
            "connector": "shopify",
            "settings": {"shop_url": fake.url, "location_id": fake.location_id},
            "credentials": {"access_token": "shpat_bg", "webhook_secret": "whsec-bg"},
            "locations": [s.warehouse.code],
        }
        api = staff_api
        assert api.post("/api/v1/channels/", {"code": "big", "name": "big", **body}, format="json").status_code == 201
        started = api.post("/api/v1/channels/big/catalog-read/", {}, format="json")
        assert started.status_code == 202 and started.json()["state"] == "queued", started.content
        waiting = api.post("/api/v1/channels/big/link/", {}, format="json")
        assert waiting.status_code == 202 and waiting.json()["code"] == "catalog_reading", waiting.content
        assert waiting.json()["catalog_read"]["id"] == started.json()["id"]
        again = api.post("/api/v1/channels/big/catalog-read/", {}, format="json").json()
        assert again["id"] == started.json()["id"]  # one read at a time per channel

        celery_worker(queues="default", concurrency=1)
        seen: list[tuple[str, int, int | None]] = []

        def finished() -> bool:
            now = api.get("/api/v1/channels/big/catalog-read/").json()
            seen.append((now["state"], now["done"], now["total"]))
            return now["state"] in ("done", "failed")

        wait_for(finished, timeout=120, every=0.2)
        read = api.get("/api/v1/channels/big/catalog-read/").json()
        assert (read["state"], read["done"], read["total"], read["errors"], read["fresh"]) == (
            "done", 5000, 5000, 0, True,
        ), read  # fmt: skip
        assert read["requests"] > 0
        assert any(state == "running" for state, *_ in seen) or len(seen) == 1

        asked = len(fake.requests)
        preview = api.post("/api/v1/channels/big/link/", {}, format="json")
        assert preview.status_code == 200, preview.content
        answer = preview.json()
        assert {row["sku"] for row in answer["platform_only"]} >= set(seeded.clean)  # Stockroom has none of them
        assert {p["code"] for p in answer["problems"]} >= {"duplicate_sku", "no_sku", "untracked"}
        assert len(fake.requests) == asked  # answered from the read: nothing asked of the shop

        fresh = api.post("/api/v1/channels/big/catalog-read/", {"again": True}, format="json").json()
        assert fresh["id"] != read["id"]
        wait_for(lambda: api.get("/api/v1/channels/big/catalog-read/").json()["state"] == "done", timeout=120)
    finally:
        fake.stop()
