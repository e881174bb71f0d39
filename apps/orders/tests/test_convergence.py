"""Platform orders converge: cancels before creates, edits, partly linked orders, refusals kept, the sweep."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import structlog.testing
from django.conf import settings
from django.db import connections
from django.utils import timezone

from apps.catalog.models import Incident, Item
from apps.catalog.tests.factories import ItemFactory, product_of, stock
from apps.channels.connectors.base import OrderLine, OrdersPage, PlatformOrder
from apps.channels.models import Listing
from apps.channels.services.config import listing_create, listing_update
from apps.orders import tasks
from apps.orders.models import Order, PlatformOrderRejection, PlatformOrderTombstone, Reservation
from apps.orders.services.intake import (
    Result,
    platform_order_rejections_retry,
    platform_order_tombstones_prune,
    platform_orders_poll,
)
from apps.orders.services.sweep import platform_order_sweeps_due, platform_orders_sweep
from apps.orders.tests.factories import stock_invariants
from apps.orders.tests.test_intake import apply, level, order, post_webhook

pytestmark = pytest.mark.django_db

S = PlatformOrder.Status
T_CANCEL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def hook(topic: str, *orders: dict) -> dict:
    return {"topic": topic, "orders": list(orders)}


def wire(external_id: str, status: str, lines: list[dict], updated_at: datetime | None = None) -> dict:
    data: dict = {"id": external_id, "status": status, "lines": lines}
    if updated_at is not None:
        data["updated_at"] = updated_at.isoformat()
    return data


def lines_of(stored: Order) -> dict[str, int]:
    return dict(stored.lines.values_list("channel_sku", "quantity"))


def oversell_incidents() -> list[Incident]:
    return list(Incident.objects.filter(kind=Incident.Kind.OVERSELL).order_by("pk"))


# --- a cancel before its create ------------------------------------------------------------------


def test_a_cancel_webhook_before_its_create_keeps_a_tombstone_and_the_late_create_reserves_nothing(platform, client):
    _p, channel = platform
    cancelled = wire("5001", "cancelled", [{"sku": "HOOD-M", "quantity": 3}], T_CANCEL)
    answer = post_webhook(client, hook("orders/cancelled", cancelled), delivery="d-1").json()
    assert answer["orders"][0]["result"] == "tombstoned"
    assert PlatformOrderTombstone.objects.get(channel=channel).platform_updated_at == T_CANCEL
    # The create, retried by the platform after an outage (older than the cancel): not imported.
    created = wire("5001", "open", [{"sku": "HOOD-M", "quantity": 3}], T_CANCEL - timedelta(minutes=5))
    answer = post_webhook(client, hook("orders/create", created), delivery="d-2").json()
    (result,) = answer["orders"]
    assert result["result"] == "skipped" and "Cancelled on the platform before Stockroom saw it" in result["detail"]
    assert not Order.objects.exists() and level("HOOD") == (10, 0)
    # Same time as the cancel, or no time at all: the cancel stands.
    for updated_at in (T_CANCEL, None):
        again = post_webhook(client, hook("orders/create", wire("5001", "open", created["lines"], updated_at)),
                             delivery=f"d-3-{updated_at}").json()  # fmt: skip
        assert again["orders"][0]["result"] == "skipped"
    assert not Order.objects.exists()


def test_a_delete_before_the_create_is_kept_too_and_a_newer_create_is_imported(platform, client):
    deleted = wire("5002", "cancelled", [], T_CANCEL)  # WooCommerce order.deleted: no lines
    assert post_webhook(client, hook("order.deleted", deleted), delivery="w-1").json()["orders"][0]["result"] == (
        "tombstoned"
    )
    newer = wire("5002", "open", [{"sku": "HOOD-M", "quantity": 2}], T_CANCEL + timedelta(minutes=1))
    answer = post_webhook(client, hook("order.created", newer), delivery="w-2").json()
    assert answer["orders"][0]["result"] == "created"  # the platform changed it after its cancel: it counts
    assert level("HOOD") == (10, 2) and not PlatformOrderTombstone.objects.exists()


def test_a_cancel_seen_by_a_poll_before_the_create_is_kept_across_polls(platform):
    p, channel = platform
    now = timezone.now()
    p.pages = [OrdersPage(orders=[PlatformOrder("7001", S.CANCELLED, (), updated_at=now)], complete_until=now)]
    assert platform_orders_poll(channel_id=channel.pk).results == {"tombstoned": 1}
    late = PlatformOrder("7001", S.OPEN, (OrderLine("HOOD-M", 4),), updated_at=now - timedelta(minutes=2))
    p.pages = [OrdersPage(orders=[late], complete_until=now)]
    assert platform_orders_poll(channel_id=channel.pk).results == {"skipped": 1}
    assert not Order.objects.exists() and level("HOOD") == (10, 0)


def test_tombstones_are_pruned_after_a_long_window(platform, admin_client):
    _p, channel = platform
    apply(channel, order("old", S.CANCELLED))
    apply(channel, order("recent", S.CANCELLED))
    page = admin_client.get("/admin/orders/platformordertombstone/").content.decode()
    assert "Cancelled platform orders not seen" in page and "recent" in page
    PlatformOrderTombstone.objects.filter(external_id="old").update(created_at=timezone.now() - timedelta(days=31))
    assert tasks.platform_order_tombstones_prune() == 1
    assert list(PlatformOrderTombstone.objects.values_list("external_id", flat=True)) == ["recent"]
    assert platform_order_tombstones_prune() == 0
    assert settings.CELERY_BEAT_SCHEDULE["orders-platform-order-tombstones-prune"]["task"] == (
        "orders.platform_order_tombstones_prune"
    )


# --- order edits ---------------------------------------------------------------------------------


def test_edits_reserve_more_release_fewer_removed_and_new_lines_and_the_ledger_sums(platform):
    _p, channel = platform
    apply(channel, order("1001", S.OPEN, OrderLine("HOOD-M", 2)))
    assert level("HOOD") == (10, 2)
    up = apply(channel, order("1001", S.OPEN, OrderLine("HOOD-M", 5)))
    assert up.result == Result.UPDATED and level("HOOD") == (10, 5)
    new_line = apply(channel, order("1001", S.OPEN, OrderLine("HOOD-M", 5), OrderLine("CAP", 3)))
    assert new_line.result == Result.UPDATED and level("CAP") == (10, 3)
    down = apply(channel, order("1001", S.OPEN, OrderLine("HOOD-M", 1), OrderLine("CAP", 3)))
    assert down.result == Result.UPDATED and level("HOOD") == (10, 1)
    removed = apply(channel, order("1001", S.OPEN, OrderLine("CAP", 3)))
    assert removed.result == Result.UPDATED and level("HOOD") == (10, 0) and level("CAP") == (10, 3)
    stored = Order.objects.get()
    assert lines_of(stored) == {"CAP": 3} and stored.status == Order.Status.CONFIRMED
    assert apply(channel, order("1001", S.OPEN, OrderLine("CAP", 3))).result == Result.UNCHANGED
    assert not oversell_incidents() and not PlatformOrderRejection.objects.exists()
    assert stock_invariants()["oversold"] == 0  # reserved == open reservations; the ledger sums to the levels


def test_an_edit_beyond_stock_reserves_what_is_there_and_opens_one_incident_naming_the_line(platform):
    _p, channel = platform
    apply(channel, order("1002", S.OPEN, OrderLine("HOOD-M", 2), OrderLine("CAP", 1)))
    applied = apply(channel, order("1002", S.OPEN, OrderLine("HOOD-M", 13), OrderLine("CAP", 1)))
    assert applied.result == Result.UPDATED and level("HOOD") == (10, 10)
    stored = Order.objects.get()
    assert stored.flagged and stored.lines.get(channel_sku="HOOD-M").unallocated_quantity == 3
    (incident,) = oversell_incidents()
    assert incident.item.sku == "HOOD" and incident.shortfall == 3
    assert "HOOD-M x3" in incident.detail and "CAP" not in incident.detail
    # Cut back: the oversold units go first, then stock is released.
    apply(channel, order("1002", S.OPEN, OrderLine("HOOD-M", 9), OrderLine("CAP", 1)))
    line = stored.lines.get(channel_sku="HOOD-M")
    assert (line.quantity, line.unallocated_quantity) == (9, 0) and level("HOOD") == (10, 9)
    # Shipping the edited order ships the units it holds, once (one reservation per item and location).
    assert Reservation.objects.filter(line=line).count() == 1
    apply(channel, order("1002", S.FULFILLED, OrderLine("HOOD-M", 9, 9), OrderLine("CAP", 1, 1)))
    assert level("HOOD") == (1, 0) and level("CAP") == (9, 0)
    assert stock_invariants()["oversold"] == 0


def test_shipped_units_are_never_unshipped_by_an_edit_the_line_is_kept_for_staff(platform, admin_client):
    _p, channel = platform
    apply(channel, order("1003", S.OPEN, OrderLine("HOOD-M", 3), OrderLine("CAP", 1)))
    apply(channel, order("1003", S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 3, fulfilled=2), OrderLine("CAP", 1)))
    assert level("HOOD") == (8, 1)
    applied = apply(channel, order("1003", S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 1, fulfilled=1),
                                   OrderLine("CAP", 2)))  # fmt: skip
    # CAP follows the platform; HOOD-M cannot go below the 2 shipped: left for staff with the reason.
    assert applied.result == Result.UPDATED and "HOOD-M x1" in applied.detail
    assert level("CAP") == (10, 2) and level("HOOD") == (8, 1)
    stored = Order.objects.get()
    assert lines_of(stored) == {"HOOD-M": 3, "CAP": 2}
    assert stored.lines.get(channel_sku="HOOD-M").fulfilled_quantity == 2
    rejection = PlatformOrderRejection.objects.get()
    assert rejection.order == stored and rejection.resolved_at is None
    assert rejection.lines[0]["sku"] == "HOOD-M" and "2 already shipped" in rejection.lines[0]["reason"]
    page = admin_client.get(f"/admin/orders/platformorderrejection/{rejection.pk}/change/").content.decode()
    assert "2 already shipped" in page
    again = apply(channel, order("1003", S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 1, fulfilled=1),
                                 OrderLine("CAP", 2)))  # fmt: skip
    assert again.result == Result.PARTIAL
    assert stock_invariants()["oversold"] == 0


def test_an_older_state_arriving_after_a_newer_one_is_not_applied_over_it(platform):
    _p, channel = platform
    t = T_CANCEL

    def at(minutes: int, *lines: OrderLine, status: str = S.OPEN) -> PlatformOrder:
        return PlatformOrder("1005", status, lines, updated_at=t + timedelta(minutes=minutes))

    apply(channel, at(0, OrderLine("HOOD-M", 2)))
    assert apply(channel, at(2, OrderLine("HOOD-M", 5))).result == Result.UPDATED
    stale = apply(channel, at(1, OrderLine("HOOD-M", 3)))  # a reordered webhook, or a sweep's read overtaken
    assert stale.result == Result.UNCHANGED and "older than the state already applied" in stale.detail
    assert level("HOOD") == (10, 5) and Order.objects.get().platform_updated_at == t + timedelta(minutes=2)
    assert apply(channel, at(3, OrderLine("HOOD-M", 3), status=S.CANCELLED)).result == Result.UPDATED
    assert level("HOOD") == (10, 0)


def test_a_state_from_the_second_of_a_cancel_arriving_after_it_is_older_and_leaves_no_refusal(platform):
    """A shipment and the cancel in one second; the shipment's webhook, held back, comes after the cancel with the
    cancel's own time (platforms give it to the second). It used to be refused ("shipped, but cancelled here")
    and kept for staff though the order was right, and only a later read of the order resolved it."""
    _p, channel = platform
    t = T_CANCEL

    def at(seconds: int, status: str, *lines: OrderLine) -> PlatformOrder:
        return PlatformOrder("1007", status, lines, updated_at=t + timedelta(seconds=seconds))

    apply(channel, at(0, S.OPEN, OrderLine("HOOD-M", 3)))
    assert apply(channel, at(1, S.CANCELLED, OrderLine("HOOD-M", 1, fulfilled=1))).result == Result.UPDATED
    assert level("HOOD") == (9, 0)
    late = apply(channel, at(1, S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 3, fulfilled=1)))
    assert late.result == Result.UNCHANGED and "same second as the platform's cancel" in late.detail
    assert not PlatformOrderRejection.objects.exists()
    assert Order.objects.get().status == Order.Status.CANCELLED and level("HOOD") == (9, 0)
    # A state of a later second is the platform's news: shipped after the cancel is still refused visibly.
    newer = apply(channel, at(2, S.FULFILLED, OrderLine("HOOD-M", 3, fulfilled=3)))
    assert newer.result == Result.REJECTED and PlatformOrderRejection.objects.get().resolved_at is None
    # Read again (the poll's overlap): refused again and kept for staff, the discrepancy is true.
    assert apply(channel, at(2, S.FULFILLED, OrderLine("HOOD-M", 3, fulfilled=3))).result == Result.REJECTED
    rejection = PlatformOrderRejection.objects.get()
    assert rejection.resolved_at is None and rejection.seen == 2
    assert level("HOOD") == (9, 0) and stock_invariants()["oversold"] == 0


def test_cutting_what_is_left_to_ship_completes_the_order(platform):
    _p, channel = platform
    apply(channel, order("1004", S.OPEN, OrderLine("HOOD-M", 3)))
    apply(channel, order("1004", S.PARTIALLY_FULFILLED, OrderLine("HOOD-M", 3, fulfilled=1)))
    applied = apply(channel, order("1004", S.FULFILLED, OrderLine("HOOD-M", 1, fulfilled=1)))
    assert applied.result == Result.UPDATED and Order.objects.get().status == Order.Status.FULFILLED
    assert level("HOOD") == (9, 0) and stock_invariants()["oversold"] == 0


# --- partly linked orders ------------------------------------------------------------------------


def beanie(channel, units: int) -> Item:
    item = ItemFactory(sku="BEANIE")
    stock(item, channel.locations.get(), units)
    return item


def test_a_partly_linked_order_reserves_its_linked_lines_and_linking_the_listing_applies_the_rest(
    platform, django_capture_on_commit_callbacks
):
    _p, channel = platform
    item = beanie(channel, 0)  # none on the shelf: the linked line will be a real shortfall
    lines = (OrderLine("HOOD-M", 2), OrderLine("BEANIE-RED", 1, external_id="gid://item/beanie"))
    applied = apply(channel, order("2001", S.OPEN, *lines))
    assert applied.result == Result.CREATED and "BEANIE-RED x1" in applied.detail
    assert level("HOOD") == (10, 2) and lines_of(Order.objects.get()) == {"HOOD-M": 2}
    rejection = PlatformOrderRejection.objects.get()
    assert rejection.order == applied.order and rejection.resolved_at is None
    assert rejection.lines == [
        {"sku": "BEANIE-RED", "external_id": "gid://item/beanie", "quantity": 1, "reason": rejection.lines[0]["reason"]}
    ]
    assert "Not listed on channel plat" in rejection.lines[0]["reason"] and not oversell_incidents()
    # Staff link the listing (as the admin and API do): the waiting line is applied to the same order.
    with django_capture_on_commit_callbacks(execute=True):
        listing_create(fields={"channel": channel, "channel_sku": "BEANIE-RED", "product": product_of("B", {item: 1}),
                               "external_id": "gid://item/beanie"})  # fmt: skip
    stored = Order.objects.get()
    assert lines_of(stored) == {"HOOD-M": 2, "BEANIE-RED": 1}
    rejection.refresh_from_db()
    assert rejection.resolved_at is not None
    # One incident, for the beanie that is really short, naming it; none for the hoodies stock covered.
    (incident,) = oversell_incidents()
    assert incident.item == item and incident.shortfall == 1
    assert "BEANIE-RED" in incident.detail and "HOOD" not in incident.detail
    assert stock_invariants()["oversold"] == 0


def test_a_partly_linked_order_line_is_applied_by_the_staff_retry(platform, admin_client):
    _p, channel = platform
    item = beanie(channel, 5)
    apply(channel, order("2002", S.OPEN, OrderLine("HOOD-M", 1), OrderLine("BEANIE-RED", 2)))
    rejection = PlatformOrderRejection.objects.get()
    page = admin_client.get("/admin/orders/platformorderrejection/").content.decode()
    assert "2002" in page and "Taken in part" in page and "BEANIE-RED x2" in page
    listing = Listing(channel=channel, channel_sku="BEANIE-RED", product=product_of("B", {item: 1}))
    Listing.objects.bulk_create([listing])  # no signal: the retry applies it
    response = admin_client.post(
        "/admin/orders/platformorderrejection/", {"action": "retry", "_selected_action": [rejection.pk]}
    )
    assert response.status_code == 302
    assert lines_of(Order.objects.get()) == {"HOOD-M": 1, "BEANIE-RED": 2}
    assert Reservation.objects.filter(item=item).get().open_quantity == 2 and not oversell_incidents()
    rejection.refresh_from_db()
    assert rejection.resolved_at is not None


def test_giving_an_existing_listing_the_platforms_id_applies_the_waiting_line(
    platform, django_capture_on_commit_callbacks
):
    _p, channel = platform
    item = beanie(channel, 4)
    listing = Listing.objects.create(channel=channel, channel_sku="BEANIE", product=product_of("B", {item: 1}))
    apply(channel, order("2004", S.OPEN, OrderLine("HOOD-M", 1), OrderLine("", 2, external_id="gid://item/beanie")))
    assert lines_of(Order.objects.get()) == {"HOOD-M": 1}
    with django_capture_on_commit_callbacks(execute=True):
        listing_update(listing=listing, fields={"is_active": True, "buffer": 1})  # not a link: nothing retried
    assert PlatformOrderRejection.objects.get().seen == 1
    with django_capture_on_commit_callbacks(execute=True):
        listing_update(listing=listing, fields={"external_id": "gid://item/beanie"})
    assert lines_of(Order.objects.get()) == {"HOOD-M": 1, "BEANIE": 2}
    assert PlatformOrderRejection.objects.get().resolved_at is not None and not oversell_incidents()


def test_an_import_short_on_one_line_opens_an_incident_for_that_line_only(platform):
    _p, channel = platform
    apply(channel, order("2003", S.OPEN, OrderLine("HOOD-M", 2), OrderLine("CAP", 12)))
    (incident,) = oversell_incidents()  # not also a "HOOD, short 0"
    assert incident.item.sku == "CAP" and incident.shortfall == 2
    assert "CAP x2" in incident.detail and "HOOD" not in incident.detail


# --- refused, not lost ---------------------------------------------------------------------------


def test_an_over_long_order_id_is_kept_with_a_readable_reason(platform, client):
    _p, channel = platform
    long_id = "9" * 300
    applied = apply(channel, order(long_id))
    assert applied.result == Result.REJECTED and "300 characters long" in applied.detail
    rejection = PlatformOrderRejection.objects.get()
    assert len(rejection.external_id) <= 120 and rejection.external_id.startswith("9" * 100)
    assert rejection.payload["external_id"] == long_id and rejection.reason == applied.detail
    assert not Order.objects.exists() and level("HOOD") == (10, 0)
    # By webhook: a 200 with the reason (no database text), kept once and counted.
    answer = post_webhook(client, hook("orders/create", wire(long_id, "open", [{"sku": "HOOD-M", "quantity": 1}])))
    assert answer.status_code == 200
    (result,) = answer.json()["orders"]
    assert result["result"] == "rejected" and "300 characters long" in result["detail"]
    assert "value too long" not in answer.content.decode()
    rejection.refresh_from_db()
    assert rejection.seen == 2 and PlatformOrderRejection.objects.count() == 1
    # A different long id with the same first 100 characters is another row.
    apply(channel, order("9" * 100 + "8" * 50))
    assert PlatformOrderRejection.objects.count() == 2
    (retried,) = platform_order_rejections_retry(rejection_ids=[rejection.pk], actor="staff")
    assert retried.result == Result.REJECTED


def test_malformed_lines_are_kept_with_readable_reasons(platform):
    _p, channel = platform
    huge = apply(channel, order("3001", S.OPEN, OrderLine("HOOD-M", 10**9)))
    assert huge.result == Result.REJECTED and "Implausible quantity" in huge.detail
    nameless = apply(channel, order("3002", S.OPEN, OrderLine("", 1)))
    assert nameless.result == Result.REJECTED and "(no SKU)" in nameless.detail
    reasons = dict(PlatformOrderRejection.objects.values_list("external_id", "reason"))
    assert set(reasons) == {"3001", "3002"} and not Order.objects.exists()


# --- the order truth sweep -----------------------------------------------------------------------


def age(*external_ids: str, minutes: int = 30) -> None:
    Order.objects.filter(external_id__in=external_ids).update(
        platform_seen_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_the_sweep_brings_open_orders_to_what_the_platform_shows(platform):
    p, channel = platform
    for external_id in ("a-lost-cancel", "b-shipped", "c-edited", "d-deleted", "e-fresh", "f-unknown"):
        apply(channel, order(external_id, S.OPEN, OrderLine("HOOD-M", 1), OrderLine("CAP", 1)))
    assert level("HOOD") == (10, 6) and level("CAP") == (10, 6)
    age("a-lost-cancel", "b-shipped", "c-edited", "d-deleted", "f-unknown")
    p.orders = {
        "a-lost-cancel": order("a-lost-cancel", S.CANCELLED),  # its webhook was lost
        "b-shipped": order("b-shipped", S.FULFILLED, OrderLine("HOOD-M", 1, 1), OrderLine("CAP", 1, 1)),
        "c-edited": order("c-edited", S.OPEN, OrderLine("HOOD-M", 3)),
        "e-fresh": order("e-fresh", S.CANCELLED),  # shown a minute ago: not asked yet
    }
    p.deleted = {"d-deleted"}
    report = platform_orders_sweep(channel_id=channel.pk)
    assert report.asked == 5 and report.shown == 4 and report.results == {"updated": 4}
    assert all(len(ids) <= 2 for ids in p.gets) and len(p.gets) == 3  # batches of orders_get_batch
    status = dict(Order.objects.values_list("external_id", "status"))
    assert status == {
        "a-lost-cancel": "cancelled",
        "b-shipped": "fulfilled",
        "c-edited": "confirmed",
        "d-deleted": "cancelled",
        "e-fresh": "confirmed",
        "f-unknown": "confirmed",
    }
    assert lines_of(Order.objects.get(external_id="c-edited")) == {"HOOD-M": 3}
    # Holding: c 3 hoodies, e and f one of each; b shipped one of each.
    assert level("HOOD") == (9, 5) and level("CAP") == (9, 2)
    assert stock_invariants()["oversold"] == 0
    # What the platform showed is not asked again until it is old; the order it could not tell about is.
    p.gets.clear()
    platform_orders_sweep(channel_id=channel.pk)
    assert p.gets == [["f-unknown"]]


def test_a_platform_error_leaves_everything_and_a_connector_without_orders_get_is_skipped(platform):
    p, channel = platform
    apply(channel, order("g-1"))
    age("g-1")
    p.orders = {"g-1": order("g-1", S.CANCELLED)}
    p.down = "HTTP 503"
    report = platform_orders_sweep(channel_id=channel.pk)
    assert report.error == "HTTP 503" and Order.objects.get().status == Order.Status.CONFIRMED
    p.down = None
    p.gets_unsupported = True
    with structlog.testing.capture_logs() as logs:
        report = platform_orders_sweep(channel_id=channel.pk)
    assert report.unsupported and Order.objects.get().status == Order.Status.CONFIRMED
    assert [entry["event"] for entry in logs if "sweep" in entry["event"]] == ["platform_orders_sweep_unsupported"]
    p.gets_unsupported = False
    assert platform_orders_sweep(channel_id=channel.pk).results == {"updated": 1}
    assert level("HOOD") == (10, 0)


def test_one_sweeper_per_channel_and_the_beat_sweeps_channels_with_open_orders(platform):
    p, channel = platform
    assert platform_order_sweeps_due() == []
    apply(channel, order("h-1"))
    assert platform_order_sweeps_due() == [channel.pk]
    taken, release = threading.Event(), threading.Event()

    def other_sweeper() -> None:
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"platform-orders-sweep\x1f{channel.pk}"]
            )
            taken.set()
            release.wait(10)
        other.close()

    thread = threading.Thread(target=other_sweeper)
    thread.start()
    try:
        assert taken.wait(10)
        assert platform_orders_sweep(channel_id=channel.pk).busy
    finally:
        release.set()
        thread.join()
    from inventory_site.celery import app

    assert {"orders.platform_orders_sweep_all", "orders.platform_orders_sweep"} <= set(app.tasks)
    entry = settings.CELERY_BEAT_SCHEDULE["orders-platform-orders-sweep"]
    assert entry["task"] == "orders.platform_orders_sweep_all"
    assert entry["schedule"] == float(settings.STOCKROOM["ORDERS_SWEEP_EVERY_S"]) == 300.0
    age("h-1")
    p.orders = {"h-1": order("h-1", S.CANCELLED)}
    tasks.platform_orders_sweep(channel.pk)  # the thin task runs the service
    assert Order.objects.get().status == Order.Status.CANCELLED


# --- a soak: lost, repeated and reordered webhooks, then the poll and the sweep ----------------------

SHIPPED_STATUS = {S.OPEN: "confirmed", S.PARTIALLY_FULFILLED: "partially_fulfilled", S.FULFILLED: "fulfilled"}


class Shop:
    """The platform's truth: orders created, edited, shipped and cancelled, each change a webhook."""

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.clock = T_CANCEL
        self.truth: dict[str, PlatformOrder] = {}
        self.deliveries: list[PlatformOrder] = []

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _publish(self, state: PlatformOrder) -> None:
        self.truth[state.external_id] = state
        self.deliveries.append(state)

    def step(self, n: int) -> None:
        rng = self.rng
        open_ids = [i for i, o in self.truth.items() if o.status in (S.OPEN, S.PARTIALLY_FULFILLED)]
        action = rng.choice(["create", "create", "edit", "ship", "cancel"]) if open_ids else "create"
        if action == "create":
            skus = rng.sample(["HOOD-M", "CAP"], rng.randint(1, 2))
            lines = tuple(OrderLine(sku, rng.randint(1, 3)) for sku in skus)
            self._publish(PlatformOrder(f"o-{n}", S.OPEN, lines, updated_at=self._tick()))
            return
        current = self.truth[rng.choice(open_ids)]
        if action == "cancel":
            self._publish(PlatformOrder(current.external_id, S.CANCELLED, current.lines, updated_at=self._tick()))
        elif action == "edit":
            lines = {line.sku: line for line in current.lines}
            for sku in ("HOOD-M", "CAP"):
                line = lines.get(sku)
                shipped = line.fulfilled if line else 0
                quantity = max(shipped, rng.randint(0, 4))  # never below what shipped
                if quantity:
                    lines[sku] = OrderLine(sku, quantity, shipped)
                else:
                    lines.pop(sku, None)
            if lines:
                self._publish(self._shipped(current.external_id, tuple(lines.values())))
        else:  # ship one more unit of a line
            lines = list(current.lines)
            index = rng.randrange(len(lines))
            line = lines[index]
            if line.fulfilled < line.quantity:
                lines[index] = OrderLine(line.sku, line.quantity, line.fulfilled + 1)
                self._publish(self._shipped(current.external_id, tuple(lines)))

    def _shipped(self, external_id: str, lines: tuple[OrderLine, ...]) -> PlatformOrder:
        if all(line.fulfilled == line.quantity for line in lines):
            status = S.FULFILLED
        elif any(line.fulfilled for line in lines):
            status = S.PARTIALLY_FULFILLED
        else:
            status = S.OPEN
        return PlatformOrder(external_id, status, lines, updated_at=self._tick())

    def network(self) -> list[PlatformOrder]:
        """What reaches Stockroom: 30 % lost, 20 % twice, and delivered out of order within a window of 6."""
        out: list[PlatformOrder] = []
        for delivery in self.deliveries:
            if self.rng.random() < 0.3:
                continue
            out += [delivery] * (2 if self.rng.random() < 0.2 else 1)
        for start in range(0, len(out), 6):
            window = out[start : start + 6]
            self.rng.shuffle(window)
            out[start : start + 6] = window
        return out


def out_of_step(truth: dict[str, PlatformOrder]) -> list[str]:
    """Orders Stockroom holds otherwise than the platform shows (status, lines, shipped units)."""
    wrong = []
    stored = {o.external_id: o for o in Order.objects.prefetch_related("lines")}
    for external_id, shown in truth.items():
        mine = stored.get(external_id)
        if shown.status == S.CANCELLED:
            if mine is not None and mine.status != Order.Status.CANCELLED:
                wrong.append(external_id)
            continue
        if mine is None:
            continue  # every webhook of it lost and older than the poll's reach: the platform never told
        want = {line.sku: (line.quantity, line.fulfilled) for line in shown.lines}
        have = {line.channel_sku: (line.quantity, line.fulfilled_quantity) for line in mine.lines.all()}
        if mine.status != SHIPPED_STATUS[shown.status] or have != want:
            wrong.append(external_id)
    return wrong


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_lost_repeated_and_reordered_webhooks_the_poll_and_the_sweep_leave_every_order_right(
    platform, seed, settings
):
    p, channel = platform
    for item in Item.objects.all():
        stock(item, channel.locations.get(), 1000)
    settings.STOCKROOM = {**settings.STOCKROOM, "ORDERS_SWEEP_AGE_S": 0}
    shop = Shop(seed)
    for n in range(120):
        shop.step(n)
    for delivery in shop.network():
        apply(channel, delivery)
    assert len(out_of_step(shop.truth)) >= 5  # what the lost and reordered webhooks left behind
    # The poll sees orders changed lately (here: the last 30 changes); the sweep reads back every open one.
    recent = {d.external_id: shop.truth[d.external_id] for d in shop.deliveries[-30:]}
    p.pages = [OrdersPage(orders=list(recent.values()), complete_until=timezone.now())]
    platform_orders_poll(channel_id=channel.pk)
    p.orders = dict(shop.truth)
    platform_orders_sweep(channel_id=channel.pk)
    assert out_of_step(shop.truth) == []
    assert Order.objects.exclude(status=Order.Status.CANCELLED).count() >= 10
    assert stock_invariants()["oversold"] == 0
    assert not PlatformOrderRejection.objects.filter(resolved_at__isnull=True).exists()
