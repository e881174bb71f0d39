"""Staff API for channels and listings, the watermark endpoint, the dashboard selector, admin and /metrics."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination

from apps.catalog.signals import Tier
from apps.channels import metrics, selectors
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import sync_lag_by_channel
from apps.channels.tests.factories import channel_selling, listing, shop
from apps.core.testing import error_fields

pytestmark = pytest.mark.django_db

CHANNEL = {
    "code": "shop1",
    "name": "Webshop",
    "kind": "webshop",
    "push_url": "https://shop.example.test/stock",
    "rate_per_s": 5,
    "burst": 10,
    "coefficient": "0.800",
    "buffer": 1,
    "locations": ["WH", "S1"],
    "batch_size": 200,
    "secret": "top-secret",
}


@pytest.fixture
def s():
    return shop()


def test_create_and_read_a_channel_by_code(staff_api, s):
    created = staff_api.post("/api/v1/channels/", CHANNEL, format="json")
    assert created.status_code == 201, created.json()
    body = staff_api.get("/api/v1/channels/shop1/").json()
    assert body["locations"] == ["WH", "S1"]  # in the order orders take from them
    assert body["coefficient"] == "0.800" and body["batch_size"] == 200 and body["has_secret"] is True
    assert "secret" not in body  # write-only
    assert Channel.objects.get(code="shop1").secret == "top-secret"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"locations": ["WH", "NOPE"]}, "locations"),
        ({"coefficient": "1.5"}, "coefficient"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"burst": 0}, "burst"),
        ({"code": "bad code!"}, "code"),
        ({"push_url": "not a url"}, "push_url"),
    ],
)
def test_bad_channel_input_is_400_with_field_errors_and_changes_nothing(staff_api, s, change, field):
    response = staff_api.post("/api/v1/channels/", {**CHANNEL, **change}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and field in error_fields(response.json())
    assert not Channel.objects.exists()


def test_settings_change_queues_every_listing_at_tier_three(staff_api, s):
    staff_api.post("/api/v1/channels/", CHANNEL, format="json")
    channel = Channel.objects.get(code="shop1")
    a, b = listing(channel, s.single), listing(channel, s.kit)
    response = staff_api.patch("/api/v1/channels/shop1/", {"buffer": 3, "locations": ["WH"]}, format="json")
    assert response.status_code == 200 and response.json()["locations"] == ["WH"]
    work = SyncWork.objects.filter(channel=channel)
    assert sorted(w.listing_id for w in work) == sorted([a.pk, b.pk])
    assert {w.priority for w in work} == {Tier.BACKGROUND}


def test_a_channel_code_cannot_change(staff_api, s):
    staff_api.post("/api/v1/channels/", CHANNEL, format="json")
    response = staff_api.patch("/api/v1/channels/shop1/", {"code": "shop2"}, format="json")
    assert response.status_code == 400 and "code" in error_fields(response.json())


def test_listing_crud_by_id(staff_api, s):
    staff_api.post("/api/v1/channels/", CHANNEL, format="json")
    created = staff_api.post(
        "/api/v1/listings/",
        {"channel": "shop1", "channel_sku": "SKU-1", "product": "KIT", "max_qty": 5, "end_when": 1},
        format="json",
    )
    assert created.status_code == 201, created.json()
    listing_id = created.json()["id"]
    assert SyncWork.objects.get().listing_id == listing_id  # a new listing is pushed (tier 3)
    got = staff_api.get(f"/api/v1/listings/{listing_id}/").json()
    assert got["channel"] == "shop1" and got["product"] == "KIT" and got["last_pushed_qty"] is None
    assert staff_api.patch(f"/api/v1/listings/{listing_id}/", {"coefficient": "0.5"}, format="json").status_code == 200
    assert Listing.objects.get(pk=listing_id).coefficient == pytest.approx(0.5)
    listed = staff_api.get("/api/v1/listings/?channel__code=shop1").json()
    assert listed["count"] == 1 and set(listed) >= {"count", "next", "previous", "results"}
    assert staff_api.delete(f"/api/v1/listings/{listing_id}/").status_code == 204
    assert not Listing.objects.exists()


def test_bad_listing_input_is_400(staff_api, s):
    staff_api.post("/api/v1/channels/", CHANNEL, format="json")
    ok = {"channel": "shop1", "channel_sku": "SKU-1", "product": "KIT"}
    staff_api.post("/api/v1/listings/", ok, format="json")
    for change, field in [
        ({"product": "NOPE"}, "product"),
        ({"channel": "nope"}, "channel"),
        ({"coefficient": "2"}, "coefficient"),
        ({"max_qty": -1}, "max_qty"),
    ]:
        response = staff_api.post("/api/v1/listings/", {**ok, **change}, format="json")
        assert response.status_code == 400 and field in error_fields(response.json()), (change, response.json())
    twice = staff_api.post("/api/v1/listings/", ok, format="json")  # the same channel_sku twice: a conflict
    assert twice.status_code == 409 and twice.json()["code"] == "already_exists"
    assert "non_field_errors" in error_fields(twice.json())
    assert Listing.objects.count() == 1


def test_channel_tokens_cannot_use_the_staff_endpoints(channel_api, s):
    channel_selling("market", [s.warehouse])
    client = channel_api("market")
    assert client.get("/api/v1/channels/").status_code == 403
    mine = listing(Channel.objects.get(code="market"), s.single)
    new = {"channel": "market", "channel_sku": "X", "product": "KIT"}
    assert client.post("/api/v1/listings/", new, format="json").status_code == 403
    assert client.patch(f"/api/v1/listings/{mine.pk}/", {"max_qty": 1}, format="json").status_code == 403
    assert client.delete(f"/api/v1/listings/{mine.pk}/").status_code == 403
    assert Listing.objects.get(pk=mine.pk).max_qty is None


def test_a_channel_lists_its_own_listings_with_their_quantities_page_by_page(channel_api, s, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    market = channel_selling("market", [s.warehouse], coefficient="0.5", buffer=0)
    other = channel_selling("other", [s.warehouse])
    single, kit, pack = listing(market, s.single, "m-1"), listing(market, s.kit, "m-2"), listing(market, s.pack, "m-3")
    theirs = listing(other, s.single, "o-1")
    client = channel_api("market")
    body = client.get("/api/v1/listings/").json()
    assert body["count"] == 3 and len(body["results"]) == 2
    rows = list(body["results"])
    while body["next"]:
        body = client.get(body["next"]).json()
        rows += body["results"]
    by_sku = {row["channel_sku"]: row for row in rows}
    assert set(by_sku) == {"m-1", "m-2", "m-3"}  # never another channel's
    # 30 hoodies, 10 caps in WH; the channel shows half: single 15, kit 5, 3-pack 5.
    assert (by_sku["m-1"]["available"], by_sku["m-2"]["available"], by_sku["m-3"]["available"]) == (15, 5, 5)
    assert by_sku["m-1"]["id"] == single.pk and {kit.pk, pack.pk} <= {row["id"] for row in rows}
    assert client.get(f"/api/v1/listings/{single.pk}/").json()["available"] == 15
    assert client.get(f"/api/v1/listings/{theirs.pk}/").status_code == 404
    assert client.get("/api/v1/listings/?channel=other").json()["count"] == 0


def test_a_channel_asks_for_what_changed_since_its_last_sync(channel_api, staff_api, s):
    market = channel_selling("market", [s.warehouse])
    old, changed = listing(market, s.single, "m-1"), listing(market, s.kit, "m-2")
    since = timezone.now() + timedelta(seconds=1)
    Listing.objects.filter(pk__in=[old.pk, changed.pk]).update(updated_at=since - timedelta(hours=1))
    client = channel_api("market")
    assert client.get("/api/v1/listings/", {"updated_since": since.isoformat()}).json()["count"] == 0
    assert staff_api.patch(f"/api/v1/listings/{changed.pk}/", {"max_qty": 2}, format="json").status_code == 200
    Listing.objects.filter(pk=old.pk).update(last_pushed_at=since + timedelta(minutes=1), last_pushed_qty=30)
    since_earlier = since - timedelta(minutes=5)
    got = client.get("/api/v1/listings/", {"updated_since": since_earlier.isoformat()}).json()
    assert sorted(row["channel_sku"] for row in got["results"]) == ["m-1", "m-2"]
    assert client.get("/api/v1/listings/", {"updated_since": "yesterday"}).status_code == 400


def test_staff_list_every_channel_or_one(staff_api, s):
    listing(channel_selling("market", [s.warehouse]), s.single, "m-1")
    listing(channel_selling("other", [s.warehouse]), s.single, "o-1")
    assert staff_api.get("/api/v1/listings/").json()["count"] == 2
    only = staff_api.get("/api/v1/listings/?channel=other").json()
    assert [row["channel_sku"] for row in only["results"]] == ["o-1"] and only["results"][0]["available"] == 30


def test_the_channel_moves_its_own_order_watermark(channel_api, s):
    channel_selling("market", [s.warehouse])
    channel_selling("other", [s.warehouse])
    client = channel_api("market")
    now = timezone.now()
    response = client.post(
        "/api/v1/channels/market/watermark/", {"orders_pending_until": now.isoformat()}, format="json"
    )
    assert response.status_code == 200 and response.json()["orders_pending"] is True
    assert client.post("/api/v1/channels/other/watermark/", {"orders_pending_until": now.isoformat()},
                       format="json").status_code == 403  # fmt: skip
    assert client.post("/api/v1/channels/market/watermark/", {}, format="json").status_code == 400
    later = (now + timedelta(seconds=1)).isoformat()
    response = client.post("/api/v1/channels/market/watermark/", {"orders_imported_until": later}, format="json")
    assert response.json()["orders_pending"] is False


def test_sync_lag_by_channel_for_the_dashboard(s):
    web = channel_selling("web", [s.warehouse])
    channel_selling("quiet", [s.warehouse])
    a = listing(web, s.single)
    SyncWork.objects.create(
        listing=a, channel=web, priority=1, enqueued_at=timezone.now() - timedelta(seconds=30),
        changed_at=timezone.now(), next_attempt_at=timezone.now(),
    )  # fmt: skip
    metrics.push_record(channel_code="web", requests=3, updates=7, throttled=1)
    rows = {row["channel"]: row for row in sync_lag_by_channel()}
    assert set(rows["web"]) == {
        "channel", "name", "connector", "pending", "oldest_pending_seconds", "last_push_at", "dead", "pushes",
        "updates", "throttled",
    }  # fmt: skip
    assert rows["web"]["pending"] == 1 and rows["web"]["oldest_pending_seconds"] >= 29
    # Pushes as every worker counted them (the sync metrics in Redis).
    assert (rows["web"]["pushes"], rows["web"]["updates"], rows["web"]["throttled"]) == (3, 7, 1)
    assert rows["quiet"] == {"channel": "quiet", "name": "Channel quiet", "connector": "stockroom", "pending": 0,
                             "oldest_pending_seconds": None, "last_push_at": None, "dead": 0, "pushes": 0,
                             "updates": 0, "throttled": 0}  # fmt: skip


def test_sync_lag_by_channel_without_metrics_still_lists_the_channels(s, monkeypatch):
    channel_selling("web", [s.warehouse])
    monkeypatch.setattr(selectors, "push_totals", lambda codes: None)  # Redis unreadable
    (row,) = sync_lag_by_channel()
    assert row["channel"] == "web" and row["pushes"] is None and row["throttled"] is None


def test_admin_pages_batch_their_columns(admin_client, s, django_assert_max_num_queries):
    web = channel_selling("web", [s.warehouse])
    for i, product in enumerate([s.single, s.pack, s.kit, s.cap_only] * 5):
        listing(web, product, f"A-{i}")
    with django_assert_max_num_queries(12):
        page = admin_client.get("/admin/channels/listing/")
    assert page.status_code == 200 and b"A-19" in page.content
    with django_assert_max_num_queries(12):
        assert admin_client.get("/admin/channels/channel/").status_code == 200
    assert admin_client.get("/admin/channels/syncwork/").status_code == 200
    assert admin_client.get("/admin/channels/deadletter/").status_code == 200


def test_admin_retry_action_revives_dead_letters(admin_client, s):
    web = channel_selling("web", [s.warehouse])
    a = listing(web, s.single)
    work = SyncWork.objects.create(
        listing=a, channel=web, priority=3, enqueued_at=timezone.now(), changed_at=timezone.now(),
        next_attempt_at=timezone.now(), state=SyncWork.State.DEAD, attempts=8, last_error="HTTP 500",
    )  # fmt: skip
    response = admin_client.post(
        "/admin/channels/deadletter/", {"action": "retry", "_selected_action": [work.pk]}, follow=True
    )
    assert response.status_code == 200
    work.refresh_from_db()
    assert work.state == SyncWork.State.PENDING and work.attempts == 0


def test_metrics_expose_queue_depth_and_dead_letters(client, s):
    web = channel_selling("web", [s.warehouse])
    a = listing(web, s.single)
    SyncWork.objects.create(
        listing=a, channel=web, priority=1, enqueued_at=timezone.now(), changed_at=timezone.now(),
        next_attempt_at=timezone.now(),
    )  # fmt: skip
    from apps.channels.metrics import push_record

    push_record(channel_code="web", latencies=[(1, 0.4)], requests=1, updates=1)
    text = client.get("/metrics").content.decode()
    assert 'stockroom_sync_queue_depth{channel="web",tier="1"} 1.0' in text
    assert 'stockroom_sync_dead_letters{channel="web"} 0.0' in text
    assert 'stockroom_sync_latency_seconds_bucket{channel="web",le="0.5",tier="1"} 1.0' in text
    assert 'stockroom_sync_pushes_total{channel="web"} 1.0' in text


def test_a_channel_cannot_move_its_watermark_into_the_future(channel_api, s):
    """A token that moved the watermark to 2099 would hold every raise for good, or switch the hold off."""
    channel_selling("market", [s.warehouse])
    client = channel_api("market")
    for field in ("orders_pending_until", "orders_imported_until"):
        response = client.post("/api/v1/channels/market/watermark/", {field: "2099-01-01T00:00:00Z"}, format="json")
        assert response.status_code == 400 and field in json.dumps(response.json())
        assert "ahead" in json.dumps(response.json())
    channel = Channel.objects.get(code="market")
    assert channel.orders_pending_until is None and channel.orders_imported_until is None
    soon = (timezone.now() + timedelta(minutes=2)).isoformat()  # a clock a little ahead is fine
    assert client.post("/api/v1/channels/market/watermark/", {"orders_pending_until": soon},
                       format="json").status_code == 200  # fmt: skip
