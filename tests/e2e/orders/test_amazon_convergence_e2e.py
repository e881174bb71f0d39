"""Amazon orders and quantities converge, end to end: a real Celery worker, the real poller, order truth sweep
and push engine, the SP-API fake on loopback speaking Orders 2026-01-01.

Orders come through ``searchOrders``; a cancel or a quantity change that no poll brought is applied by the
sweep (``getOrder``); an Amazon-fulfilled order on a later page is never imported; after an outage long
enough for the sync work to die every listing is right again with no staff action; JSON_LISTINGS_FEED
submissions keep to Amazon's 5 per 5 minutes. The soak (``AMAZON_SOAK_S``, 30 s by default) mixes all of it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.db.models import Sum

from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import product_of
from apps.channels.models import Channel, DeadLetterRecord, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.config import channel_create, listings_sync_now
from apps.channels.services.work import sync_sweep
from apps.channels.tests.conftest import celery_worker, clean_sync_redis, fast_sync, wait_for  # noqa: F401
from apps.channels.tests.factories import Shop, listing, shop
from apps.orders import tasks
from apps.orders.models import Order
from apps.orders.tests.factories import stock_invariants
from sandbox.fakes.amazon import AmazonFake

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# The worker sweeps every open order at once and probes a dead channel every second.
WORKER_ENV = {"ORDERS_SWEEP_AGE_S": "0", "SYNC_PROBE_S": "1"}
# Amazon grants some sellers more than its default usage plans: polling every second needs it here.
FAST_ORDERS = {"searchOrders": (2.0, 40), "getOrder": (10.0, 60)}
SKUS = ("AMZ-HOOD-M", "AMZ-KIT")


@dataclass
class World:
    fake: AmazonFake
    stock: Shop
    channel: Channel
    hoodie: Listing  # seller SKU AMZ-HOOD-M: one hoodie
    kit: Listing  # seller SKU AMZ-KIT: a hoodie and a cap


@pytest.fixture
def world(transactional_db: None) -> Iterator[Callable[..., World]]:
    fakes: list[AmazonFake] = []

    def make(*, hoodies: int = 30, caps: int = 10, rates: dict | None = None, **kwargs: object) -> World:
        fake = AmazonFake(settle_s=1.0, rates=rates, **kwargs).start()  # type: ignore[arg-type]
        fakes.append(fake)
        fake.add_listing("AMZ-HOOD-M", 0, product_type="SWEATSHIRT")
        fake.add_listing("AMZ-KIT", 0, product_type="SWEATSHIRT")
        s = shop(hoodies=hoodies, caps=caps)
        config = fake.channel_settings()
        channel = channel_create(
            fields={
                "code": "amazon-us",
                "name": "Amazon.com",
                "kind": Channel.Kind.MARKETPLACE,
                "connector": "amazon",
                "settings": config["settings"],
                "credentials": config["credentials"],
                "rate_per_s": 20,
                "burst": 10,
            },
            location_ids=[s.warehouse.pk],
            state="live",
        )
        hoodie = listing(channel, s.single, "amz-hoodie", external_id="AMZ-HOOD-M")
        kit = listing(channel, s.kit, "amz-kit", external_id="AMZ-KIT")
        return World(fake, s, channel, hoodie, kit)

    yield make
    for fake in fakes:
        fake.stop()


def level(sku: str) -> tuple[int, int]:
    found = StockLevel.objects.get(item__sku=sku, location__code="WH")
    return found.on_hand, found.reserved


def right_on_amazon(w: World, listings: list[Listing] | None = None) -> bool:
    listings = listings or [w.hoodie, w.kit]
    truth = listings_availability([x.pk for x in listings])
    return all(w.fake.quantity(x.external_id or x.channel_sku) == truth[x.pk].available for x in listings)


class Beat:
    """What celery beat sends, a little faster: the order poll, the order truth sweep and the sync sweep."""

    def __init__(self, w: World, every: float = 1.0) -> None:
        self.w, self.every, self.last = w, every, 0.0

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        tasks.platform_orders_poll.delay(self.w.channel.pk)
        tasks.platform_orders_sweep_all.delay()
        sync_sweep()

    def until(self, condition: Callable[[], object], timeout: float = 30.0) -> float:
        def done() -> object:
            if condition():
                return True
            self()
            return False

        return wait_for(done, timeout=timeout, every=0.1)


def first_sync(w: World) -> None:
    listings_sync_now(listing_ids=[w.hoodie.pk, w.kit.pk])
    wait_for(lambda: right_on_amazon(w) and not SyncWork.objects.exists(), timeout=15)


def stored(w: World, order_id: str) -> Order | None:
    return Order.objects.filter(channel=w.channel, external_id=order_id).first()


def test_orders_come_by_search_and_the_sweep_applies_a_cancel_and_a_quantity_change(celery_worker, world):  # noqa: F811
    w = world()
    celery_worker(env=WORKER_ENV)
    first_sync(w)
    cancelled = w.fake.create_order([("AMZ-HOOD-M", 3)])
    changed = w.fake.create_order([("AMZ-HOOD-M", 1), ("AMZ-KIT", 1)])
    only_poll = Beat(w)
    only_poll.until(lambda: stored(w, cancelled) and stored(w, changed))
    assert level("HOOD-M") == (30, 5) and level("CAP") == (10, 1)
    assert w.fake.requests("searchOrders") and not w.fake.requests("getOrders")
    searched = len(w.fake.requests("searchOrders"))

    # No poll from here on: what Stockroom learns, it learns by the sweep's getOrder.
    w.fake.cancel_order(cancelled)
    w.fake.change_order(changed, "AMZ-HOOD-M", 6)
    wait_for(
        lambda: tasks.platform_orders_sweep_all.delay() and level("HOOD-M") == (30, 7) and level("CAP") == (10, 1)
        and stored(w, cancelled).status == Order.Status.CANCELLED,  # type: ignore[union-attr]
        timeout=20,
        every=1.0,
    )  # fmt: skip
    assert len(w.fake.requests("searchOrders")) == searched and w.fake.requests("getOrder")
    lines = {line.channel_sku: line.quantity for line in stored(w, changed).lines.all()}  # type: ignore[union-attr]
    assert sorted(lines.values()) == [1, 6]
    wait_for(lambda: right_on_amazon(w), timeout=15)
    assert stock_invariants()["oversold"] == 0


def test_an_amazon_fulfilled_order_on_a_later_page_is_never_imported(celery_worker, world):  # noqa: F811
    w = world(hoodies=300, rates=FAST_ORDERS)
    celery_worker(env=WORKER_ENV)
    ours = [w.fake.create_order([("AMZ-HOOD-M", 1)]) for _ in range(104)]
    theirs = [w.fake.create_order([("AMZ-HOOD-M", 2)], fulfillment_channel="AFN") for _ in range(6)]
    ours.append(w.fake.create_order([("AMZ-HOOD-M", 1)]))
    Beat(w).until(lambda: Order.objects.filter(channel=w.channel).count() >= len(ours))
    time.sleep(2.0)
    Beat(w, every=0)()
    time.sleep(2.0)

    imported = set(Order.objects.filter(channel=w.channel).values_list("external_id", flat=True))
    assert imported == set(ours) and not imported & set(theirs)
    assert level("HOOD-M") == (300, len(ours))
    pages = [r["query"] for r in w.fake.requests("searchOrders") if "paginationToken" in r["query"]]
    assert pages and all(q["fulfilledBy"] == ["MERCHANT"] for q in pages)


def test_after_an_outage_long_enough_for_work_to_die_every_listing_is_right_without_staff(celery_worker, world):  # noqa: F811
    w = world(rates=FAST_ORDERS)
    celery_worker(env=WORKER_ENV)
    first_sync(w)
    w.fake.set_outage(True)
    for n in range(3):
        stock_movement_record(
            location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=1,
            idempotency_key=f"till-{n}", actor="till",
        )  # fmt: skip
    placed = w.fake.create_order([("AMZ-KIT", 2)])  # sold on Amazon while nobody can read it
    beat = Beat(w)  # the beat goes on: retries, then probes of the dead channel, all failing
    beat.until(lambda: DeadLetterRecord.objects.filter(healed_at__isnull=True).count() == 2, timeout=30)
    assert all("503" in r.error for r in DeadLetterRecord.objects.all())  # staff see what died and why
    assert not right_on_amazon(w) and stored(w, placed) is None

    w.fake.set_outage(False)
    took = beat.until(
        lambda: stored(w, placed) is not None and right_on_amazon(w) and not SyncWork.objects.exists(), timeout=40
    )

    assert level("HOOD-M") == (27, 2) and level("CAP") == (10, 2)
    assert w.fake.quantity("AMZ-HOOD-M") == 25 and w.fake.quantity("AMZ-KIT") == 8
    assert took < 30, f"took {took:.1f} s after Amazon came back"
    assert stock_invariants()["oversold"] == 0


def test_listings_feeds_keep_to_amazons_five_per_five_minutes(celery_worker, world):  # noqa: F811
    w = world(hoodies=100, rates={"createFeed": (5.0, 30)}, feed_processing_s=0.2)
    hoodie = w.stock.hoodie
    many = [listing(w.channel, product_of(f"HOOD-V{n}", {hoodie: 1}), f"amz-v{n}") for n in range(30)]
    for n in range(30):
        w.fake.add_listing(f"amz-v{n}", 0, product_type="SWEATSHIRT")
    celery_worker(env=WORKER_ENV)
    listings_sync_now(listing_ids=[x.pk for x in many])
    beat = Beat(w)
    for n in range(6):  # six bulk changes of every variant within seconds
        sent = min(n + 1, 4)  # the first sync's feed, then one per change until the budget is spent
        wait_for(lambda sent=sent: len(w.fake.feed_submissions()) >= sent, timeout=20)
        stock_movement_record(
            location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.RECEIPT, quantity=1,
            idempotency_key=f"receipt-{n}", actor="receiving",
        )  # fmt: skip
        beat()

    # The fifth feed waits for Amazon's budget to refill (one a minute), then carries the latest numbers.
    took = beat.until(lambda: right_on_amazon(w, many) and not SyncWork.objects.exists(), timeout=120)
    feeds = w.fake.feed_submissions()
    assert len(feeds) == 5 and w.fake.throttled("createFeed") == 0
    assert feeds[-1] - feeds[0] > 45  # never five in a burst beyond the bucket: the fifth a minute later
    assert not DeadLetterRecord.objects.exists()
    print(f"feeds at {[round(f - feeds[0], 1) for f in feeds]} s; converged in {took:.1f} s")


# --- the soak --------------------------------------------------------------------------------------

EXPECTED = {
    "Pending": set(Order.OPEN_STATUSES),
    "Unshipped": {Order.Status.CONFIRMED},
    "PartiallyShipped": {Order.Status.PARTIALLY_FULFILLED},
    "Shipped": {Order.Status.FULFILLED},
    "Canceled": {Order.Status.CANCELLED},
}


def mismatches(w: World) -> list[str]:
    found = []
    with w.fake.lock:
        orders = {o.order_id: o for o in w.fake.orders.values() if o.fulfillment_channel == "MFN"}
        snapshot = {
            oid: (o.status, sum(i.ordered for i in o.items), sum(i.shipped for i in o.items))
            for oid, o in orders.items()
        }
    for oid, (status, ordered, shipped) in snapshot.items():
        order = stored(w, oid)
        if order is None:
            if status != "Canceled":  # cancelled before any poll saw it: kept as a tombstone, nothing to hold
                found.append(f"{oid}: not imported")
            continue
        if order.status not in EXPECTED[status]:
            found.append(f"{oid}: {order.status}, Amazon {status}")
        elif status != "Canceled":
            sums = order.lines.aggregate(q=Sum("quantity"), f=Sum("fulfilled_quantity"))
            if (sums["q"], sums["f"]) != (ordered, shipped):
                found.append(f"{oid}: {sums}, Amazon ordered {ordered} shipped {shipped}")
    afn = Order.objects.filter(channel=w.channel).exclude(external_id__in=list(snapshot)).count()
    if afn:
        found.append(f"{afn} orders imported that are not the seller's")
    if not right_on_amazon(w):
        found.append("a listing is wrong on Amazon")
    return found


def test_soak_random_orders_cancels_changes_sales_and_an_outage_converge(celery_worker, world):  # noqa: F811
    seconds = float(os.environ.get("AMAZON_SOAK_S", "30"))
    rng = random.Random(int(os.environ.get("AMAZON_SOAK_SEED", "26")))
    w = world(hoodies=400, caps=200, rates=FAST_ORDERS)
    celery_worker(env=WORKER_ENV)
    first_sync(w)
    beat = Beat(w)
    placed: list[str] = []
    counts = dict.fromkeys(("orders", "afn", "cancels", "changes", "ships", "sales", "outages"), 0)
    started = time.monotonic()
    outage_at = started + seconds * rng.uniform(0.3, 0.5)
    outage_s = min(20.0, seconds / 5)
    while (now := time.monotonic()) < started + seconds:
        w.fake.set_outage(outage_at <= now < outage_at + outage_s)
        if outage_at <= now and counts["outages"] == 0:
            counts["outages"] = 1
        roll = rng.random()
        open_ids = [oid for oid in placed if w.fake.orders[oid].status in ("Pending", "Unshipped")]
        if roll < 0.3:
            lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(SKUS, rng.randint(1, 2))]
            placed.append(w.fake.create_order(lines, status=rng.choice(("Pending", "Unshipped", "Unshipped"))))
            counts["orders"] += 1
        elif roll < 0.35:
            w.fake.create_order([("AMZ-HOOD-M", 1)], fulfillment_channel="AFN")
            counts["afn"] += 1
        elif roll < 0.5 and open_ids:
            w.fake.cancel_order(rng.choice(open_ids))
            counts["cancels"] += 1
        elif roll < 0.65 and open_ids:
            oid = rng.choice(open_ids)
            item = rng.choice(w.fake.orders[oid].items)
            w.fake.change_order(oid, item.sku, rng.randint(1, 5))
            counts["changes"] += 1
        elif roll < 0.75 and open_ids:
            oid = rng.choice(open_ids)
            w.fake.set_order_status(oid, "Unshipped")
            w.fake.ship_order(oid, {w.fake.orders[oid].items[0].sku: 1} if rng.random() < 0.5 else None)
            counts["ships"] += 1
        else:
            stock_movement_record(
                location_code="WH", item_sku=rng.choice(("HOOD-M", "CAP")), kind=Movement.Kind.POS_SALE,
                quantity=1, idempotency_key=f"till-{counts['sales']}", actor="till",
            )  # fmt: skip
            counts["sales"] += 1
        beat()
        time.sleep(rng.uniform(0.05, 0.4))
    w.fake.set_outage(False)

    try:
        took = beat.until(lambda: not mismatches(w) and not SyncWork.objects.exists(), timeout=90)
    except AssertionError:
        work = list(SyncWork.objects.values_list("listing__channel_sku", "state", "attempts", "last_error"))
        from apps.orders.models import OrderEvent, PlatformOrderRejection

        missing = [m.split(":")[0] for m in mismatches(w) if "not imported" in m]
        detail = {
            oid: (
                vars(w.fake.orders[oid]),
                list(PlatformOrderRejection.objects.filter(external_id=oid).values()),
                list(OrderEvent.objects.filter(external_id=oid).values("type", "status", "detail")),
            )
            for oid in missing
        }
        w.channel.refresh_from_db()
        raise AssertionError(
            f"not converged: {mismatches(w)[:10]}; work {work}; {counts}; {detail}; "
            f"watermark {w.channel.orders_imported_until}"
        ) from None

    assert mismatches(w) == []
    assert stock_invariants()["oversold"] == 0  # reserved == open reservations; the ledger sums to the levels
    assert counts["orders"] > 10 and counts["outages"] == 1, counts
    print(f"amazon soak {seconds:.0f} s: {counts}; converged {took:.1f} s after the last change")
