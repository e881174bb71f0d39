"""Going live on an existing shop: the channel's state, connector rate defaults, platform locations, link by
SKU, opening stock, pause/resume and go-live, through the services and the staff API.

The platform is the in-memory ``shelf`` connector (``shelf.py``): its quantities only change when Stockroom
pushes, so "the platform's quantities do not change before go-live" is checked on what it shows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from structlog.testing import capture_logs

from apps.catalog.models import Item, Movement, Product, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import limits
from apps.channels.models import Channel, ChannelWebhook, Listing, SyncWork
from apps.channels.services.config import channel_create
from apps.channels.services.push import channel_push
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_sweep
from apps.channels.tests.factories import ChannelFactory, shop
from apps.channels.tests.shelf import BACK, MAIN, ShelfConnector
from apps.core.services import token_create

pytestmark = pytest.mark.django_db

SETTINGS = {"shop_url": "https://shop.example.com", "location_id": MAIN}
CREDENTIALS = {"access_token": "tok", "webhook_secret": "whsec-shelf"}
PUBLIC = "https://stock.example.com"


@pytest.fixture
def world(shelf, settings):
    """A shop (30 hoodies, 10 caps in WH) and a new shelf channel selling from WH, nothing linked yet.

    The platform sells HOOD-M (7 at MAIN), CAP (25) and BEANIE (9), which Stockroom does not know.
    """
    settings.STOCKROOM_PUBLIC_URL = PUBLIC
    platform = shelf()
    s = shop(hoodies=30, caps=10)
    channel = channel_create(
        fields={"code": "shelf", "name": "Shelf shop", "connector": "shelf", "settings": SETTINGS,
                "credentials": CREDENTIALS},
        location_ids=[s.warehouse.pk],
    )  # fmt: skip
    platform.add("HOOD-M", "v1", 7)
    platform.add("CAP", "v2", 25)
    platform.add("BEANIE", "v3", 9, title="Beanie, grey")
    return platform, channel, s


def staff_client(django_user_model, *perms: str) -> APIClient:
    """A staff user's token client holding only these permissions ("app.codename")."""
    user = django_user_model.objects.create_user(f"clerk{len(perms)}", password="x", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(staff_username=user.username)}")
    return client


def shown(platform: ShelfConnector) -> dict[str, int]:
    return dict(platform.platform.shown)


def due_now() -> None:
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5), next_attempt_at=timezone.now())


def link(api: APIClient, **body: object):
    return api.post("/api/v1/channels/shelf/link/", body, format="json")


# --- State -----------------------------------------------------------------------------------------


def test_a_new_platform_channel_starts_in_setup_and_a_push_protocol_channel_live(staff_api):
    created = staff_api.post(
        "/api/v1/channels/",
        {"code": "shop", "name": "Shop", "connector": "shopify",
         "settings": {"shop_url": "https://x.myshopify.com", "location_id": "gid://shopify/Location/1"},
         "credentials": {"access_token": "shpat_x", "webhook_secret": "whsec"}},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    assert created.json()["state"] == "setup"
    push = staff_api.post(
        "/api/v1/channels/", {"code": "web", "name": "Web", "push_url": "http://127.0.0.1:9/"}, format="json"
    )
    assert push.status_code == 201 and push.json()["state"] == "live"
    # The state is read-only in the generic PATCH: only go-live, pause and resume change it.
    patched = staff_api.patch("/api/v1/channels/shop/", {"state": "live"}, format="json")
    assert patched.status_code == 200 and patched.json()["state"] == "setup"


@pytest.mark.parametrize("state", ["setup", "paused"])
def test_no_quantity_reaches_the_platform_by_any_push_path_while_not_live(world, staff_api, state):
    platform, channel, s = world
    Channel.objects.filter(pk=channel.pk).update(state=state)
    listings = [
        Listing.objects.create(channel=channel, product=s.single, channel_sku="HOOD-M", external_id="v1"),
        Listing.objects.create(channel=channel, product=s.cap_only, channel_sku="CAP", external_id="v2"),
    ]
    before = shown(platform)
    # Sync now (API), a stock change, and the pusher itself.
    assert staff_api.post("/api/v1/channels/shelf/sync/").status_code == 202
    stock(s.hoodie, s.warehouse, 5)
    due_now()
    report = channel_push(channel_id=channel.pk)
    assert report.requests == 0 and platform.platform.pushes == []
    # The sweep does not even kick it; reconciliation reads nothing back and repairs nothing.
    assert channel.pk not in sync_sweep()
    assert channel_reconcile(channel_id=channel.pk).checked == 0
    assert shown(platform) == before
    # Nothing is lost: the work stays queued for when it is live.
    assert set(SyncWork.objects.values_list("listing_id", flat=True)) == {lst.pk for lst in listings}


def test_orders_still_come_in_while_in_setup(world, client):
    from apps.channels.tests.scripted import DELIVERY_HEADER, SIGNATURE_HEADER, sign
    from apps.orders.models import Order

    platform, channel, s = world
    Listing.objects.create(channel=channel, product=s.single, channel_sku="HOOD-M", external_id="v1")
    import json

    raw = json.dumps(
        {"topic": "orders/create", "orders": [{"id": "9001", "status": "open", "lines": [{"sku": "HOOD-M",
                                                                                        "quantity": 2}]}]}
    ).encode()  # fmt: skip
    response = client.post(
        "/api/v1/channels/shelf/webhooks/shelf/",
        raw,
        content_type="application/json",
        headers={SIGNATURE_HEADER: sign(raw, CREDENTIALS["webhook_secret"]), DELIVERY_HEADER: "d-1"},
    )
    assert response.status_code == 200, response.content
    order = Order.objects.get(channel=channel, external_id="9001")
    assert order.lines.get().quantity == 2
    assert StockLevel.objects.get(item=s.hoodie, location=s.warehouse).reserved == 2
    assert platform.platform.pushes == []  # the order moved stock; still nothing pushed in setup


def test_the_order_poll_imports_in_setup(world):
    from apps.channels.connectors.base import OrderLine, OrdersPage, PlatformOrder
    from apps.orders.models import Order
    from apps.orders.services.intake import platform_orders_poll

    platform, channel, s = world
    Listing.objects.create(channel=channel, product=s.cap_only, channel_sku="CAP", external_id="v2")
    platform.platform.pages = [
        OrdersPage(
            orders=[PlatformOrder("7001", PlatformOrder.Status.OPEN, (OrderLine("CAP", 1),))],
            complete_until=timezone.now(),
        )
    ]
    report = platform_orders_poll(channel_id=channel.pk)
    assert report.orders == 1 and Order.objects.filter(channel=channel, external_id="7001").exists()
    assert platform.platform.pushes == []


def test_pause_and_resume_are_operations_buttons_with_the_change_permission(world, staff_api, django_user_model):
    platform, channel, s = world
    Channel.objects.filter(pk=channel.pk).update(state="live")
    Listing.objects.create(channel=channel, product=s.single, channel_sku="HOOD-M", external_id="v1")
    viewer = staff_client(django_user_model, "channels.view_channel")
    assert viewer.post("/api/v1/channels/shelf/pause/").status_code == 403
    with capture_logs() as logs:
        paused = staff_api.post("/api/v1/channels/shelf/pause/")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    [line] = [e for e in logs if e["event"] == "channel_state_changed"]
    assert line["state"] == "paused" and line["by"].startswith("staff:")
    stock(s.hoodie, s.warehouse, 3)
    due_now()
    assert channel_push(channel_id=channel.pk).requests == 0 and platform.platform.pushes == []
    resumed = staff_api.post("/api/v1/channels/shelf/resume/")
    assert resumed.status_code == 200 and resumed.json()["state"] == "live"
    due_now()
    channel_push(channel_id=channel.pk)
    assert shown(platform)["v1"] == 3  # the change made while paused reaches the platform after resume


def test_resume_refuses_a_channel_that_never_went_live(world, staff_api):
    response = staff_api.post("/api/v1/channels/shelf/resume/")
    assert response.status_code == 409 and response.json()["code"] == "channel_state_refused"
    assert "go-live" in response.json()["detail"]


def test_the_migration_sets_existing_channels_live(transactional_db):
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("channels", "0007_listing_platform_sold_units")]
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    old_apps.get_model("channels", "Channel").objects.create(code="old", name="Old", connector="shopify")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert Channel.objects.get(code="old").state == "live"


# --- Rate defaults -----------------------------------------------------------------------------------


def test_a_channel_without_a_rate_uses_its_connectors_defaults(world, staff_api):
    _platform, channel, _s = world
    assert channel.rate_per_s is None and channel.burst is None
    assert channel.rate_limit == (2.5, 40)
    bucket = limits.channel_bucket(channel)
    margin = bucket.rate / 2.5
    assert bucket.burst == max(1, int(40 * margin))
    body = staff_api.get("/api/v1/channels/shelf/").json()
    assert body["rate_per_s"] is None and body["rate_limit"] == {"rate_per_s": 2.5, "burst": 40}
    set_own = staff_api.patch("/api/v1/channels/shelf/", {"rate_per_s": 9, "burst": 3}, format="json")
    assert set_own.json()["rate_limit"] == {"rate_per_s": 9.0, "burst": 3}
    cleared = staff_api.patch("/api/v1/channels/shelf/", {"rate_per_s": None, "burst": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["rate_limit"] == {"rate_per_s": 2.5, "burst": 40}
    # A push-protocol channel needs no rate either.
    created = staff_api.post(
        "/api/v1/channels/", {"code": "web", "name": "Web", "push_url": "http://127.0.0.1:9/"}, format="json"
    )
    assert created.status_code == 201 and created.json()["rate_limit"] == {"rate_per_s": 5.0, "burst": 10}


# --- Platform locations ------------------------------------------------------------------------------


def test_platform_locations_lists_the_platforms_locations(world, staff_api):
    response = staff_api.get("/api/v1/channels/shelf/platform-locations/")
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {"id": MAIN, "name": "Main warehouse", "active": True},
            {"id": BACK, "name": "Back room", "active": False},
        ]
    }


def test_a_platform_that_cannot_be_read_is_a_short_502_not_a_500(world, staff_api):
    platform, _channel, _s = world
    platform.shelf.down = "HTTP 503 " + "x" * 5000
    response = staff_api.get("/api/v1/channels/shelf/platform-locations/")
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "platform_unavailable" and len(body["detail"]) < 300 and "HTTP 503" in body["detail"]


def test_a_connector_without_locations_is_a_400(staff_api):
    ChannelFactory(code="web")
    response = staff_api.get("/api/v1/channels/web/platform-locations/")
    assert response.status_code == 400 and response.json()["code"] == "platform_read_unsupported"


# --- Link by SKU ---------------------------------------------------------------------------------------


def test_link_previews_then_applies_idempotently(world, staff_api):
    platform, _channel, _s = world
    preview = link(staff_api)
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["matched"] == [
        {"sku": "HOOD-M", "external_id": "v1", "product": "HOOD-M", "platform_quantity": 7, "stockroom_quantity": 30},
        {"sku": "CAP", "external_id": "v2", "product": "CAP", "platform_quantity": 25, "stockroom_quantity": 10},
    ]
    assert body["platform_only"] == [{"sku": "BEANIE", "external_id": "v3", "title": "Beanie, grey"}]
    assert sorted(r["product"] for r in body["stockroom_only"]) == ["HOOD-3PACK", "KIT"]
    assert body["problems"] == [] and body["created"] == 2
    assert not Listing.objects.exists()  # a preview changes nothing
    applied = link(staff_api, apply=True).json()
    assert applied["created"] == 2 and applied["matched"] == body["matched"]
    assert dict(Listing.objects.values_list("channel_sku", "external_id")) == {"HOOD-M": "v1", "CAP": "v2"}
    again = link(staff_api, apply=True).json()
    assert again["created"] == 0 and again["matched"] == body["matched"] and again["problems"] == []
    assert Listing.objects.count() == 2
    assert shown(platform) == {"v1": 7, "v2": 25, "v3": 9}  # linking pushes nothing


def test_an_item_sku_with_one_standard_product_matches_that_product(world, staff_api):
    platform, _channel, _s = world
    sock = ItemFactory(sku="SOCK-1")
    product_of("SOCKS", {sock: 1})
    platform.add("SOCK-1", "v9", 4)
    matched = {r["sku"]: r["product"] for r in link(staff_api).json()["matched"]}
    assert matched["SOCK-1"] == "SOCKS"


def test_a_mapping_sheet_overrides_the_sku_match(world, staff_api):
    _platform, _channel, s = world
    sheet = "platform_sku,product\nCAP,KIT\nBEANIE,HOOD-3PACK\n"
    body = link(staff_api, mapping=sheet, apply=True).json()
    matched = {r["sku"]: r["product"] for r in body["matched"]}
    assert matched == {"HOOD-M": "HOOD-M", "CAP": "KIT", "BEANIE": "HOOD-3PACK"}
    assert Listing.objects.get(channel_sku="CAP").product == s.kit
    # As an uploaded file too; an unknown product is a 400 naming it.
    upload = SimpleUploadedFile("map.csv", b"HOOD-M,NOPE\n", content_type="text/csv")
    refused = staff_api.post("/api/v1/channels/shelf/link/", {"mapping": upload}, format="multipart")
    assert refused.status_code == 400 and "NOPE" in refused.json()["detail"]


def test_create_missing_makes_items_and_standard_products_from_the_platform(world, staff_api):
    body = link(staff_api, apply=True, create_missing=True).json()
    assert body["platform_only"] == [] and body["created"] == 3
    beanie = Item.objects.get(sku="BEANIE")
    assert beanie.name == "Beanie, grey" and beanie.unit == Item.Unit.PIECE
    product = Product.objects.get(code="BEANIE")
    assert product.kind == Product.Kind.STANDARD and list(product.components.values_list("item", "quantity")) == [
        (beanie.pk, 1)
    ]
    assert Listing.objects.get(external_id="v3").product == product


def test_each_problem_is_named_and_never_linked(world, staff_api):
    platform, channel, _s = world
    platform.add("", "v10", 3)
    platform.add("TWIN", "v11", 1)
    platform.add("TWIN", "v12", 1)
    platform.add("UNTRACKED", "v13", 1, tracked=False)
    platform.add("FBA", "v14", 1, platform_managed=True)
    platform.add("NOTHERE", "v15", None, elsewhere={BACK: 4})
    product_of("OTHER", {ItemFactory(sku="OTHER"): 1})
    Listing.objects.create(channel=channel, product=Product.objects.get(code="OTHER"), channel_sku="LINKED",
                           external_id="v16")  # fmt: skip
    platform.add("ELSEWHERE", "v16", 2)  # its platform id is linked under another SKU
    for sku in ("UNTRACKED", "FBA", "NOTHERE", "ELSEWHERE", "TWIN"):
        product_of(sku, {ItemFactory(sku=f"I-{sku}"): 1})
    body = link(staff_api, apply=True).json()
    problems = {(p["external_id"], p["code"]) for p in body["problems"]}
    assert problems == {
        ("v10", "no_sku"),
        ("v11", "duplicate_sku"),
        ("v12", "duplicate_sku"),
        ("v13", "untracked"),
        ("v14", "platform_managed"),
        ("v15", "not_stocked_at_location"),
        ("v16", "already_linked"),
    }
    assert all(p["detail"] for p in body["problems"])
    linked = set(Listing.objects.values_list("external_id", flat=True))
    assert linked == {"v1", "v2", "v16"}  # the two matches, and the listing that was there


def test_link_reads_and_writes_in_bulk_whatever_the_number_of_variants(world, staff_api):
    platform, _channel, _s = world

    def catalog(start: int, count: int) -> None:
        items = Item.objects.bulk_create([Item(sku=f"BULK-{n:05}", name=f"Bulk {n}") for n in range(start, count)])
        from apps.catalog.models import ProductComponent

        products = Product.objects.bulk_create([Product(code=item.sku, name=item.name) for item in items])
        ProductComponent.objects.bulk_create(
            [ProductComponent(product=p, item=i, quantity=1) for p, i in zip(products, items, strict=True)]
        )
        for n in range(start, count):
            platform.add(f"BULK-{n:05}", f"b{n}", n % 7)

    def queries(**body: object) -> int:
        with CaptureQueriesContext(connection) as seen:
            response = link(staff_api, **body)
        assert response.status_code == 200
        return len(seen.captured_queries)

    catalog(0, 30)
    link(staff_api, apply=True)  # some linked already, as on any later run
    catalog(30, 60)
    small_preview, small_apply = queries(), queries(apply=True)
    catalog(60, 360)
    large_preview, large_apply = queries(), queries(apply=True)
    assert Listing.objects.count() == 2 + 360
    assert large_preview == small_preview and large_apply == small_apply
    assert large_preview <= 20 and large_apply <= 30


# --- Opening stock -----------------------------------------------------------------------------------


def test_opening_stock_previews_then_books_counts_once(world, staff_api):
    _platform, _channel, _s = world
    link(staff_api, apply=True)
    store = LocationFactory(code="SHOP")  # nothing stocked here yet
    preview = staff_api.post(
        "/api/v1/channels/shelf/opening-stock/", {"platform_location": MAIN, "location": "SHOP"}, format="json"
    )
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert [
        (r["sku"], r["platform_quantity"], r["on_hand"], r["difference"], r["booked"]) for r in body["results"]
    ] == [
        ("CAP", 25, 0, 25, False),
        ("HOOD-M", 7, 0, 7, False),
    ]
    assert not StockLevel.objects.filter(location=store).exists()
    applied = staff_api.post(
        "/api/v1/channels/shelf/opening-stock/",
        {"platform_location": MAIN, "location": "SHOP", "apply": True},
        format="json",
    ).json()
    assert applied["applied"] and applied["booked"] == 2 and applied["already_booked"] == 0
    levels = dict(StockLevel.objects.filter(location=store).values_list("item__sku", "on_hand"))
    assert levels == {"HOOD-M": 7, "CAP": 25}
    movements = Movement.objects.filter(location=store)
    assert {m.kind for m in movements} == {"count"} and {m.reference for m in movements} == {"opening:shelf"}
    again = staff_api.post(  # no platform location given: the channel's own
        "/api/v1/channels/shelf/opening-stock/", {"location": "SHOP", "apply": True}, format="json"
    ).json()
    assert again["platform_location"] == MAIN
    assert again["booked"] == 0 and again["already_booked"] == 2 and all(r["booked"] for r in again["results"])
    assert Movement.objects.filter(location=store).count() == 2


def test_applying_opening_stock_needs_the_movement_permission(world, django_user_model):
    link_client = staff_client(django_user_model, "channels.change_channel")
    LocationFactory(code="SHOP")
    response = link_client.post(
        "/api/v1/channels/shelf/opening-stock/",
        {"platform_location": MAIN, "location": "SHOP", "apply": True},
        format="json",
    )
    assert response.status_code == 403


# --- Go live ----------------------------------------------------------------------------------------


def go_live(api: APIClient, **body: object):
    return api.post("/api/v1/channels/shelf/go-live/", body, format="json")


def test_go_live_refuses_with_its_reasons(world, staff_api):
    platform, channel, _s = world
    channel.channel_locations.all().delete()
    Channel.objects.filter(pk=channel.pk).update(settings={"shop_url": SETTINGS["shop_url"], "location_id": ""})
    response = go_live(staff_api, confirm=True)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "go_live_refused"
    assert [r["code"] for r in body["reasons"]] == ["no_locations", "no_platform_location", "no_linked_listings"]
    assert Channel.objects.get(pk=channel.pk).state == "setup" and platform.shelf.subscribe_calls == 0


def test_go_live_previews_the_first_push_and_pushes_exactly_that_once_confirmed(world, staff_api):
    platform, channel, _s = world
    link(staff_api, apply=True, create_missing=True)  # BEANIE: Stockroom has none yet, it would go to 0
    before = shown(platform)
    preview = go_live(staff_api)
    assert preview.status_code == 409
    body = preview.json()
    assert body["code"] == "go_live_needs_confirmation"
    first = body["first_push"]
    changes = {c["sku"]: (c["from"], c["to"]) for c in first["items"]}
    assert changes == {"HOOD-M": (7, 30), "CAP": (25, 10), "BEANIE": (9, 0)}
    assert first["listings"] == 3 and first["changes"] == 3 and first["to_zero"] == 1
    assert shown(platform) == before and Channel.objects.get(pk=channel.pk).state == "setup"
    confirmed = go_live(staff_api, confirm=True)
    assert confirmed.status_code == 200, confirmed.content
    answer = confirmed.json()
    assert answer["state"] == "live" and answer["queued"] == 3 and answer["first_push"] == first
    address = f"{PUBLIC}/api/v1/channels/shelf/webhooks/shelf/"
    assert {(w["topic"], w["address"], w["active"]) for w in answer["webhooks"]} == {
        ("orders/create", address, True),
        ("orders/updated", address, True),
    }
    assert set(ChannelWebhook.objects.values_list("topic", "address")) == {
        ("orders/create", address),
        ("orders/updated", address),
    }
    # The first push: every listing at tier 2, and what it sends is the preview.
    # (BEANIE going to 0 is as urgent as a sale: tier 1, as the engine promotes any listing reaching 0.)
    assert dict(SyncWork.objects.values_list("listing__channel_sku", "priority")) == {
        "HOOD-M": 2,
        "CAP": 2,
        "BEANIE": 1,
    }
    assert set(SyncWork.objects.values_list("repush", flat=True)) == {True}
    due_now()
    channel_push(channel_id=channel.pk)
    sent = {u.sku: u.available for push in platform.platform.pushes for u in push}
    assert sent == {sku: to for sku, (_from, to) in changes.items()}
    assert shown(platform) == {"v1": 30, "v2": 10, "v3": 0}


def test_going_live_again_reuses_the_webhook_subscriptions(world, staff_api):
    platform, channel, _s = world
    link(staff_api, apply=True)
    assert go_live(staff_api, confirm=True).status_code == 200
    assert go_live(staff_api, confirm=True).status_code == 200
    assert platform.shelf.subscribe_calls == 2 and len(platform.shelf.subscriptions) == 2
    assert ChannelWebhook.objects.filter(channel=channel, active=True).count() == 2


def test_a_sale_on_the_platform_between_preview_and_push_is_not_overwritten(world, staff_api):
    platform, channel, _s = world
    link(staff_api, apply=True)
    assert go_live(staff_api, confirm=True).status_code == 200
    platform.platform.shown["v1"] = 6  # a shopper bought one after the merchant confirmed
    due_now()
    channel_push(channel_id=channel.pk)
    assert Listing.objects.get(external_id="v1").last_pushed_qty == 6  # compared, not overwritten blindly
    assert SyncWork.objects.filter(listing__external_id="v1", repush=True).exists()


def test_the_admin_accepts_a_blank_rate_and_shows_the_state_read_only(admin_client):
    from apps.channels.tests.test_connector_admin import form_of

    channel = ChannelFactory(code="web", connector="stockroom")
    response = admin_client.post(
        f"/admin/channels/channel/{channel.pk}/change/", form_of(channel, rate_per_s="", burst="", state="paused")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    assert channel.rate_per_s is None and channel.burst is None and channel.rate_limit == (5.0, 10)
    assert channel.state == "live"  # not a form field: only go-live, pause and resume change it
    page = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    assert "Live" in page and 'name="state"' not in page


def test_a_platform_refusing_the_webhooks_leaves_the_channel_in_setup(world, staff_api, monkeypatch):
    from apps.channels.connectors.base import ConnectorError

    _platform, channel, _s = world
    link(staff_api, apply=True)

    def refused(self, channel, address):
        raise ConnectorError("HTTP 403 webhooks scope missing")

    monkeypatch.setattr(ShelfConnector, "webhooks_subscribe", refused)
    response = go_live(staff_api, confirm=True)
    assert response.status_code == 502 and response.json()["code"] == "platform_unavailable"
    assert "webhooks scope missing" in response.json()["detail"]
    assert Channel.objects.get(pk=channel.pk).state == "setup" and not SyncWork.objects.filter(repush=True).exists()


def test_a_connector_that_crashes_reading_its_catalog_is_a_502(world, staff_api, monkeypatch):
    def broken(self, channel, progress=None):
        raise KeyError("variants")

    monkeypatch.setattr(ShelfConnector, "catalog", broken)
    response = link(staff_api)
    assert response.status_code == 502 and "KeyError" in response.json()["detail"]


# --- The catalog read in the background -------------------------------------------------------------


def test_the_api_reads_the_catalog_in_the_background_and_the_previews_use_that_read(world, staff_api):
    from apps.channels.services.discover import catalog_read_run

    platform, _channel, _s = world
    assert staff_api.get("/api/v1/channels/shelf/catalog-read/").status_code == 404
    started = staff_api.post("/api/v1/channels/shelf/catalog-read/", {}, format="json")
    assert started.status_code == 202 and started.json()["state"] == "queued", started.content
    waiting = link(staff_api)
    assert waiting.status_code == 202 and waiting.json()["code"] == "catalog_reading"
    for call, body in (("opening-stock/", {"location": "WH"}), ("go-live/", {})):
        answer = staff_api.post(f"/api/v1/channels/shelf/{call}", body, format="json")
        assert answer.status_code == 202 and answer.json()["catalog_read"]["id"] == started.json()["id"], call
    catalog_read_run(read_id=started.json()["id"])  # the worker's part (the worker test runs the real one)
    read = staff_api.get("/api/v1/channels/shelf/catalog-read/").json()
    assert (read["state"], read["done"], read["total"], read["errors"], read["fresh"]) == ("done", 3, 3, 0, True)
    platform.add("SCARF", "v4", 2)  # new on the platform since: the fresh read does not have it
    reads = platform.shelf.catalog_reads
    assert {row["sku"] for row in link(staff_api).json()["platform_only"]} == {"BEANIE"}
    assert platform.shelf.catalog_reads == reads  # answered from the read: the platform was not asked
    again = staff_api.post("/api/v1/channels/shelf/catalog-read/", {"again": True}, format="json")
    assert again.status_code == 202 and again.json()["id"] != read["id"]
    catalog_read_run(read_id=again.json()["id"])
    assert {row["sku"] for row in link(staff_api).json()["platform_only"]} == {"BEANIE", "SCARF"}


def test_a_catalog_read_that_fails_says_why_and_a_lost_one_is_not_waited_for(world, staff_api):
    from apps.channels.models import CatalogRead
    from apps.channels.services.discover import catalog_read_run

    platform, _channel, _s = world
    platform.shelf.down = "503 Service Unavailable"
    read = staff_api.post("/api/v1/channels/shelf/catalog-read/", {}, format="json").json()
    catalog_read_run(read_id=read["id"])
    failed = staff_api.get("/api/v1/channels/shelf/catalog-read/").json()
    assert failed["state"] == "failed" and failed["errors"] == 1 and "503 Service Unavailable" in failed["error"]
    platform.shelf.down = None
    assert link(staff_api).status_code == 200  # no read under way, none fresh: read now, as before
    lost = staff_api.post("/api/v1/channels/shelf/catalog-read/", {}, format="json").json()
    assert link(staff_api).status_code == 202
    CatalogRead.objects.filter(pk=lost["id"]).update(created_at=timezone.now() - timedelta(hours=1))
    assert link(staff_api).status_code == 200  # a worker died with it: not waited for
    fresh = staff_api.post("/api/v1/channels/shelf/catalog-read/", {}, format="json").json()
    assert fresh["id"] != lost["id"] and CatalogRead.objects.get(pk=lost["id"]).state == "failed"


def test_a_mapping_sheet_with_a_nul_byte_is_a_clear_400_not_a_server_error(world, staff_api):
    upload = SimpleUploadedFile("map.csv", b"platform_sku,product\nHOOD-M\x00,KIT\n", content_type="text/csv")
    refused = staff_api.post("/api/v1/channels/shelf/link/", {"mapping": upload}, format="multipart")
    assert refused.status_code == 400 and "NUL" in refused.json()["detail"]
    assert not Listing.objects.filter(channel__code="shelf").exists()
