"""End to end with real Celery workers and the simulator: what a merchant would see on the channel."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Incident, Movement
from apps.catalog.services.incidents import incident_open
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.channels.conf import redis_key
from apps.channels.limits import redis_client
from apps.channels.models import Listing, SyncWork
from apps.channels.services.work import sync_sweep
from apps.channels.tests.conftest import FAST_SYNC, first_sync, settled, wait_for
from apps.channels.tests.factories import channel_selling, listing, shop
from sandbox.simulator import max_requests_in_window

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def sale(sku: str, quantity: int, key: str, location: str = "WH") -> None:
    stock_movement_record(
        location_code=location, item_sku=sku, kind=Movement.Kind.POS_SALE, quantity=quantity, idempotency_key=key,
        actor="till",
    )  # fmt: skip


def test_sales_reach_every_channel_through_bundles_within_seconds_under_the_rate_limit(celery_worker, simulator):
    celery_worker()
    s = shop(hoodies=40, caps=40)
    fast, slow = simulator(rate=20, burst=5), simulator(rate=2, burst=1)
    web = channel_selling("web", [s.warehouse], push_url=fast.url, secret="s3cret", rate_per_s=20, burst=5)
    market = channel_selling(
        "market", [s.warehouse], push_url=slow.url, secret="s3cret", rate_per_s=2, burst=1, batch_size=50
    )
    listings = [listing(web, s.single), listing(web, s.pack), listing(web, s.kit), listing(market, s.kit)]
    first_sync(fast, listings[:3])
    first_sync(slow, listings[3:])
    started = time.time()
    for i in range(12):  # a burst of till sales of hoodies
        sale("HOOD-M", 1, f"burst-{i}")
    waited = wait_for(lambda: fast.shown("web-KIT") == 28 and slow.shown("market-KIT") == 28, timeout=10)
    assert waited < 4, f"tier 1 took {waited:.1f} s"
    assert fast.shown("web-HOOD-M") == 28 and fast.shown("web-HOOD-3PACK") == 9
    # Coalesced: far fewer pushes than the 12 sales x 4 listings; and never over either rate.
    wait_for(lambda: settled(fast, listings[:3]) and settled(slow, listings[3:]), timeout=10)
    slow_times = [t for t in slow.accepted_times() if t >= started]
    assert len(slow_times) < 12
    assert fast.throttled == 0 and slow.throttled == 0
    assert max_requests_in_window(slow.accepted_times(), 1.0) <= 1 + 2
    assert max_requests_in_window(fast.accepted_times(), 1.0) <= 5 + 20


def test_tier_two_follows_within_its_window_and_tier_three_waits_for_the_sweep(celery_worker, simulator):
    celery_worker()
    s = shop(hoodies=40, caps=40)
    sim = simulator()
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    single = listing(web, s.single)
    first_sync(sim, [single])
    stock_movement_record(location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.ADJUSTMENT, quantity=-5,
                          idempotency_key="adj", actor="staff")  # fmt: skip
    assert wait_for(lambda: sim.shown(single.channel_sku) == 35, timeout=10) < 5
    wait_for(lambda: not SyncWork.objects.exists(), timeout=5)
    # A supplier feed (tier 3) is batched: nothing is pushed until the sweep finds it past its window.
    with transaction.atomic():
        (_level,) = levels_for_update([(s.hoodie.pk, s.warehouse.pk)])
        movements_apply(
            movements=[MovementSpec(s.hoodie.pk, s.warehouse.pk, Movement.Kind.SUPPLIER_FEED, on_hand_delta=15)],
            actor="feed", priority=Tier.BACKGROUND, reason="supplier_feed",
        )  # fmt: skip
    time.sleep(1.0)
    assert sim.shown(single.channel_sku) == 35 and SyncWork.objects.get().priority == Tier.BACKGROUND
    wait_for(lambda: (sync_sweep() is not None) and sim.shown(single.channel_sku) == 50, timeout=15, every=0.5)


def test_a_worker_killed_mid_push_loses_nothing(celery_worker, simulator):
    sim = simulator()
    s = shop(hoodies=40, caps=40)
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    single = listing(web, s.single)
    Listing.objects.filter(pk=single.pk).update(last_pushed_qty=40)
    SyncWork.objects.all().delete()
    sim.delay_s = 3.0  # the channel is slow: the push is in flight when the worker dies
    first = celery_worker()
    sale("HOOD-M", 2, "s1")
    assert sim.request_arrived.wait(10)
    first.kill()
    assert SyncWork.objects.filter(listing=single).exists()  # not acknowledged, so still pending
    sim.delay_s = 0.0
    restarted_at = time.time()
    celery_worker()
    # The lock of the dead worker expires by itself; the beat sweep finds the work.
    wait_for(
        lambda: sync_sweep() is not None and any(u.arrived_at > restarted_at and u.available == 38
                                                 for u in sim.updates(single.channel_sku)),
        timeout=20, every=0.5,
    )  # fmt: skip
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    assert Listing.objects.get(pk=single.pk).last_pushed_qty == 38


def test_a_channel_down_for_a_while_catches_up(celery_worker, simulator, stockroom_knobs):
    stockroom_knobs(SYNC_MAX_ATTEMPTS="50")
    celery_worker(env={"SYNC_MAX_ATTEMPTS": "50"})
    sim = simulator()
    s = shop(hoodies=40, caps=40)
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    listings = [listing(web, s.single), listing(web, s.pack), listing(web, s.kit)]
    first_sync(sim, listings)
    sim.down_status = 503
    for i in range(5):
        sale("HOOD-M", 1, f"down-{i}")
        sale("CAP", 1, f"cap-down-{i}")
    time.sleep(2.0)
    assert sim.shown("web-HOOD-M") == 40
    failing = SyncWork.objects.filter(state=SyncWork.State.PENDING)
    assert failing.count() == 3 and all(w.attempts >= 1 and "503" in w.last_error for w in failing)
    sim.down_status = None
    wait_for(lambda: sync_sweep() is not None and settled(sim, listings), timeout=20, every=0.5)
    assert sim.shown("web-HOOD-M") == 35 and sim.shown("web-KIT") == 35


def test_an_oversell_incident_pushes_zero_at_once(celery_worker, simulator):
    celery_worker()
    sim = simulator()
    s = shop(hoodies=40, caps=40)
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    listings = [listing(web, s.single), listing(web, s.kit), listing(web, s.cap_only)]
    first_sync(sim, listings)
    with transaction.atomic():
        incident_open(kind=Incident.Kind.OVERSELL, item_id=s.hoodie.pk, location_id=s.warehouse.pk, shortfall=3)
    assert wait_for(lambda: sim.shown("web-HOOD-M") == 0 and sim.shown("web-KIT") == 0, timeout=10) < 4
    assert sim.shown("web-CAP") == 40  # the cap alone is not affected


def lock_holder_pid(channel_id: int) -> int | None:
    """The process holding the channel's pusher lock (its token starts with host and pid)."""
    raw = redis_client().get(redis_key("lock", channel_id))
    return None if raw is None else int(raw.decode().split(":")[1])


def test_a_pusher_killed_mid_push_hands_its_channel_over_within_the_lock_ttl(celery_worker, simulator):
    """Two workers. The holder renews its lock through an answer slower than the lock's TTL (nobody else
    pushes meanwhile); killed (SIGKILL) mid-push, its channel is pushed by the other worker as soon as
    the lock lapses, not at the next sweep; and never two pushes of the channel at once."""
    ttl = float(FAST_SYNC["SYNC_LOCK_TTL_S"])
    sim = simulator()
    s = shop(hoodies=40, caps=40)
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    single = listing(web, s.single)
    Listing.objects.filter(pk=single.pk).update(last_pushed_qty=40)
    SyncWork.objects.all().delete()
    workers = {w.process.pid: w for w in (celery_worker(), celery_worker())}

    # A slow platform: each answer takes longer than the lock lives unless renewed.
    sim.delay_s = ttl + 2
    sale("HOOD-M", 1, "slow-1")
    assert sim.request_arrived.wait(10)
    assert lock_holder_pid(web.pk) in workers
    sale("HOOD-M", 1, "slow-2")  # kicks a push that finds the channel busy
    wait_for(lambda: sim.shown(single.channel_sku) == 38, timeout=4 * ttl + 10)
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    assert sim.max_in_flight == 1
    # Every kick has run (a busy push's look-again included), so none is left for a worker about to die.
    kicks = [redis_key("kick", web.pk, kind) for kind in ("now", "delayed")]
    wait_for(lambda: not redis_client().exists(*kicks), timeout=2 * ttl + 10, every=0.2)

    # Killed mid-push: the next sale reaches the channel through the other worker once the lock lapses.
    sim.delay_s = 1.0
    sim.request_arrived.clear()
    sale("HOOD-M", 1, "killed-3")
    assert sim.request_arrived.wait(10)
    holder = lock_holder_pid(web.pk)
    assert holder in workers
    workers.pop(holder).kill()
    killed_at = time.time()
    sim.delay_s = 0.0
    sale("HOOD-M", 1, "after-4")
    wait_for(lambda: sim.shown(single.channel_sku) == 36, timeout=ttl + 15, every=0.1)
    (update,) = [u for u in sim.updates(single.channel_sku) if u.available == 36]
    took = update.arrived_at - killed_at
    print(f"channel pushed by the other worker {took:.2f} s after the holder's SIGKILL (lock TTL {ttl} s)")
    assert took <= ttl + 3, took
    assert lock_holder_pid(web.pk) in (None, *workers)
    wait_for(lambda: not SyncWork.objects.exists(), timeout=10)
    assert sim.max_in_flight == 1
