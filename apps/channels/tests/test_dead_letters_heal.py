"""Dead letters heal on their own: a new change pushes again, a channel that recovers retries what died
with it, a channel whose work all died is probed; staff still see what died and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.signals import Tier
from apps.channels.conf import redis_key
from apps.channels.limits import redis_client
from apps.channels.models import Channel, DeadLetterRecord, Listing, SyncWork
from apps.channels.services.config import channel_create
from apps.channels.services.push import channel_push
from apps.channels.services.work import sync_sweep, sync_work_enqueue
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(simulator):
    s = shop(hoodies=30, caps=10)
    sim = simulator(rate=50, burst=20, secret="s3cret")
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    listings = [listing(web, s.single, "W-SINGLE"), listing(web, s.pack, "W-PACK"), listing(web, s.kit, "W-KIT")]
    return s, sim, web, listings


def enqueue(listings: list[Listing], priority: int = Tier.SALE) -> None:
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in listings], priority=priority, reason="test")


def push_until_dead(web, attempts: int = 3) -> None:
    """Push through every allowed attempt (SYNC_MAX_ATTEMPTS=3 in tests), skipping the waits."""
    for _ in range(attempts):
        SyncWork.objects.update(next_attempt_at=timezone.now())
        redis_client().delete(redis_key("bucket", web.pk))
        channel_push(channel_id=web.pk)


def test_a_new_change_to_a_dead_listing_is_pushed_and_the_death_stays_on_record(setup):
    _s, sim, web, listings = setup
    sim.down_status = 503
    enqueue(listings[:1])
    push_until_dead(web)
    assert SyncWork.objects.get().state == SyncWork.State.DEAD
    record = DeadLetterRecord.objects.get()
    assert record.listing_id == listings[0].pk and "503" in record.error and record.healed_at is None
    assert record.channel_failure  # the whole batch failed: the platform, not the listing

    sim.down_status = None
    redis_client().delete(redis_key("bucket", web.pk))
    enqueue(listings[:1])  # a sale of that listing: version moves, and now it is pushed
    row = SyncWork.objects.get()
    assert row.state == SyncWork.State.PENDING and row.attempts == 0
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 30 and not SyncWork.objects.exists()
    record.refresh_from_db()
    assert record.healed_at is not None and "503" in record.error  # staff still see what died and why


def test_a_channel_that_recovers_retries_what_died_with_it_without_staff(setup):
    _s, sim, web, listings = setup
    sim.down_status = 503
    enqueue(listings[:2])
    push_until_dead(web)
    assert set(SyncWork.objects.values_list("state", flat=True)) == {SyncWork.State.DEAD}

    sim.down_status = None
    redis_client().delete(redis_key("bucket", web.pk))
    enqueue(listings[2:])  # another listing's sale: its push succeeds and closes the circuit
    channel_push(channel_id=web.pk)
    assert {sku: sim.shown(sku) for sku in ("W-SINGLE", "W-PACK", "W-KIT")} == {
        "W-SINGLE": 30,
        "W-PACK": 10,
        "W-KIT": 10,
    }
    assert not SyncWork.objects.exists()
    assert DeadLetterRecord.objects.filter(healed_at__isnull=True).count() == 0
    assert DeadLetterRecord.objects.count() == 2


def test_a_channel_whose_work_all_died_is_probed_and_heals_when_the_platform_is_back(setup):
    _s, sim, web, listings = setup
    sim.down_status = 503
    enqueue(listings)
    push_until_dead(web)
    assert SyncWork.objects.filter(state=SyncWork.State.DEAD).count() == 3
    SyncWork.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    # Still down: the sweep's probe fails once more, dies again at once, and records nothing new.
    redis_client().delete(redis_key("bucket", web.pk))
    sync_sweep()
    assert SyncWork.objects.filter(state=SyncWork.State.PENDING).count() == 1
    channel_push(channel_id=web.pk)
    assert SyncWork.objects.filter(state=SyncWork.State.DEAD).count() == 3
    assert DeadLetterRecord.objects.count() == 3

    # Back: the next probe succeeds and every listing is pushed in the same pusher run.
    sim.down_status = None
    SyncWork.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    redis_client().delete(redis_key("bucket", web.pk))
    sync_sweep()
    channel_push(channel_id=web.pk)
    assert {sku: sim.shown(sku) for sku in ("W-SINGLE", "W-PACK", "W-KIT")} == {
        "W-SINGLE": 30,
        "W-PACK": 10,
        "W-KIT": 10,
    }
    assert not SyncWork.objects.exists()


def test_a_listing_the_platform_refuses_alone_keeps_its_backoff_when_others_succeed(scripted):
    platform = scripted().platform
    s = shop(hoodies=30, caps=10)
    channel = channel_create(
        fields={
            "code": "plat",
            "name": "Platform shop",
            "kind": Channel.Kind.WEBSHOP,
            "connector": "scripted",
            "settings": {"shop_url": "https://shop.example.com", "location_id": "gid://shopify/Location/1"},
            "credentials": {"access_token": "shpat_test"},
            "rate_per_s": 50,
            "burst": 20,
        },
        location_ids=[s.warehouse.pk],
        state="live",  # linked by hand here: pushed from the start, no go-live
    )
    good = listing(channel, s.single, "P-SINGLE", external_id="gid://item/1")
    refused = listing(channel, s.pack, "P-PACK", external_id="gid://item/2")
    platform.refuse["gid://item/2"] = "no such inventory item"
    enqueue([good, refused])
    channel_push(channel_id=channel.pk)
    row = SyncWork.objects.get(listing=refused)
    assert row.attempts == 1 and not row.channel_failure and row.next_attempt_at > timezone.now()
    before = row.next_attempt_at
    redis_client().delete(redis_key("bucket", channel.pk))
    enqueue([good])
    channel_push(channel_id=channel.pk)  # a success on the channel does not make a refused listing due
    row.refresh_from_db()
    assert row.next_attempt_at == before and row.attempts == 1


def test_while_the_platform_is_down_it_is_tried_again_at_least_every_probe_interval(setup, stockroom_knobs):
    _s, sim, web, listings = setup
    stockroom_knobs(SYNC_BACKOFF_MAX_S="600")
    stockroom_knobs(SYNC_BACKOFF_BASE_S="300")
    stockroom_knobs(SYNC_PROBE_S="5")
    sim.down_status = 503
    enqueue(listings[:1])
    channel_push(channel_id=web.pk)
    row = SyncWork.objects.get()
    assert row.channel_failure
    assert row.next_attempt_at <= timezone.now() + timedelta(seconds=5.5)
