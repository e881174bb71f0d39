"""The onboarding page of a channel, through Django's test client, against an in-test platform that lists its
locations and catalog and takes webhook subscriptions (the browser test walks the Shopify fake)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.catalog.models import Location, Movement, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import connectors
from apps.channels.connectors.base import (
    Catalog,
    CatalogEntry,
    ChannelRef,
    ConnectorError,
    PlatformLocation,
    WebhookSubscription,
)
from apps.channels.models import CatalogRead, Channel, Listing
from apps.channels.services.config import channel_create
from apps.channels.services.discover import catalog_read_run
from apps.channels.tests.scripted import Platform, ScriptedConnector
from apps.staff.roles import STORE_STAFF

pytestmark = pytest.mark.django_db

WAREHOUSE, STORE = "gid://shopify/Location/1", "gid://shopify/Location/2"


@dataclass
class Shop(Platform):
    locations: list[PlatformLocation] = field(default_factory=list)
    entries: list[CatalogEntry] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)


class Discovering(ScriptedConnector):
    """The scripted platform, plus the reads and the subscription going live needs."""

    webhook_topics = ("orders/create",)
    platform: Shop = Shop()

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        if self.platform.down:
            raise ConnectorError(self.platform.down)
        return list(self.platform.locations)

    def catalog(self, channel: ChannelRef, progress: object = None) -> Catalog:
        if self.platform.down:
            raise ConnectorError(self.platform.down)
        return Catalog(entries=list(self.platform.entries), requests=1)

    def webhooks_subscribe(self, channel: ChannelRef, address: str) -> list[WebhookSubscription]:
        if address not in self.platform.subscribed:
            self.platform.subscribed.append(address)
        return [WebhookSubscription(id="wh-1", topic="orders/create", address=address)]


def entry(sku: str, number: int, quantities: dict[str, int], **flags: bool) -> CatalogEntry:
    return CatalogEntry(
        sku=sku, external_id=f"gid://shopify/InventoryItem/{number}", title=sku, quantities=quantities, **flags
    )


@pytest.fixture
def shop(monkeypatch, settings) -> Shop:
    settings.STOCKROOM_PUBLIC_URL = "https://stockroom.example.com"
    platform = Shop(
        locations=[PlatformLocation(WAREHOUSE, "Warehouse"), PlatformLocation(STORE, "High street")],
        entries=[
            entry("HOOD-M", 1, {WAREHOUSE: 7, STORE: 2}),
            entry("CAP", 2, {WAREHOUSE: 25, STORE: 4}),
            entry("BEANIE", 3, {WAREHOUSE: 9}),  # Stockroom has no such product
            entry("SOCK", 4, {WAREHOUSE: 3, STORE: 1}),
            entry("SOCK", 5, {WAREHOUSE: 1, STORE: 1}),  # two variants, one SKU
            entry("GIFT", 6, {WAREHOUSE: 0}, tracked=False),
        ],
    )
    monkeypatch.setattr(Discovering, "platform", platform)
    monkeypatch.setitem(connectors.CONNECTORS, "shopify", f"{__name__}.Discovering")
    connectors.connector_named.cache_clear()
    yield platform
    connectors.connector_named.cache_clear()


@pytest.fixture
def channel(shop) -> Channel:
    warehouse = LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE)
    LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 5)
    product_of("HOOD-M", {hood: 1})
    product_of("CAP", {cap: 1})
    return channel_create(
        fields={
            "code": "shop", "name": "Shop", "connector": "shopify",
            "settings": {"shop_url": "https://hoodies.example.com", "location_id": WAREHOUSE},
            "credentials": {"access_token": "shpat_x"},
        }
    )  # fmt: skip


def url_of(channel: Channel) -> str:
    return f"/admin/channels/channel/{channel.pk}/onboarding/"


def step(client, channel: Channel, name: str, **data: object):
    return client.post(url_of(channel), {"step": name, **data}, follow=True).content.decode()


def worker_reads(channel: Channel) -> CatalogRead:
    """The worker's part of a catalog read, done here (the scripted platform lives in this process; the
    worker tests run the real worker against the fakes)."""
    read = CatalogRead.objects.filter(channel=channel).order_by("-created_at", "-id").first()
    assert read is not None and read.state == CatalogRead.State.QUEUED
    done = catalog_read_run(read_id=read.pk)
    assert done is not None
    return done


def read_catalog(client, channel: Channel) -> str:
    step(client, channel, "catalog_read")
    worker_reads(channel)
    return client.get(url_of(channel)).content.decode()


def test_a_merchant_walks_the_onboarding_page_from_connect_to_live(admin_client, channel, shop):
    listed = admin_client.get("/admin/channels/channel/").content.decode()
    assert f'href="{url_of(channel)}"' in listed and "Set up and go live" in listed
    change = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    assert "This channel is being set up" in change and url_of(channel) in change

    page = admin_client.get(url_of(channel)).content.decode()
    assert 'data-state="setup"' in page
    assert f'value="{STORE}"' in page and "High street" in page  # the platform's locations, offered in a list
    assert 'data-code="no_locations"' in page and 'data-code="no_linked_listings"' in page
    assert "Nothing is sent to the platform until you go live" in page

    # 1. Connect.
    assert "Test connection: Connected to https://hoodies.example.com" in step(admin_client, channel, "test")

    # 2. Locations: the platform's store, sold from Stockroom's warehouse.
    warehouse = Location.objects.get(code="W1")
    page = step(admin_client, channel, "locations", platform_location=STORE, locations=[warehouse.pk])
    assert f"Saved: quantities are set at platform location {STORE}, from what is available at W1." in page
    channel.refresh_from_db()
    assert channel.settings["location_id"] == STORE
    assert list(channel.channel_locations.values_list("location__code", flat=True)) == ["W1"]
    assert 'data-code="no_locations"' not in page

    # 3. Link: the catalog is read in the background first (the request reads nothing), then the preview,
    # filtered, then applied.
    page = step(admin_client, channel, "link_preview")
    assert "Reading the platform&#x27;s catalog in the background first" in page
    assert 'id="catalog" data-url=' in page and 'data-state="queued"' in page
    assert admin_client.get(f"{url_of(channel)}catalog-read/").json()["read"]["state"] == "queued"
    worker_reads(channel)
    progress = admin_client.get(f"{url_of(channel)}catalog-read/").json()["read"]
    assert (progress["state"], progress["done"], progress["total"], progress["requests"]) == ("done", 6, 6, 1)
    assert (
        'Read: <span id="catalog-done">6</span> variants in 1 requests'
        in admin_client.get(url_of(channel)).content.decode()
    )
    page = step(admin_client, channel, "link_preview")
    assert "Preview: 2 matched, 0 only on the platform, 4 problems; applying creates 2 listings." in page
    assert not Listing.objects.filter(channel=channel).exists()  # a preview links nothing
    untracked = admin_client.get(url_of(channel), {"show": "problems", "code": "untracked"}).content.decode()
    assert 'data-sku="GIFT"' in untracked and 'data-sku="HOOD-M"' not in untracked
    matched = admin_client.get(url_of(channel), {"show": "matched"}).content.decode()
    assert 'data-sku="HOOD-M"' in matched and 'data-sku="SOCK"' not in matched
    assert 'data-sku="BEANIE"' not in matched  # not stocked at the chosen platform location
    page = step(admin_client, channel, "link_apply")
    assert "Linked: 2 listings created" in page
    assert sorted(Listing.objects.filter(channel=channel).values_list("channel_sku", "external_id")) == [
        ("CAP", "gid://shopify/InventoryItem/2"),
        ("HOOD-M", "gid://shopify/InventoryItem/1"),
    ]

    # 4. Opening stock at the store (a location with no stock yet).
    page = step(admin_client, channel, "opening_preview", platform_location=STORE, location="S1")
    assert "Preview: 2 items, 2 differ from Stockroom&#x27;s on hand." in page
    page = step(admin_client, channel, "opening_apply", platform_location=STORE, location="S1")
    assert "Opening stock at S1: 2 count movements booked." in page
    assert sorted(StockLevel.objects.filter(location__code="S1").values_list("item__sku", "on_hand")) == [
        ("CAP", 4),
        ("HOOD-M", 2),
    ]
    assert Movement.objects.filter(reference="opening:shop").count() == 2

    # 5. Go live: the preview of the first push, nothing sent, then confirmed.
    page = step(admin_client, channel, "golive_preview")
    assert "Going live sends 2 listings: 2 change on the platform, 0 of them to 0." in page
    assert 'id="golive-confirm"' in page and 'id="first-push"' in page
    assert shop.pushes == [] and shop.subscribed == []
    channel.refresh_from_db()
    assert channel.state == Channel.State.SETUP
    page = step(admin_client, channel, "golive_confirm")
    assert "Shop is live: 2 listings queued for the first push, 1 order webhooks subscribed." in page
    channel.refresh_from_db()
    assert channel.state == Channel.State.LIVE
    assert shop.subscribed == ["https://stockroom.example.com/api/v1/channels/shop/webhooks/shopify/"]
    assert 'data-topic="orders/create"' in page and ">active<" in page

    # Pause and resume, on the same page.
    assert "Shop is paused" in step(admin_client, channel, "pause")
    channel.refresh_from_db()
    assert channel.state == Channel.State.PAUSED
    assert "Shop is live again" in step(admin_client, channel, "resume")
    listed = admin_client.get("/admin/channels/channel/").content.decode()
    assert "Set up and go live" not in listed and f'href="{url_of(channel)}"' in listed


def test_a_mapping_sheet_and_created_products_link_what_skus_alone_do_not(admin_client, channel, shop):
    warehouse = Location.objects.get(code="W1")
    step(admin_client, channel, "locations", platform_location=WAREHOUSE, locations=[warehouse.pk])
    read_catalog(admin_client, channel)
    sheet = SimpleUploadedFile("mapping.csv", b"platform_sku,product\nBEANIE,CAP\n", content_type="text/csv")
    page = admin_client.post(url_of(channel), {"step": "link_preview", "mapping": sheet}, follow=True).content.decode()
    assert "with a mapping sheet of 1 rows" in page and "applying creates 3 listings" in page
    step(admin_client, channel, "link_apply")
    assert Listing.objects.get(channel=channel, channel_sku="BEANIE").product.code == "CAP"
    page = step(admin_client, channel, "link_preview", create_missing="on")
    assert 'name="create_missing" id="id_create_missing" checked' in page  # apply links what was previewed
    bad = SimpleUploadedFile("mapping.csv", b"platform_sku,product\nGIFT,NOPE\n", content_type="text/csv")
    page = admin_client.post(url_of(channel), {"step": "link_preview", "mapping": bad}, follow=True).content.decode()
    assert "The mapping sheet names products that do not exist: NOPE." in page


def test_a_platform_that_fails_is_a_short_message_not_an_error_page(admin_client, channel, shop):
    shop.down = "503 Service Unavailable: the shop is under maintenance"
    page = admin_client.get(url_of(channel))
    assert page.status_code == 200
    assert "The platform's locations could not be read: Scripted platform: 503 Service Unavailable" in (
        page.content.decode()
    )
    step(admin_client, channel, "link_preview")
    failed = worker_reads(channel)
    assert (failed.state, failed.errors) == (CatalogRead.State.FAILED, 1)
    page = admin_client.get(url_of(channel)).content.decode()
    assert "The read failed: Scripted platform: 503 Service Unavailable: the shop is under maintenance" in page
    page = step(admin_client, channel, "golive_confirm")
    assert "Not yet:" in page and "sells from no location" in page
    channel.refresh_from_db()
    assert channel.state == Channel.State.SETUP


def test_only_staff_who_may_change_the_channel_see_the_page(client, django_user_model, channel):
    clerk = django_user_model.objects.create_user(username="clerk", password="pw-clerk-1", is_staff=True)
    clerk.groups.add(Group.objects.get(name=STORE_STAFF))
    client.force_login(clerk)
    assert client.get(url_of(channel)).status_code == 403
    assert client.post(url_of(channel), {"step": "golive_confirm"}).status_code == 403
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_channel"))
    client.force_login(viewer)
    assert client.get(url_of(channel)).status_code == 403
    listed = client.get("/admin/channels/channel/").content.decode()
    assert "Setting up (nothing pushed)" in listed and url_of(channel) not in listed  # no link to a 403
    assert url_of(channel) not in client.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    channel.refresh_from_db()
    assert channel.state == Channel.State.SETUP


def test_opening_stock_needs_the_permission_to_book_movements(client, django_user_model, channel):
    manager = django_user_model.objects.create_user(username="manager", password="pw-manager-1", is_staff=True)
    manager.user_permissions.add(*Permission.objects.filter(codename__in=["view_channel", "change_channel"]))
    client.force_login(manager)
    read_catalog(client, channel)
    page = client.post(
        url_of(channel), {"step": "opening_preview", "platform_location": STORE, "location": "W1"}, follow=True
    ).content.decode()
    assert 'id="opening-apply"' not in page
    denied = client.post(url_of(channel), {"step": "opening_apply", "platform_location": STORE, "location": "W1"})
    assert denied.status_code == 403
    assert not Movement.objects.filter(reference="opening:shop").exists()


def test_a_catalog_read_is_reused_while_fresh_and_read_again_on_request(admin_client, channel, shop):
    warehouse = Location.objects.get(code="W1")
    step(admin_client, channel, "locations", platform_location=WAREHOUSE, locations=[warehouse.pk])
    read_catalog(admin_client, channel)
    shop.entries.append(entry("SCARF", 7, {WAREHOUSE: 2}))  # new on the platform since the read
    page = step(admin_client, channel, "link_preview")
    assert "Preview: 2 matched, 1 only on the platform, 3 problems" in page  # the read of before: no SCARF
    page = step(admin_client, channel, "catalog_read")
    assert "Reading the platform&#x27;s catalog in the background" in page and 'value="catalog_read"' in page
    worker_reads(channel)
    page = step(admin_client, channel, "link_preview")
    assert "Preview: 2 matched, 2 only on the platform, 3 problems" in page
    assert CatalogRead.objects.filter(channel=channel).count() == 2


def test_a_live_shopify_channel_without_a_platform_location_pushes_nothing_and_says_why(admin_client, channel, shop):
    from apps.channels.models import SyncWork
    from apps.channels.services.push import channel_push

    warehouse = Location.objects.get(code="W1")
    step(admin_client, channel, "locations", platform_location=WAREHOUSE, locations=[warehouse.pk])
    read_catalog(admin_client, channel)
    step(admin_client, channel, "link_apply")
    assert "is live" in step(admin_client, channel, "golive_confirm")
    Channel.objects.filter(pk=channel.pk).update(settings={"shop_url": "https://hoodies.example.com"})
    SyncWork.objects.filter(channel=channel).update(next_attempt_at="2000-01-01T00:00:00Z")
    channel_push(channel_id=channel.pk)
    assert shop.pushes == []
    reason = "No platform location is chosen (location_id): nothing is pushed"
    assert reason in admin_client.get("/admin/channels/channel/").content.decode()
    assert reason in admin_client.get(url_of(channel)).content.decode()
    step(admin_client, channel, "locations", platform_location=WAREHOUSE, locations=[warehouse.pk])
    # Due now, whatever the tier's coalescing window (the settings change queued it at tier 2 or 3).
    SyncWork.objects.filter(channel=channel).update(
        next_attempt_at="2000-01-01T00:00:00Z", enqueued_at="2000-01-01T00:00:00Z"
    )
    channel_push(channel_id=channel.pk)
    assert shop.pushes  # the location chosen again: the queued work goes out
    assert reason not in admin_client.get("/admin/channels/channel/").content.decode()
