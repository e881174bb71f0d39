"""The demo's storefront page: a sale in a store changes the webshop's page within a second (docs/stream.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.urls import clear_url_caches

from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import availability_cache
from apps.channels.stream.publish import open_channels
from apps.channels.tests.factories import channel_selling, listing
from apps.channels.tests.stream_client import AsgiServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def _clean_stream_keys() -> None:
    client = caches["default"].client.get_client(write=True)
    for pattern in ("stream:*", "demo:storefront-token:*"):
        for key in client.scan_iter(match=caches["default"].make_key(pattern)):
            client.delete(key)


@pytest.fixture
def server(settings) -> Iterator[AsgiServer]:
    settings.ROOT_URLCONF = "sandbox.urls"  # what make run serves (inventory_site/settings/local.py)
    clear_url_caches()
    availability_cache.state.reset()
    _clean_stream_keys()
    open_channels.forget()
    with AsgiServer() as running:
        yield running
    _clean_stream_keys()
    open_channels.forget()
    clear_url_caches()


def test_a_sale_in_a_store_changes_the_webshops_page_within_a_second(server, browser_page):
    store = LocationFactory(code="STORE1", allow_negative=True)
    hoodie, mug = ItemFactory(sku="HOOD"), ItemFactory(sku="MUG")
    stock(hoodie, store, 7)
    stock(mug, store, 40)
    shop = channel_selling("shop1", [store], push_url="")
    listing(shop, product_of("HOOD", {hoodie: 1}), "SHOP-HOOD")
    listing(shop, product_of("MUG", {mug: 1}), "SHOP-MUG")

    page = browser_page
    page.goto(f"{server.url}/demo/storefront/?channel=shop1")
    hood = page.locator('li[data-sku="SHOP-HOOD"]')
    page.wait_for_function("document.getElementById('live').textContent === 'live'")
    page.wait_for_function("document.querySelector('li[data-sku=\"SHOP-HOOD\"]').dataset.available === '7'")
    assert hood.locator(".hint").inner_text() == "In stock"
    assert page.locator('li[data-sku="SHOP-MUG"] .available').inner_text() == "40"

    sold_at = time.monotonic()
    stock_movement_record(
        location_code="STORE1", item_sku="HOOD", kind="pos_sale", quantity=3, idempotency_key="till-1", actor="till"
    )
    page.wait_for_function(
        "document.querySelector('li[data-sku=\"SHOP-HOOD\"]').dataset.available === '4'", timeout=1000
    )
    assert time.monotonic() - sold_at < 1.0
    assert hood.locator(".hint").inner_text() == "Only 4 left"
    assert page.locator('li[data-sku="SHOP-MUG"] .available').inner_text() == "40"

    stock_movement_record(
        location_code="STORE1", item_sku="HOOD", kind="pos_sale", quantity=4, idempotency_key="till-2", actor="till"
    )
    page.wait_for_function(
        "document.querySelector('li[data-sku=\"SHOP-HOOD\"]').dataset.available === '0'", timeout=1000
    )
    assert hood.locator(".hint").inner_text() == "Sold out"


def test_the_storefront_never_hands_the_browser_a_token(server, browser_page):
    store = LocationFactory(code="STORE1")
    shop = channel_selling("shop1", [store], push_url="")
    item = ItemFactory(sku="CAP")
    stock(item, store, 2)
    listing(shop, product_of("CAP", {item: 1}), "SHOP-CAP")
    seen: list[str] = []
    browser_page.on("request", lambda request: seen.append(str(request.all_headers().get("authorization"))))
    browser_page.goto(f"{server.url}/demo/storefront/?channel=shop1")
    browser_page.wait_for_function("document.querySelector('li[data-sku=\"SHOP-CAP\"]').dataset.available === '2'")
    assert browser_page.locator('li[data-sku="SHOP-CAP"] .hint').inner_text() == "Only 2 left"
    assert "Token" not in browser_page.content() and seen and all(value == "None" for value in seen)
