"""Pushing, in-process against the simulator on loopback: protocol, rate limit, Retry-After, retries, safety."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Incident, Movement
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier
from apps.channels.conf import redis_key
from apps.channels.limits import redis_client
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.services.config import channel_watermark_set
from apps.channels.services.push import channel_push, push_body, sign
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import dead_letters_retry, sync_work_enqueue
from apps.channels.tests.factories import channel_selling, listing, shop
from sandbox.simulator import max_requests_in_window

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(simulator):
    s = shop(hoodies=30, caps=10)
    sim = simulator(rate=50, burst=20, secret="s3cret")
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    listings = [listing(web, s.single, "W-SINGLE"), listing(web, s.pack, "W-PACK"), listing(web, s.kit, "W-KIT")]
    return s, sim, web, listings


def enqueue(listings: list[Listing], priority: int = Tier.SALE, **kw: object) -> None:
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk for lst in listings], priority=priority, reason="test", **kw)


def test_push_is_signed_absolute_and_clears_the_work(setup):
    _s, sim, web, listings = setup
    enqueue(listings)
    report = channel_push(channel_id=web.pk)
    assert report.requests == 1 and report.updates == 3
    assert sim.unauthorized == 0
    assert {sku: sim.shown(sku) for sku in ("W-SINGLE", "W-PACK", "W-KIT")} == {
        "W-SINGLE": 30,
        "W-PACK": 10,
        "W-KIT": 10,
    }
    arrival = sim.updates("W-SINGLE")[0]
    assert abs(timezone.datetime.fromisoformat(arrival.as_of) - timezone.now()) < timedelta(seconds=5)
    assert not SyncWork.objects.exists()
    single = Listing.objects.get(channel_sku="W-SINGLE")
    assert single.last_pushed_qty == 30 and single.last_pushed_at is not None
    assert Channel.objects.get(pk=web.pk).last_push_at is not None


def test_signature_is_hmac_sha256_of_the_exact_body():
    from datetime import UTC, datetime

    body = push_body(channel_code="web", updates=[("A", 3)], as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert json.loads(body) == {
        "channel": "web",
        "updates": [{"sku": "A", "available": 3, "as_of": "2026-01-01T00:00:00+00:00"}],
    }
    import hashlib
    import hmac

    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_a_wrong_secret_is_refused_and_counts_as_a_failed_attempt(setup):
    _s, sim, web, listings = setup
    Channel.objects.filter(pk=web.pk).update(secret="not-the-one")
    enqueue(listings[:1])
    report = channel_push(channel_id=web.pk)
    assert sim.unauthorized == 1 and sim.shown("W-SINGLE") is None
    assert report.failures == 1
    row = SyncWork.objects.get()
    assert row.attempts == 1 and "401" in row.last_error and row.state == SyncWork.State.PENDING


def test_quantity_the_channel_already_shows_is_not_pushed_again_when_so_configured(setup, stockroom_knobs):
    stockroom_knobs(SYNC_SKIP_UNCHANGED="1")
    _s, _sim, web, listings = setup
    enqueue(listings)
    channel_push(channel_id=web.pk)
    enqueue(listings)
    report = channel_push(channel_id=web.pk)
    assert report.requests == 0 and report.skipped == 3
    assert not SyncWork.objects.exists()


def test_tiers_go_out_in_order_most_urgent_first(setup):
    _s, sim, web, listings = setup
    Channel.objects.filter(pk=web.pk).update(batch_size=1)
    enqueue([listings[2]], priority=Tier.BACKGROUND)
    enqueue([listings[1]], priority=Tier.MANUAL)
    enqueue([listings[0]], priority=Tier.SALE)
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=10))
    channel_push(channel_id=web.pk)
    assert [u.sku for u in sim.updates()] == ["W-SINGLE", "W-PACK", "W-KIT"]


def test_calm_tiers_wait_for_their_window(setup):
    _s, _sim, web, listings = setup
    enqueue([listings[2]], priority=Tier.BACKGROUND)
    report = channel_push(channel_id=web.pk)
    assert report.requests == 0 and SyncWork.objects.count() == 1  # tier 3 is batched, not pushed at once


def test_the_rate_limit_holds_for_many_batches(setup, simulator):
    s, _, web, _ = setup
    sim = simulator(rate=10, burst=3, secret="s3cret")
    Channel.objects.filter(pk=web.pk).update(push_url=sim.url, rate_per_s=10, burst=3, batch_size=1)
    products = [s.single, s.pack, s.kit, s.cap_only]
    many = [listing(web, products[i % 4], f"R-{i}") for i in range(12)]
    enqueue(many)
    started = time.monotonic()
    report = channel_push(channel_id=web.pk)
    assert report.requests == 12 and sim.throttled == 0
    times = sim.accepted_times()
    # Never more than burst + rate * window requests in any window, as the channel measures it.
    for window in (0.1, 0.5, 1.0):
        assert max_requests_in_window(times, window) <= 3 + 10 * window
    assert time.monotonic() - started >= (12 - 2) / 10 * 0.9


def test_retry_after_is_honoured(setup):
    _s, sim, web, listings = setup
    sim.down_status, sim.down_retry_after, sim.down_remaining = 429, "2", 1
    enqueue(listings[:1])
    report = channel_push(channel_id=web.pk)
    assert report.throttled == 1 and report.updates == 1
    throttled_at, accepted_at = (r["at"] for r in sim.log()["requests"])
    assert accepted_at - throttled_at >= 1.9  # nothing was sent before Retry-After passed
    assert sim.shown("W-SINGLE") == 30 and not SyncWork.objects.exists()


def test_failures_back_off_then_dead_letter_then_staff_retry_pushes(setup):
    _s, sim, web, listings = setup
    sim.down_status = 503
    enqueue(listings[:1])
    for _ in range(3):  # SYNC_MAX_ATTEMPTS=3 in tests
        SyncWork.objects.update(next_attempt_at=timezone.now())
        redis_client().delete(redis_key("bucket", web.pk))  # skip the backoff pause
        channel_push(channel_id=web.pk)
    row = SyncWork.objects.get()
    assert row.state == SyncWork.State.DEAD and row.attempts == 3 and "503" in row.last_error
    sim.down_status = None
    assert dead_letters_retry(work_ids=[row.pk]) == 1
    row.refresh_from_db()
    assert row.state == SyncWork.State.PENDING and row.attempts == 0 and row.priority == Tier.MANUAL
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(seconds=5))  # past the tier 2 window
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 30 and not SyncWork.objects.exists()


def test_watermark_holds_raises_until_orders_are_imported(setup):
    _s, sim, web, listings = setup
    single = listings[0]
    enqueue([single])
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 30
    now = timezone.now()
    channel_watermark_set(channel=web, orders_pending_until=now)
    # A receipt would raise the listing: held while the channel's orders are not imported.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=5,
                          idempotency_key="r1", actor="t")  # fmt: skip
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    report = channel_push(channel_id=web.pk)
    assert report.held >= 1 and sim.shown("W-SINGLE") == 30
    # A sale lowering it goes out even now.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=10,
                          idempotency_key="p1", actor="t")  # fmt: skip
    SyncWork.objects.update(next_attempt_at=timezone.now())
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 25
    # Imported: the raise waits no more.
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=20,
                          idempotency_key="r2", actor="t")  # fmt: skip
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 25
    channel_watermark_set(channel=web, orders_imported_until=now + timedelta(seconds=1))
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 45


def test_an_open_oversell_incident_pushes_zero_whatever_the_stock(setup):
    s, sim, web, listings = setup
    Incident.objects.create(kind=Incident.Kind.OVERSELL, item=s.hoodie, location=s.warehouse, shortfall=3)
    enqueue(listings)
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 0 and sim.shown("W-KIT") == 0 and sim.shown("W-PACK") == 0
    assert Listing.objects.get(pk=listings[0].pk).zeroed_by_incident


def test_reconciliation_repairs_drift(setup):
    _s, sim, web, listings = setup
    enqueue(listings)
    channel_push(channel_id=web.pk)
    with sim.lock:  # someone edited the quantity on the marketplace
        sim.state.shown["W-PACK"].available = 99
    report = channel_reconcile(channel_id=web.pk)
    assert report.checked == 3 and report.drifted == 1
    assert SyncWork.objects.get().listing_id == listings[1].pk
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=1))
    channel_push(channel_id=web.pk)
    assert sim.shown("W-PACK") == 10


def test_the_import_catching_up_releases_held_raises_even_when_their_recheck_has_passed(
    setup, django_capture_on_commit_callbacks
):
    _s, sim, web, listings = setup
    enqueue([listings[0]])
    channel_push(channel_id=web.pk)
    now = timezone.now()
    channel_watermark_set(channel=web, orders_pending_until=now)
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=5,
                          idempotency_key="r1", actor="t")  # fmt: skip
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    assert channel_push(channel_id=web.pk).held >= 1
    SyncWork.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=30))  # its recheck time is over
    with django_capture_on_commit_callbacks() as dispatched:
        channel_watermark_set(channel=web, orders_imported_until=now + timedelta(seconds=1))
    assert all(row.last_error == "" and row.priority <= Tier.MANUAL for row in SyncWork.objects.all())
    assert dispatched, "released work goes to the pusher at once, not at the next sweep"
    channel_push(channel_id=web.pk)
    assert sim.shown("W-SINGLE") == 35
