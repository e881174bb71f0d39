"""The sync engine through a platform connector: every PushResult outcome, with real PostgreSQL and Redis.

The connector is the scripted in-memory platform of ``scripted.py`` (compare-and-set quantities by
external id, at most 3 updates per request); what is checked is what the engine makes of its answers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Movement
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier
from apps.channels import limits
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.services.config import channel_create, channel_watermark_set
from apps.channels.services.connection import channel_ref
from apps.channels.services.push import channel_push
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_work_enqueue
from apps.channels.tests.factories import listing, shop

pytestmark = pytest.mark.django_db

SETTINGS = {"shop_url": "https://shop.example.com", "location_id": "gid://shopify/Location/1"}
CREDENTIALS = {"access_token": "shpat_test", "webhook_secret": "whsec"}


@pytest.fixture
def world(scripted):
    platform = scripted()
    s = shop(hoodies=30, caps=10)
    channel = channel_create(
        fields={
            "code": "plat",
            "name": "Platform shop",
            "kind": Channel.Kind.WEBSHOP,
            "connector": "scripted",
            "settings": SETTINGS,
            "credentials": CREDENTIALS,
            "rate_per_s": 50,
            "burst": 20,
        },
        location_ids=[s.warehouse.pk],
        state="live",  # linked by hand here: pushed from the start, no go-live
    )
    listings = [
        listing(channel, s.single, "P-SINGLE", external_id="gid://item/1"),
        listing(channel, s.pack, "P-PACK", external_id="gid://item/2"),
        listing(channel, s.kit, "P-KIT", external_id="gid://item/3"),
        listing(channel, s.cap_only, "P-CAP", external_id="gid://item/4"),
    ]
    return platform.platform, channel, listings


def enqueue(listings: list[Listing], **kw: object) -> None:
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in listings], priority=Tier.SALE, reason="test", **kw)


def due_now() -> None:
    """Calm tiers wait for their window; these tests do not."""
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5), next_attempt_at=timezone.now())


def bucket_of(channel: Channel) -> limits.TokenBucket:
    return limits.TokenBucket(channel.pk, rate_per_s=channel.rate_per_s, burst=channel.burst)


def test_accepted_updates_reach_the_platform_in_batches_of_the_connectors_size(world):
    platform, channel, listings = world
    enqueue(listings)
    report = channel_push(channel_id=channel.pk)
    assert platform.shown == {"gid://item/1": 30, "gid://item/2": 10, "gid://item/3": 10, "gid://item/4": 10}
    assert [len(push) for push in platform.pushes] == [3, 1]  # max_batch 3 beats the channel's batch_size 100
    assert report.requests == 2 and report.updates == 4 and report.failures == 0
    assert not SyncWork.objects.exists()
    assert dict(Listing.objects.values_list("channel_sku", "last_pushed_qty")) == {
        "P-SINGLE": 30,
        "P-PACK": 10,
        "P-KIT": 10,
        "P-CAP": 10,
    }
    # The next push sends what was last told as the compare value.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=3,
                          idempotency_key="s1", actor="till")  # fmt: skip
    channel_push(channel_id=channel.pk)
    single = next(u for u in platform.pushes[-1] if u.sku == "P-SINGLE")
    assert (single.available, single.last_pushed, single.external_id) == (27, 30, "gid://item/1")


def test_the_channels_own_batch_size_wins_when_smaller(world):
    platform, channel, listings = world
    Channel.objects.filter(pk=channel.pk).update(batch_size=2)
    enqueue(listings)
    channel_push(channel_id=channel.pk)
    assert [len(push) for push in platform.pushes] == [2, 2]


def test_an_update_the_platform_refuses_backs_off_alone_and_the_rest_go_through(world):
    platform, channel, listings = world
    platform.refuse["gid://item/2"] = "variant not found"
    enqueue(listings)
    report = channel_push(channel_id=channel.pk)
    assert report.updates == 3 and report.failures == 1
    work = SyncWork.objects.get()
    assert work.listing.channel_sku == "P-PACK" and work.attempts == 1 and work.last_error == "variant not found"
    assert work.next_attempt_at > timezone.now()
    assert bucket_of(channel).take() == 0.0  # one bad item does not pause the whole channel
    # Out of attempts: a dead letter, with the platform's reason.
    for _ in range(2):
        SyncWork.objects.update(next_attempt_at=timezone.now())
        channel_push(channel_id=channel.pk)
    assert SyncWork.objects.get().state == SyncWork.State.DEAD


def test_a_platform_that_is_down_fails_the_batch_and_pauses_the_channel(world):
    platform, channel, listings = world
    platform.down = "HTTP 503: maintenance"
    enqueue(listings[:2])
    report = channel_push(channel_id=channel.pk)
    assert report.failures == 1 and report.updates == 0
    assert set(SyncWork.objects.values_list("attempts", "last_error")) == {(1, "HTTP 503: maintenance")}
    assert bucket_of(channel).take() > 0  # one request per backoff period, not one per batch
    assert SyncWork.objects.filter(next_attempt_at__gte=timezone.now() + timedelta(seconds=0.5)).count() == 2


def test_a_connector_bug_counts_as_a_failed_attempt_not_a_crashed_worker(world):
    platform, channel, listings = world
    platform.crash = True
    enqueue(listings[:1])
    report = channel_push(channel_id=channel.pk)
    assert report.failures == 1
    assert SyncWork.objects.get().last_error == "RuntimeError: connector bug"


def test_an_update_the_connector_says_nothing_about_is_tried_again(world):
    platform, channel, listings = world
    platform.forget.add("gid://item/1")
    enqueue(listings[:2])
    channel_push(channel_id=channel.pk)
    work = SyncWork.objects.get()
    assert work.listing_id == listings[0].pk and work.attempts == 1


def test_throttled_pauses_the_bucket_counts_no_attempt_and_keeps_the_rows(world):
    platform, channel, listings = world
    platform.throttle_next = [5.0]
    enqueue(listings[:2])
    report = channel_push(channel_id=channel.pk)
    assert report.throttled == 1 and report.failures == 0 and report.updates == 0
    assert report.follow_up_in is not None and report.follow_up_in > 3  # beyond the inline wait: a later task
    assert set(SyncWork.objects.values_list("attempts", "last_error")) == {(0, "")}
    assert bucket_of(channel).take() > 3
    assert platform.shown == {}
    # Once the pause is over the same rows go out.
    limits.redis_client().delete(bucket_of(channel).key)
    channel_push(channel_id=channel.pk)
    assert platform.shown == {"gid://item/1": 30, "gid://item/2": 10} and not SyncWork.objects.exists()


def test_the_platforms_budget_pause_applies_after_the_accepted_updates(world):
    platform, channel, listings = world
    platform.pause_for = 6.0
    enqueue(listings)
    report = channel_push(channel_id=channel.pk)
    assert report.updates == 3  # the first request went through, then the budget asked for a rest
    assert report.follow_up_in is not None and report.follow_up_in > 3
    assert SyncWork.objects.count() == 1


def test_a_mismatch_is_never_overwritten_blindly(world):
    platform, channel, listings = world
    single = listings[0]
    enqueue([single])
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 30
    platform.shown["gid://item/1"] = 28  # two sold on the platform; the order is not imported yet
    # Stockroom receives 5 more: its quantity would rise to 35.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=5,
                          idempotency_key="r1", actor="t")  # fmt: skip
    due_now()
    report = channel_push(channel_id=channel.pk)
    assert report.mismatched == 1
    assert platform.shown["gid://item/1"] == 28  # not overwritten
    single.refresh_from_db()
    assert single.last_pushed_qty == 28  # the next compare value is what the platform shows
    channel.refresh_from_db()
    assert channel.has_orders_pending  # the raise waits for the order import
    work = SyncWork.objects.get()
    assert work.repush and work.attempts == 0 and work.last_error.startswith("held")
    # A lower quantity still goes out, compared against what the platform showed.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=15,
                          idempotency_key="p1", actor="till")  # fmt: skip
    due_now()
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 20
    assert platform.pushes[-1][0].last_pushed == 28
    # Orders imported past the mismatch: raises go out again.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=4,
                          idempotency_key="r2", actor="t")  # fmt: skip
    due_now()
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 20
    channel_watermark_set(channel=channel, orders_imported_until=timezone.now() + timedelta(seconds=1))
    due_now()
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 24 and not SyncWork.objects.exists()


def test_a_mismatch_below_the_truth_is_settled_in_the_same_round(world):
    platform, channel, listings = world
    single = listings[0]
    enqueue([single])
    channel_push(channel_id=channel.pk)
    platform.shown["gid://item/1"] = 29  # a hand edit on the platform
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=10,
                          idempotency_key="p1", actor="till")  # fmt: skip
    report = channel_push(channel_id=channel.pk)  # the sale reaches the pack and the kit too
    assert report.mismatched == 1 and report.held == 0
    assert platform.shown["gid://item/1"] == 20 and not SyncWork.objects.exists()
    told = [(u.available, u.last_pushed) for push in platform.pushes[1:] for u in push if u.sku == "P-SINGLE"]
    assert told == [(20, 30), (20, 29)]


def test_an_unreadable_mismatch_counts_as_a_failed_attempt(world):
    _platform, channel, listings = world
    single = listings[0]
    Listing.objects.filter(pk=single.pk).update(last_pushed_qty=30)
    enqueue([single])
    channel_push(channel_id=channel.pk)  # the platform shows nothing for it: compare 30 != None
    work = SyncWork.objects.get()
    assert work.attempts == 1 and "could not be read" in work.last_error
    assert Listing.objects.get(pk=single.pk).last_pushed_qty == 30


def test_a_channel_without_its_credentials_is_not_pushed(world):
    platform, channel, listings = world
    Channel.objects.filter(pk=channel.pk).update(credentials_encrypted="")
    enqueue(listings)
    report = channel_push(channel_id=channel.pk)
    assert report.requests == 0 and platform.pushes == []
    assert SyncWork.objects.count() == 4  # kept for when the merchant enters them


def test_reconciliation_reads_back_through_the_connector(world):
    platform, channel, listings = world
    enqueue(listings)
    channel_push(channel_id=channel.pk)
    platform.shown["gid://item/3"] = 99
    report = channel_reconcile(channel_id=channel.pk)
    assert report.checked == 4 and report.drifted == 1
    assert SyncWork.objects.get().listing_id == listings[2].pk


def test_the_connector_sees_decrypted_credentials_and_the_database_does_not(world):
    _platform, channel, _listings = world
    stored = Channel.objects.values_list("credentials_encrypted", flat=True).get(pk=channel.pk)
    assert "shpat_test" not in stored and stored
    ref = channel_ref(Channel.objects.get(pk=channel.pk))
    assert ref.credentials == CREDENTIALS and ref.settings["shop_url"] == SETTINGS["shop_url"]


def test_a_drop_that_imported_platform_orders_explain_is_pushed_at_once_without_a_hold(world):
    from apps.channels.connectors.base import OrderLine, PlatformOrder
    from apps.orders.services.intake import platform_order_apply

    platform, channel, listings = world
    single = listings[0]
    enqueue([single])
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 30
    # Two sold on the platform, which lowers its own stock; the order's webhook is imported at once.
    platform.shown["gid://item/1"] = 28
    sold = PlatformOrder(external_id="1001", status=PlatformOrder.Status.OPEN, lines=(OrderLine("P-SINGLE", 2),))
    platform_order_apply(channel=channel, order=sold, actor="webhook")
    single.refresh_from_db()
    assert single.platform_sold_units == 2
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=5,
                          idempotency_key="r1", actor="t")  # fmt: skip
    due_now()
    report = channel_push(channel_id=channel.pk)
    # The platform's 28 is the 30 told less the 2 imported: no order can be missing, so the raise goes out.
    assert report.mismatched == 1 and report.held == 0
    assert platform.shown["gid://item/1"] == 33  # 35 on hand, 2 reserved by the platform's order
    assert platform.pushes[-1][0].last_pushed == 28
    channel.refresh_from_db()
    single.refresh_from_db()
    assert not channel.has_orders_pending and single.platform_sold_units == 0
    # A drop no imported order explains still holds raises until the order import catches up.
    platform.shown["gid://item/1"] = 31
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=1,
                          idempotency_key="r2", actor="t")  # fmt: skip
    due_now()
    channel_push(channel_id=channel.pk)
    assert platform.shown["gid://item/1"] == 31
    channel.refresh_from_db()
    single.refresh_from_db()
    assert channel.has_orders_pending and single.platform_sold_units == -2  # its order's import fills the hole
    late = PlatformOrder(external_id="1002", status=PlatformOrder.Status.OPEN, lines=(OrderLine("P-SINGLE", 2),))
    platform_order_apply(channel=channel, order=late, actor="poll")
    single.refresh_from_db()
    assert single.platform_sold_units == 0
