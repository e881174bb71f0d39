"""A merchant with an existing Shopify shop goes live in a real browser, against the Shopify fake on loopback.

The shop: 2,000 variants at two locations with live quantities (``seed_catalog``: 1,800 clean, 50 in each
problem class). Stockroom knows 1,780 of the clean SKUs as products; the rest are created from the shop's
catalog. The walk: the channel form (connect, test) -> the onboarding page: the platform location chosen
from the list, the Stockroom location it sells from -> link (preview filtered by problem, applied, missing
products created; the shop's catalog read once, in the background by a real worker, with a progress bar) ->
opening stock from the shop's quantities -> go live (preview, confirm) -> the first push.
The shop's quantities do not move until go-live; afterwards each linked quantity equals Stockroom's.
Screenshots: var/screenshots/onboarding_*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from apps.catalog.models import Item, Location, Product, StockLevel
from apps.catalog.services.catalog import ComponentSpec, items_create, products_create
from apps.catalog.tests.factories import LocationFactory, stock
from apps.channels.connectors import connector_named
from apps.channels.connectors.base import Connector
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.push import channel_push

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"
TOKEN = "shpat_onboarding"
KNOWN = 1780  # of the 1,800 clean SKUs, Stockroom has this many as products


def _discovers() -> bool:
    try:
        return type(connector_named("shopify")).catalog is not Connector.catalog
    except (LookupError, ImportError):
        return False


@pytest.fixture
def shop() -> Iterator[object]:
    if not _discovers():
        pytest.skip("the Shopify connector cannot read the shop's catalog yet (Shopify discovery)")
    from sandbox.fakes.shopify import ShopifyFake
    from sandbox.fakes.shopify.seed import seed_catalog

    fake = ShopifyFake(access_token=TOKEN).start()
    fake.seeded = seed_catalog(fake, 2000)  # type: ignore[attr-defined]
    yield fake
    fake.stop()


@pytest.fixture
def stockroom(transactional_db, django_user_model, shop, settings, live_server, stockroom_knobs):
    """The merchant's Stockroom before the shop is connected: its warehouse, most of the shop's products
    (some with stock already), and a few products the shop does not sell."""
    stockroom_knobs(SYNC_TIER2_DELAY_S="0")
    settings.STOCKROOM_PUBLIC_URL = live_server.url
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    warehouse = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    skus = [*sorted(shop.seeded.clean)[:KNOWN], "OWN-1", "OWN-2", "OWN-3"]
    items = items_create(rows=[{"sku": sku, "name": f"Item {sku}", "unit": Item.Unit.PIECE} for sku in skus])
    products_create(
        rows=[
            ({"code": item.sku, "name": item.name, "kind": Product.Kind.STANDARD}, [ComponentSpec(item, 1)])
            for item in items
        ]
    )
    for item in items[:5]:
        stock(item, warehouse, 3)  # counted before: the opening stock corrects it to the shop's figure
    return {"warehouse": warehouse}


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"onboarding_{name}.png"), full_page=True)


def _shot_of(page, selector: str, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(selector).screenshot(path=str(SHOTS / f"onboarding_{name}.png"))


def _message(page) -> str:
    page.wait_for_selector(".messagelist li")
    return page.locator(".messagelist").inner_text()


def _shop_quantities(shop, location: str) -> dict[str, int | None]:
    return {item: shop.available(item, location) for item in shop.seeded.quantities}


def test_a_merchant_links_2000_variants_and_goes_live_without_the_shop_moving_before(
    page, shop, stockroom, celery_worker
):
    celery_worker(queues="default", concurrency=1)  # reads the shop's catalog in the background
    seeded = shop.seeded
    main, store = seeded.locations
    before = {place: _shop_quantities(shop, place) for place in (main, store)}

    # Connect: the channel form, with the shop's address and token, "Save and test connection".
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", "merchant")
    page.fill("input[name=password]", "pw-merchant-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    page.goto("/admin/channels/channel/add/")
    page.fill("#id_code", "shopify")
    page.fill("#id_name", "Shopify shop")
    page.select_option("#id_connector", "shopify")
    page.fill("#id_settings__shopify__shop_url", shop.url)
    page.fill("#id_settings__shopify__location_id", main)
    page.fill("#id_credentials__shopify__access_token", TOKEN)
    page.fill("#id_credentials__shopify__webhook_secret", "whsec_onboarding")
    page.click("#test-connection")
    assert "Connected to" in page.locator(".messagelist .success").inner_text()
    channel = Channel.objects.get(code="shopify")
    assert channel.state == Channel.State.SETUP
    _shot(page, "1_connect")
    page.click("#onboarding-box a.onboarding-link")
    page.wait_for_url(f"**/channel/{channel.pk}/onboarding/")
    assert page.locator("#channel-state").get_attribute("data-state") == "setup"
    assert page.locator('#blockers li[data-code="no_linked_listings"]').is_visible()

    # Locations: the shop's second location, from the list; sold from Stockroom's warehouse.
    page.check(f'#locations-form input[name=platform_location][value="{store}"]')
    page.check(f'#locations-form input[name=locations][value="{stockroom["warehouse"].pk}"]')
    _shot(page, "2_locations")
    page.click("#save-locations")
    assert f"quantities are set at platform location {store}" in _message(page)
    channel.refresh_from_db()
    assert channel.settings["location_id"] == store

    # The shop's catalog is read in the background first: a progress bar, updated until it is read.
    page.click("#link-preview")
    assert "Reading the platform's catalog in the background first" in _message(page)
    assert page.locator("#catalog-progress").is_visible()
    _shot_of(page, "#catalog", "3_catalog_reading")
    page.wait_for_selector('#catalog[data-state="done"]', timeout=60_000)  # the page reloads once it is read
    assert "Read: 2000 variants in" in page.locator("#catalog-status").inner_text()
    assert page.locator("#catalog-progress").get_attribute("value") == "2000"

    # Link: the preview, filtered by problem and paged, then applied with the missing products created.
    page.click("#link-preview")
    preview = _message(page)
    assert f"Preview: {KNOWN} matched, 20 only on the platform, 200 problems" in preview, preview
    counts = {
        code: int(page.locator(f'#problem-filters a[data-code="{code}"] .n').inner_text())
        for code in ("duplicate_sku", "no_sku", "untracked", "not_stocked_at_location")
    }
    assert counts == {"duplicate_sku": 50, "no_sku": 50, "untracked": 50, "not_stocked_at_location": 50}
    assert page.locator('#link-filters a[data-kind="stockroom_only"] .n').inner_text() == "3"
    assert page.locator("#link-rows tbody tr").count() == 100  # a page of 2,003 rows
    page.click('#problem-filters a[data-code="untracked"]')
    page.wait_for_url("**code=untracked*")
    assert page.locator("#link-rows tbody tr").count() == 50
    assert page.locator('#link-rows tbody tr:not([data-code="untracked"])').count() == 0
    _shot(page, "3_link_preview")
    _shot_of(page, "#link", "3_link_preview_section")
    assert not Listing.objects.filter(channel=channel).exists()
    page.check("#link-form input[name=create_missing]")
    page.click("#link-preview")
    assert "applying creates 1800 listings" in _message(page)
    page.click("#link-apply")
    assert "Linked: 1800 listings created" in _message(page)
    assert Listing.objects.filter(channel=channel).count() == 1800
    assert Product.objects.filter(code__in=sorted(seeded.clean)[KNOWN:]).count() == 20

    # Opening stock: the shop's quantities at its second location become the warehouse's on hand.
    page.select_option("#opening-form select[name=platform_location]", store)
    page.select_option("#opening-form select[name=location]", "W1")
    page.click("#opening-preview")
    assert "Preview: 1800 items" in _message(page)
    _shot(page, "4_opening_stock")
    page.click("#opening-apply", timeout=60_000)  # 1800 levels booked in one request: seconds on a busy machine
    assert "Opening stock at W1:" in _message(page)
    # Since then the warehouse received more of three items: the first push will send them.
    raised = sorted(seeded.clean)[:3]
    levels = StockLevel.objects.filter(item__sku__in=raised, location=stockroom["warehouse"]).select_related("item")
    for level in levels:
        stock(level.item, level.location, level.on_hand + 2)

    # Nothing moved on the shop so far.
    assert {place: _shop_quantities(shop, place) for place in (main, store)} == before

    # Go live: the preview of the first push, then confirmed.
    page.click("#golive-preview")
    summary = _message(page)
    assert "Going live sends 1800 listings: 3 change on the platform, 0 of them to 0." in summary, summary
    assert sorted(page.locator("#first-push tbody tr").evaluate_all("rows => rows.map(r => r.dataset.sku)")) == raised
    _shot(page, "5_go_live_preview")
    _shot_of(page, "#golive", "5_go_live_preview_section")
    assert {place: _shop_quantities(shop, place) for place in (main, store)} == before
    page.click("#golive-confirm")
    assert "Shopify is live: 1800 listings queued for the first push" in _message(page)
    assert page.locator("#channel-state").get_attribute("data-state") == "live"
    assert page.locator("#webhooks tbody tr").count() >= 1
    _shot(page, "6_live")

    # The first push: every linked quantity at the chosen location equals Stockroom's.
    for _ in range(50):
        channel_push(channel_id=channel.pk)
        if not SyncWork.objects.filter(channel=channel, state=SyncWork.State.PENDING).exists():
            break
    listings = dict(Listing.objects.filter(channel=channel).values_list("pk", "external_id"))
    shown = listings_availability(list(listings))
    wrong = {
        external: (shop.available(external, store), shown[pk].available)
        for pk, external in listings.items()
        if shop.available(external, store) != shown[pk].available
    }
    assert wrong == {}
    changed = {item for item, qty in _shop_quantities(shop, store).items() if qty != before[store][item]}
    assert changed == {seeded.clean[sku] for sku in raised}  # exactly what the preview showed
    assert _shop_quantities(shop, main) == before[main]  # the other location is not Stockroom's
