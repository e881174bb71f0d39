"""Sync work as data: fan-out through bundles and multipacks, coalescing, tiers, incidents."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import Incident, Movement
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier, incident_opened
from apps.channels import limits
from apps.channels.models import SyncWork
from apps.channels.services.work import channel_kick, sync_work_enqueue
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    s = shop()
    web = channel_selling("web", [s.warehouse])
    market = channel_selling("market", [s.store, s.warehouse])
    store_only = channel_selling("storeapp", [s.store])
    listings = {
        "web-single": listing(web, s.single),
        "web-pack": listing(web, s.pack),
        "web-kit": listing(web, s.kit),
        "web-cap": listing(web, s.cap_only),
        "market-kit": listing(market, s.kit),
        "store-single": listing(store_only, s.single),
    }
    SyncWork.objects.all().delete()
    return s, listings


def pending(listings: dict) -> dict[str, SyncWork]:
    by_id = {w.listing_id: w for w in SyncWork.objects.all()}
    return {name: by_id[lst.pk] for name, lst in listings.items() if lst.pk in by_id}


def test_a_hoodie_sale_reaches_every_listing_that_contains_it_in_every_channel_selling_from_there(world):
    _s, listings = world
    stock_movement_record(
        location_code="WH",
        item_sku="HOOD-M",
        kind=Movement.Kind.POS_SALE,
        quantity=1,
        idempotency_key="k1",
        actor="t",
    )
    work = pending(listings)
    # single, 3-pack and kit on web; the kit on market (it sells from WH too); not the cap, not the store-only app.
    assert set(work) == {"web-single", "web-pack", "web-kit", "market-kit"}
    assert {w.priority for w in work.values()} == {Tier.SALE}
    assert all(w.reason == "pos_sale" for w in work.values())


def test_the_upsert_is_one_statement_for_a_sale(world, django_assert_num_queries):
    s, _ = world
    with transaction.atomic(), django_assert_num_queries(1):
        result = sync_work_enqueue(pairs=[(s.hoodie.pk, s.warehouse.pk)], priority=Tier.SALE, reason="sale")
    assert result.listings == 4


def test_coalescing_keeps_one_row_the_most_urgent_priority_and_the_earliest_time(world):
    s, listings = world
    pair = [(s.hoodie.pk, s.warehouse.pk)]
    with transaction.atomic():
        sync_work_enqueue(pairs=pair, priority=Tier.BACKGROUND, reason="feed")
    first = pending(listings)["web-single"]
    SyncWork.objects.update(enqueued_at=timezone.now() - timedelta(minutes=2))
    with transaction.atomic():
        sync_work_enqueue(pairs=pair, priority=Tier.SALE, reason="sale")
    with transaction.atomic():
        sync_work_enqueue(pairs=pair, priority=Tier.MANUAL, reason="count")
    assert SyncWork.objects.filter(listing=listings["web-single"]).count() == 1
    row = pending(listings)["web-single"]
    assert row.priority == Tier.SALE and row.reason == "sale"
    assert row.enqueued_at < first.enqueued_at + timedelta(seconds=1) - timedelta(minutes=1)
    assert row.version == 3


def test_a_listing_reaching_zero_is_tier_one_even_from_a_calm_change(world):
    _s, listings = world
    # A count to 2 hoodies: the 3-pack reaches 0 (tier 1), the single still shows 2 (tier 2).
    stock_movement_record(
        location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.COUNT, quantity=2, idempotency_key="c1", actor="t"
    )
    work = pending(listings)
    assert work["web-pack"].priority == Tier.SALE
    assert work["web-pack"].reason == "reached_zero"
    assert work["web-single"].priority == Tier.MANUAL


def test_an_oversell_incident_queues_a_tier_one_push_for_every_listing_selling_the_item(world):
    s, listings = world
    incident = Incident.objects.create(kind=Incident.Kind.OVERSELL, item=s.cap, location=s.warehouse, shortfall=2)
    incident_opened.send(sender=Incident, incident_id=incident.pk)
    work = pending(listings)
    assert set(work) == {"web-kit", "web-cap", "market-kit"}
    assert all(w.repush and w.priority == Tier.SALE for w in work.values())


def test_a_ledger_drift_incident_pushes_nothing(world):
    s, _listings = world
    incident = Incident.objects.create(kind=Incident.Kind.LEDGER_DRIFT, item=s.cap, location=s.warehouse)
    incident_opened.send(sender=Incident, incident_id=incident.pk)
    assert not SyncWork.objects.exists()


def test_a_failed_transaction_leaves_no_sync_work(world):
    s, _ = world
    with pytest.raises(RuntimeError), transaction.atomic():
        sync_work_enqueue(pairs=[(s.hoodie.pk, s.warehouse.pk)], priority=Tier.SALE, reason="sale")
        raise RuntimeError("rolled back")
    assert not SyncWork.objects.exists()


def test_a_queued_push_that_never_starts_stops_blocking_the_channels_kicks_after_the_claim(world, stockroom_knobs):
    """A worker cut off from the network holds the push message it took (until the broker's visibility
    timeout): after SYNC_KICK_CLAIM_S the next kick (a sale, the sweep) queues another for a live worker."""
    stockroom_knobs(SYNC_KICK_CLAIM_S=0.5)
    channel_id = world[1]["web-single"].channel_id
    limits.kick_clear(channel_id, delayed=False)
    assert channel_kick(channel_id=channel_id) is True
    assert channel_kick(channel_id=channel_id) is False  # one is queued and not started: no second
    time.sleep(0.7)  # ... and it never starts
    assert channel_kick(channel_id=channel_id) is True
    limits.kick_clear(channel_id, delayed=False)
