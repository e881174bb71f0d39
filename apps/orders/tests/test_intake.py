"""Orders from a platform: applied idempotently along the API's paths, refusals kept, webhooks and polls."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone

from apps.catalog.models import Incident, Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import ItemFactory, product_of, stock
from apps.channels.connectors.base import OrderLine, OrdersPage, PlatformOrder
from apps.channels.models import Channel, Listing
from apps.channels.tests.scripted import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from apps.orders import tasks
from apps.orders.models import Order, PlatformOrderRejection, PlatformOrderTombstone, WebhookDelivery
from apps.orders.services.intake import (
    Result,
    platform_order_apply,
    platform_order_polls_due,
    platform_order_rejections_retry,
    platform_orders_poll,
)
from apps.orders.tests.factories import PLATFORM_WEBHOOK_SECRET, stock_invariants

pytestmark = pytest.mark.django_db

S = PlatformOrder.Status
WEBHOOK_SECRET = PLATFORM_WEBHOOK_SECRET


def order(external_id: str = "1001", status: str = S.OPEN, *lines: OrderLine) -> PlatformOrder:
    return PlatformOrder(
        external_id=external_id,
        status=status,
        lines=lines or (OrderLine(sku="HOOD-M", quantity=2), OrderLine(sku="CAP", quantity=1)),
        number=f"#{external_id}",
    )


def level(sku: str) -> tuple[int, int]:
    found = StockLevel.objects.get(item__sku=sku, location__code="wh")
    return found.on_hand, found.reserved


def apply(channel: Channel, platform_order: PlatformOrder):
    return platform_order_apply(channel=channel, order=platform_order, actor="test", source="test")


# --- one order -----------------------------------------------------------------------------------


def test_a_new_order_is_imported_and_reserves_and_replaying_it_changes_nothing(platform):
    _p, channel = platform
    applied = apply(channel, order())
    assert applied.result == Result.CREATED
    stored = Order.objects.get(channel=channel, external_id="1001")
    assert applied.order == stored and stored.mode == Order.Mode.IMPORT and stored.status == Order.Status.CONFIRMED
    assert level("HOOD") == (10, 2) and level("CAP") == (10, 1)
    movements = Movement.objects.count()
    again = apply(channel, order())
    assert again.result == Result.UNCHANGED and Movement.objects.count() == movements
    assert Order.objects.count() == 1 and stock_invariants()["oversold"] == 0


def test_shipped_units_are_fulfilled_once_partial_then_whole(platform):
    _p, channel = platform
    apply(channel, order())
    partial = order("1001", S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 2, fulfilled=1), OrderLine("CAP", 1))
    assert apply(channel, partial).result == Result.UPDATED
    assert level("HOOD") == (9, 1) and level("CAP") == (10, 1)
    assert Order.objects.get().status == Order.Status.PARTIALLY_FULFILLED
    assert apply(channel, partial).result == Result.UNCHANGED  # the same shipment twice ships once
    assert level("HOOD") == (9, 1)
    done = order("1001", S.FULFILLED)  # no per-line figures: everything shipped
    assert apply(channel, done).result == Result.UPDATED
    assert level("HOOD") == (8, 0) and level("CAP") == (9, 0)
    assert Order.objects.get().status == Order.Status.FULFILLED
    assert stock_invariants()["oversold"] == 0


def test_an_order_first_seen_fulfilled_is_imported_and_shipped(platform):
    _p, channel = platform
    assert apply(channel, order("1002", S.FULFILLED)).result == Result.CREATED
    assert level("HOOD") == (8, 0) and Order.objects.get().status == Order.Status.FULFILLED


def test_a_pending_order_reserves(platform):
    _p, channel = platform
    assert apply(channel, order("1003", S.PENDING)).result == Result.CREATED
    assert level("HOOD") == (10, 2)


def test_a_cancel_releases_what_the_order_holds_and_a_second_cancel_is_harmless(platform):
    _p, channel = platform
    apply(channel, order())
    assert apply(channel, order("1001", S.CANCELLED)).result == Result.UPDATED
    assert level("HOOD") == (10, 0) and Order.objects.get().status == Order.Status.CANCELLED
    assert apply(channel, order("1001", S.CANCELLED)).result == Result.UNCHANGED


def test_a_cancel_after_a_partial_shipment_keeps_what_shipped(platform):
    _p, channel = platform
    apply(channel, order())
    cancelled = order("1001", S.CANCELLED, OrderLine("HOOD-M", 2, fulfilled=1), OrderLine("CAP", 1))
    assert apply(channel, cancelled).result == Result.UPDATED
    assert level("HOOD") == (9, 0) and level("CAP") == (10, 0)


def test_a_new_order_already_cancelled_reserves_nothing_and_is_kept_as_a_tombstone(platform):
    _p, channel = platform
    applied = apply(channel, order("1004", S.CANCELLED))
    assert applied.result == Result.TOMBSTONED and applied.order is None
    assert not Order.objects.exists() and not PlatformOrderRejection.objects.exists()
    assert PlatformOrderTombstone.objects.get().external_id == "1004"


def test_lines_are_found_by_the_platforms_id_when_the_sku_is_not_listed_and_add_up(platform):
    _p, channel = platform
    lines = (
        OrderLine(sku="", quantity=1, external_id="gid://item/hood"),
        OrderLine(sku="OLD-SKU", quantity=2, external_id="gid://item/hood"),
        OrderLine(sku="CAP", quantity=0),  # taken off the order
    )
    assert apply(channel, order("1005", S.OPEN, *lines)).result == Result.CREATED
    (line,) = Order.objects.get().lines.all()
    assert (line.channel_sku, line.quantity) == ("HOOD-M", 3)


def test_an_unknown_sku_is_kept_with_its_reason_and_applied_once_listed(platform):
    _p, channel = platform
    lines = (OrderLine("MUG", 1),)
    applied = apply(channel, order("1006", S.OPEN, *lines))
    assert applied.result == Result.REJECTED and "MUG" in applied.detail
    assert not Order.objects.exists() and level("HOOD") == (10, 0)
    rejection = PlatformOrderRejection.objects.get()
    assert rejection.external_id == "1006" and "MUG" in rejection.reason and rejection.resolved_at is None
    assert rejection.payload["lines"][0]["sku"] == "MUG"
    assert apply(channel, order("1006", S.OPEN, *lines)).result == Result.REJECTED
    rejection.refresh_from_db()
    assert rejection.seen == 2
    # Staff list the mug, then retry: the order as the platform last showed it goes through.
    mug = ItemFactory(sku="MUG")
    stock(mug, channel.locations.get(), 3)
    Order.objects.all().delete()
    (retried,) = platform_order_rejections_retry(rejection_ids=[rejection.pk], actor="staff")
    assert retried.result == Result.REJECTED  # still not listed
    Listing.objects.bulk_create([Listing(channel=channel, channel_sku="MUG", product=product_of("MUG-P", {mug: 1}))])
    (retried,) = platform_order_rejections_retry(rejection_ids=[rejection.pk], actor="staff")
    assert retried.result == Result.CREATED
    rejection.refresh_from_db()
    assert rejection.resolved_at is not None
    assert StockLevel.objects.get(item=mug).reserved == 1


def test_an_oversold_order_is_imported_flagged_with_an_incident(platform):
    _p, channel = platform
    applied = apply(channel, order("1007", S.OPEN, OrderLine("HOOD-M", 12)))
    assert applied.result == Result.CREATED
    stored = Order.objects.get()
    assert stored.flagged and stored.lines.get().unallocated_quantity == 2
    assert Incident.objects.filter(kind=Incident.Kind.OVERSELL).exists()


def test_an_implausible_quantity_is_refused_with_an_incident_and_kept(platform):
    _p, channel = platform
    Channel.objects.filter(pk=channel.pk).update(import_cap_units=5)
    channel.refresh_from_db()
    applied = apply(channel, order("1008", S.OPEN, OrderLine("HOOD-M", 50)))
    assert applied.result == Result.REJECTED
    assert not Order.objects.exists()
    assert Incident.objects.filter(kind=Incident.Kind.IMPLAUSIBLE_IMPORT).count() == 1
    assert "Import refused" in PlatformOrderRejection.objects.get().reason
    negative = apply(channel, order("1009", S.OPEN, OrderLine("HOOD-M", -1)))
    assert negative.result == Result.REJECTED and "Implausible" in negative.detail


def test_a_channel_that_may_not_import_keeps_the_order_as_refused(platform):
    _p, channel = platform
    Channel.objects.filter(pk=channel.pk).update(can_import=False)
    channel.refresh_from_db()
    applied = apply(channel, order("1010"))
    assert applied.result == Result.REJECTED and "import" in applied.detail.lower()


def test_shipped_on_the_platform_but_cancelled_here_is_refused_visibly(platform):
    _p, channel = platform
    apply(channel, order())
    apply(channel, order("1001", S.CANCELLED))
    applied = apply(channel, order("1001", S.FULFILLED))
    assert applied.result == Result.REJECTED and applied.order is not None
    assert PlatformOrderRejection.objects.get().order == applied.order
    assert level("HOOD") == (10, 0)


def test_an_oversold_order_ships_what_stock_held(platform):
    _p, channel = platform
    apply(channel, order("1011", S.OPEN, OrderLine("HOOD-M", 12)))  # 2 units oversold
    applied = apply(channel, order("1011", S.FULFILLED, OrderLine("HOOD-M", 12, fulfilled=12)))
    # The 10 held units ship; the 2 no stock covered never were Stockroom's to ship: that is the oversell.
    assert applied.result == Result.UPDATED
    assert level("HOOD") == (0, 0)


def test_a_fulfilment_the_shelf_cannot_cover_keeps_the_import_and_the_reason(platform):
    _p, channel = platform
    apply(channel, order("1012", S.OPEN, OrderLine("HOOD-M", 2)))
    stock_movement_record(location_code="wh", item_sku="HOOD", kind=Movement.Kind.POS_SALE, quantity=9,
                          idempotency_key="till-1", actor="till")  # fmt: skip
    applied = apply(channel, order("1012", S.FULFILLED))
    assert applied.result == Result.REJECTED and "Fulfilment refused" in applied.detail
    assert Order.objects.get().status == Order.Status.CONFIRMED and level("HOOD") == (1, 2)
    assert PlatformOrderRejection.objects.get().order == applied.order


# --- webhooks ------------------------------------------------------------------------------------


def post_webhook(client, body: dict, *, delivery: str = "d-1", secret: str = WEBHOOK_SECRET, code: str = "plat",
                 connector: str = "scripted"):  # fmt: skip
    raw = json.dumps(body).encode()
    return client.post(
        f"/api/v1/channels/{code}/webhooks/{connector}/",
        raw,
        content_type="application/json",
        headers={SIGNATURE_HEADER: sign(raw, secret), DELIVERY_HEADER: delivery},
    )


CREATED = {
    "topic": "orders/create",
    "orders": [{"id": "5001", "status": "open", "lines": [{"sku": "HOOD-M", "quantity": 3}]}],
}


def test_a_signed_webhook_imports_its_order(platform, client):
    _p, channel = platform
    response = post_webhook(client, CREATED)
    assert response.status_code == 200, response.content
    body = response.json()
    stored = Order.objects.get(channel=channel, external_id="5001")
    assert body == {
        "delivery_id": "d-1",
        "topic": "orders/create",
        "duplicate": False,
        "orders": [{"external_id": "5001", "result": "created", "order": stored.pk, "detail": ""}],
    }
    assert level("HOOD") == (10, 3)


def test_a_forged_webhook_is_401_and_changes_nothing(platform, client):
    response = post_webhook(client, CREATED, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert not Order.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_redelivery_answers_200_without_applying_it_again(platform, client):
    assert post_webhook(client, CREATED).status_code == 200
    cancelled = {**CREATED, "orders": [{**CREATED["orders"][0], "status": "cancelled"}]}
    again = post_webhook(client, cancelled)  # same delivery id: not applied, whatever it says
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["orders"] == []
    assert Order.objects.get().status == Order.Status.CONFIRMED and level("HOOD") == (10, 3)
    assert WebhookDelivery.objects.count() == 1
    assert post_webhook(client, cancelled, delivery="d-2").json()["orders"][0]["result"] == "updated"
    assert level("HOOD") == (10, 0)


def test_unknown_channel_or_another_connector_answers_as_a_bad_signature(platform, client):
    forged = post_webhook(client, CREATED, secret="not-the-secret")
    assert forged.status_code == 401
    for answer in (
        post_webhook(client, CREATED, code="nope"),
        post_webhook(client, CREATED, connector="shopify"),
    ):
        assert (answer.status_code, answer.json()) == (401, forged.json())
    Channel.objects.create(code="classic", name="Classic")  # the push protocol takes no webhooks
    response = post_webhook(client, CREATED, code="classic", connector="stockroom")
    assert (response.status_code, response.json()) == (401, forged.json())


def test_a_signed_but_unreadable_webhook_is_400(platform, client):
    response = post_webhook(client, {"topic": "orders/create"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_webhook"


def test_an_order_that_cannot_be_applied_is_kept_and_the_platform_gets_200(platform, client):
    body = {
        "topic": "orders/create",
        "orders": [{"id": "5002", "status": "open", "lines": [{"sku": "MUG", "quantity": 1}]}],
    }
    response = post_webhook(client, body)
    assert response.status_code == 200 and response.json()["orders"][0]["result"] == "rejected"
    assert PlatformOrderRejection.objects.get().source == "webhook"


# --- polling -------------------------------------------------------------------------------------

# Watermarks never move into the future (nor back): T0 + 30 days is half an hour ago.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30, minutes=30)


def test_a_poll_follows_every_page_applies_each_order_and_moves_the_watermark(platform):
    p, channel = platform
    imported_before = channel.orders_imported_until
    p.pages = [
        OrdersPage(orders=[order("7001"), order("7002", S.CANCELLED)], complete_until=None, next_cursor="1"),
        OrdersPage(orders=[order("7003", S.FULFILLED), order("7001")], complete_until=T0 + timedelta(days=30)),
    ]
    report = platform_orders_poll(channel_id=channel.pk)
    assert report.pages == 2 and report.orders == 4
    assert report.results == {"created": 2, "tombstoned": 1, "unchanged": 1}
    assert p.polls == [
        (imported_before - timedelta(seconds=300), None),
        (imported_before - timedelta(seconds=300), "1"),
    ]
    channel.refresh_from_db()
    assert channel.orders_imported_until == T0 + timedelta(days=30)
    assert set(Order.objects.values_list("external_id", flat=True)) == {"7001", "7003"}
    # The next poll starts at the new watermark, minus the overlap (orders are idempotent).
    p.pages = [OrdersPage(orders=[], complete_until=T0 + timedelta(days=31))]
    platform_orders_poll(channel_id=channel.pk)
    assert p.polls[-1] == (T0 + timedelta(days=30) - timedelta(seconds=300), None)


def test_a_poll_that_catches_up_releases_raises_held_for_pending_orders(platform):
    p, channel = platform
    Channel.objects.filter(pk=channel.pk).update(orders_pending_until=timezone.now())
    assert Channel.objects.get(pk=channel.pk).has_orders_pending
    p.pages = [OrdersPage(orders=[], complete_until=timezone.now() + timedelta(seconds=1))]
    platform_orders_poll(channel_id=channel.pk)
    assert not Channel.objects.get(pk=channel.pk).has_orders_pending


def test_a_failed_page_leaves_the_watermark_where_it_was(platform):
    p, channel = platform
    before = channel.orders_imported_until
    p.down = "HTTP 502"
    report = platform_orders_poll(channel_id=channel.pk)
    assert report.error == "HTTP 502"
    channel.refresh_from_db()
    assert channel.orders_imported_until == before


def test_one_poller_per_channel(platform):
    p, channel = platform
    p.pages = [OrdersPage(orders=[], complete_until=T0)]
    taken, release = threading.Event(), threading.Event()

    def other_poller() -> None:
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"platform-orders-poll\x1f{channel.pk}"]
            )
            taken.set()
            release.wait(10)
            # Let go before closing: a closed session's locks go with its server process, a moment later.
            cursor.execute(
                "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [f"platform-orders-poll\x1f{channel.pk}"]
            )
        other.close()

    thread = threading.Thread(target=other_poller)
    thread.start()
    try:
        assert taken.wait(10)
        assert platform_orders_poll(channel_id=channel.pk).busy
        assert p.polls == []
    finally:
        release.set()
        thread.join()
    assert not platform_orders_poll(channel_id=channel.pk).busy and p.polls


def test_the_beat_polls_active_platform_channels_only(platform):
    p, channel = platform
    Channel.objects.create(code="classic", name="Classic push protocol")
    Channel.objects.create(code="off", name="Off", connector="scripted", is_active=False)
    assert platform_order_polls_due() == [channel.pk]
    from inventory_site.celery import app

    assert {"orders.platform_orders_poll_all", "orders.platform_orders_poll"} <= set(app.tasks)
    p.pages = [OrdersPage(orders=[order("8001")], complete_until=T0 + timedelta(days=30))]
    tasks.platform_orders_poll(channel.pk)  # the thin task runs the service
    assert Order.objects.filter(external_id="8001").exists()
    assert Channel.objects.get(pk=channel.pk).orders_imported_until == T0 + timedelta(days=30)


def test_staff_see_refused_orders_and_retry_them_from_the_admin(platform, admin_client):
    _p, channel = platform
    apply(channel, order("1013", S.OPEN, OrderLine("MUG", 1)))
    rejection = PlatformOrderRejection.objects.get()
    page = admin_client.get("/admin/orders/platformorderrejection/").content.decode()
    assert "1013" in page and "Not listed on channel plat: MUG" in page
    mug = ItemFactory(sku="MUG")
    stock(mug, channel.locations.get(), 3)
    Listing.objects.bulk_create([Listing(channel=channel, channel_sku="MUG", product=product_of("MUG-P", {mug: 1}))])
    response = admin_client.post(
        "/admin/orders/platformorderrejection/", {"action": "retry", "_selected_action": [rejection.pk]}
    )
    assert response.status_code == 302
    assert Order.objects.filter(external_id="1013").exists()
    assert "1013" not in admin_client.get("/admin/orders/platformorderrejection/").content.decode()


def test_a_webhook_over_the_body_limit_is_413_before_it_is_read(platform, client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 200
    big = {**CREATED, "padding": "x" * 500}
    response = post_webhook(client, big)
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert not Order.objects.exists()
