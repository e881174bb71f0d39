"""Shopify orders and quantities converge, end to end: a real worker, the web server and the Shopify fake.

What a shop, a network and Shopify itself do between events: a cancel whose webhook is lost (the sweep
reads the order back), an order edit, a cancel delivered before its create, the same event delivered
twice under two webhook ids, fulfillments that are pending or cancelled, an outage of Shopify longer
than the retries; and a soak of all of it at random. Nobody presses a button: the test plays the beat
(the poll, the order truth sweep and the sync sweep, as often as a short schedule would send them).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.catalog.models import Item, Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import stock
from apps.channels.models import Channel, DeadLetterRecord, Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.config import channel_create, listings_sync_now
from apps.channels.tasks import sync_sweep
from apps.channels.tests.conftest import (  # noqa: F401 (fixtures)
    celery_worker,
    clean_sync_redis,
    fast_sync,
    wait_for,
)
from apps.channels.tests.factories import Shop, listing, shop
from apps.orders.models import Order, PlatformOrderRejection, Reservation, WebhookDelivery
from apps.orders.tasks import platform_orders_poll_all, platform_orders_sweep_all
from apps.orders.tests.factories import stock_invariants
from sandbox.fakes.shopify import ShopifyFake
from sandbox.fakes.shopify.store import SHIPPED, Delivery, FakeOrder

pytestmark = [pytest.mark.worker, pytest.mark.slow]

TOKEN = "shpat_converge"
SECRET = "whsec-converge"
PROBE_S = 2.0  # SYNC_PROBE_S in the worker: how often a channel whose work all died is tried again
# The worker's schedule, short: an open order not shown for 3 s is read back; the poll looks back 60 s.
WORKER_ENV = {"ORDERS_SWEEP_AGE_S": "3", "ORDERS_POLL_OVERLAP_S": "60", "SYNC_PROBE_S": str(PROBE_S)}
SOAK_S = float(os.environ.get("SHOPIFY_SOAK_S", "30"))


@dataclass
class Store:
    s: Shop
    fake: ShopifyFake
    channel: Channel
    single: Listing  # one hoodie: Shopify's variant "web-HOOD-M"
    kit: Listing  # hoodie + cap: "web-KIT"

    @property
    def listings(self) -> list[Listing]:
        return [self.single, self.kit]


@pytest.fixture
def store(live_server) -> Iterator[Store]:
    s = shop(hoodies=40, caps=40)
    hook = f"{live_server.url}/api/v1/channels/web/webhooks/shopify/"
    # A Plus-sized cost bucket: the soak polls and sweeps hundreds of orders as often as a short beat does.
    fake = ShopifyFake(
        access_token=TOKEN, webhook_url=hook, webhook_secret=SECRET, maximum_available=20000, restore_rate=1000
    ).start()
    try:
        hoodie, kit = fake.add_item("web-HOOD-M", 40), fake.add_item("web-KIT", 40)
        channel = channel_create(
            fields={
                "code": "web",
                "name": "Our Shopify store",
                "kind": Channel.Kind.WEBSHOP,
                "connector": "shopify",
                "settings": {"shop_url": fake.url, "location_id": fake.location_id},
                "credentials": {"access_token": TOKEN, "webhook_secret": SECRET},
                "rate_per_s": 50,
                "burst": 20,
            },
            location_ids=[s.warehouse.pk],
            state="live",
        )
        single = listing(channel, s.single, "web-HOOD-M", external_id=hoodie)
        kit_listing = listing(channel, s.kit, "web-KIT", external_id=kit)
        yield Store(s, fake, channel, single, kit_listing)
    finally:
        fake.stop()


class Beat:
    """The beat, as a short schedule sends it: each task every ``every`` seconds (a thread of the test)."""

    def __init__(self, tasks: dict[Callable[..., Any], float]) -> None:
        self.tasks = tasks
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        due = dict.fromkeys(self.tasks, 0.0)
        while not self.stop.wait(0.1):
            now = time.monotonic()
            for task, every in self.tasks.items():
                if now >= due[task]:
                    task.delay()  # type: ignore[attr-defined]
                    due[task] = now + every

    def __enter__(self) -> Beat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


def in_sync(store: Store) -> bool:
    truth = listings_availability([lst.pk for lst in store.listings])
    return not SyncWork.objects.exists() and all(
        store.fake.available(lst.external_id) == truth[lst.pk].available for lst in store.listings
    )


def first_sync(store: Store) -> None:
    listings_sync_now(listing_ids=[lst.pk for lst in store.listings])
    wait_for(lambda: in_sync(store), timeout=15)


def settled(store: Store, **shown: int) -> None:
    """Every listing shows its truth on Shopify. The beat's sync sweep sends what waited; a raise over a quantity
    Shopify changed waits for the order poll to vouch past that moment (Shopify's search lags 30 s behind)."""
    with Beat({sync_sweep: 0.5, platform_orders_poll_all: 2.0}):
        wait_for(
            lambda: (
                in_sync(store)
                and all(
                    store.fake.available(getattr(store, name).external_id) == units for name, units in shown.items()
                )
            ),
            timeout=50,
        )


def imported(store: Store, placed: dict[str, Any]) -> Order | None:
    return Order.objects.filter(channel=store.channel, external_id=str(placed["id"])).first()


def held(order: Order | None) -> int:
    return 0 if order is None else sum(r.open_quantity for r in Reservation.objects.filter(line__order=order))


def level(sku: str) -> tuple[int, int]:
    row = StockLevel.objects.get(item__sku=sku)
    return row.on_hand, row.reserved


# --- one case each --------------------------------------------------------------------------------


def test_a_cancel_whose_webhooks_were_lost_is_released_by_the_sweep(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    placed = store.fake.create_order([("web-HOOD-M", 3)])
    wait_for(lambda: held(imported(store, placed)) == 3, timeout=10)
    store.fake.drop_webhooks = True
    store.fake.cancel_order(placed["id"])  # orders/updated and orders/cancelled: both lost
    time.sleep(1)
    assert held(imported(store, placed)) == 3  # nothing told Stockroom
    with Beat({platform_orders_sweep_all: 1.0}):  # the sweep alone: no poll, no webhook
        waited = wait_for(lambda: imported(store, placed).status == Order.Status.CANCELLED, timeout=20)  # type: ignore[union-attr]
    assert held(imported(store, placed)) == 0 and level("HOOD-M") == (40, 0)
    assert waited < 3 + 5, f"the sweep took {waited:.1f} s (ORDERS_SWEEP_AGE_S is 3 here)"
    settled(store, single=40, kit=40)


def test_an_order_edited_from_two_to_five_units_reserves_five(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    placed = store.fake.create_order([("web-HOOD-M", 2)])
    wait_for(lambda: held(imported(store, placed)) == 2, timeout=10)
    store.fake.edit_order(placed["id"], {"web-HOOD-M": 5, "web-KIT": 1})  # orders/edited, then orders/updated
    wait_for(lambda: held(imported(store, placed)) == 5 + 2, timeout=10)  # 5 hoodies; the kit: a hoodie and a cap
    order = imported(store, placed)
    assert order is not None
    assert dict(order.lines.values_list("channel_sku", "quantity")) == {"web-HOOD-M": 5, "web-KIT": 1}
    assert level("HOOD-M") == (40, 6) and level("CAP") == (40, 1)
    store.fake.edit_order(placed["id"], {"web-KIT": 0})  # the kit taken off again
    wait_for(lambda: held(imported(store, placed)) == 5, timeout=10)
    settled(store, single=35, kit=35)


def test_a_cancel_delivered_before_its_create_reserves_nothing(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    store.fake.chaos = lambda delivery: "hold" if delivery.topic == "orders/create" else "deliver"
    placed = store.fake.create_order([("web-HOOD-M", 4)])  # its create is held back
    store.fake.cancel_order(placed["id"])  # updated and cancelled arrive first
    store.fake.chaos = None
    assert store.fake.release_held() == 1  # the create, late
    time.sleep(1)
    with Beat({platform_orders_poll_all: 1.0, platform_orders_sweep_all: 1.0}):
        time.sleep(4)  # the poll and the sweep find nothing to reopen
    order = imported(store, placed)
    assert order is None or order.status == Order.Status.CANCELLED
    assert held(order) == 0 and level("HOOD-M") == (40, 0)
    statuses = {d.status for d in store.fake.deliveries}
    assert statuses == {200}
    settled(store, single=40, kit=40)


def test_a_shipment_webhook_held_back_past_the_cancel_of_its_second_leaves_no_refusal(store, celery_worker):  # noqa: F811
    """Shopify times an order to the second: the shipment's orders/updated, overtaken by the cancel of the same
    second, carries the cancel's time. It used to be refused ("shipped, but cancelled here") and kept for staff
    though the order was right (the soak's unresolved refusal)."""
    placed = store.fake.create_order([("web-HOOD-M", 3)])
    wait_for(lambda: held(imported(store, placed)) == 3, timeout=10)
    while time.time() % 1 > 0.3:  # both changes within one second of Shopify's clock
        time.sleep(0.02)
    store.fake.chaos = lambda delivery: "hold" if delivery.topic == "orders/updated" else "deliver"
    shipment = store.fake.fulfill_order(placed["id"], {"web-HOOD-M": 1})
    store.fake.chaos = None
    cancel = store.fake.cancel_order(placed["id"])
    assert shipment["updated_at"] == cancel["updated_at"]
    wait_for(lambda: imported(store, placed).status == Order.Status.CANCELLED, timeout=10)  # type: ignore[union-attr]
    assert store.fake.release_held() == 1  # the shipment, late
    assert {d.status for d in store.fake.deliveries} == {200}
    assert not PlatformOrderRejection.objects.exists()
    assert imported(store, placed).status == Order.Status.CANCELLED  # type: ignore[union-attr]
    assert level("HOOD-M") == (39, 0)


def test_the_same_event_under_a_new_webhook_id_is_applied_once(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    placed = store.fake.create_order([("web-HOOD-M", 2)])
    wait_for(lambda: held(imported(store, placed)) == 2, timeout=10)
    create = store.fake.deliveries[0]
    store.fake.edit_order(placed["id"], {"web-HOOD-M": 5})
    wait_for(lambda: held(imported(store, placed)) == 5, timeout=10)
    # Shopify sends the create's event again, as another webhook (new X-Shopify-Webhook-Id, same event id):
    # within the same second as the edit its timestamp would not even look older.
    again = store.fake.resend_event(create)
    assert again.webhook_id != create.webhook_id and again.event_id == create.event_id and again.status == 200
    time.sleep(1)
    assert held(imported(store, placed)) == 5 and level("HOOD-M") == (40, 5)
    assert WebhookDelivery.objects.filter(channel=store.channel, topic="orders/create").count() == 1


def test_a_partial_fulfilment_counts_only_the_fulfillments_that_shipped(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    placed = store.fake.create_order([("web-HOOD-M", 5)])
    wait_for(lambda: held(imported(store, placed)) == 5, timeout=10)
    store.fake.fulfill_order(placed["id"], {"web-HOOD-M": 3}, status="PENDING")  # with the carrier, not shipped
    store.fake.fulfill_order(placed["id"], {"web-HOOD-M": 1})  # shipped
    wait_for(lambda: level("HOOD-M") == (39, 4), timeout=10)
    time.sleep(0.5)
    order = imported(store, placed)
    assert order is not None and order.status == Order.Status.PARTIALLY_FULFILLED
    assert order.lines.get().fulfilled_quantity == 1  # not 4, as "quantity - fulfillable" would say
    pending = store.fake.orders[placed["id"]].fulfillments[0].id
    store.fake.fulfillment_status(placed["id"], pending, "CANCELLED")  # the carrier gave them back
    store.fake.fulfill_order(placed["id"])  # the four left shipped
    wait_for(lambda: imported(store, placed).status == Order.Status.FULFILLED, timeout=10)  # type: ignore[union-attr]
    assert level("HOOD-M") == (35, 0)
    settled(store, single=35, kit=35)


def test_after_an_outage_longer_than_the_retries_every_listing_is_right_without_staff(store, celery_worker):  # noqa: F811
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    outage_s = 12.0
    store.fake.outage(outage_s)
    ends = time.monotonic() + outage_s
    with Beat({sync_sweep: 0.5}):
        for n in range(3):
            stock_movement_record(
                location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=1,
                idempotency_key=f"till-{n}", actor="till",
            )  # fmt: skip
            time.sleep(0.3)
        # Three attempts (SYNC_MAX_ATTEMPTS here) fail with 503 well before Shopify answers again: the work dies.
        wait_for(lambda: SyncWork.objects.filter(state=SyncWork.State.DEAD).count() == 2, timeout=outage_s - 2)
        assert time.monotonic() < ends
        assert DeadLetterRecord.objects.filter(healed_at__isnull=True, channel_failure=True).count() == 2
        assert store.fake.available(store.single.external_id) == 40  # Shopify still shows the old quantities
        time.sleep(max(0.0, ends - time.monotonic()))
        back = time.monotonic()
        wait_for(lambda: in_sync(store), timeout=PROBE_S + 15, every=0.1)
        healed = time.monotonic() - back
    assert store.fake.available(store.single.external_id) == 37 and store.fake.available(store.kit.external_id) == 37
    assert healed <= PROBE_S + 5, f"listings right {healed:.1f} s after Shopify answered again"
    assert not DeadLetterRecord.objects.filter(healed_at__isnull=True).exists()  # healed, and kept on record
    assert DeadLetterRecord.objects.count() == 2


# --- the soak ------------------------------------------------------------------------------------------


def shipped(order: FakeOrder, line: Any) -> int:
    return order.shipped(line)


def platform_truth(fake: ShopifyFake) -> dict[str, tuple[str, dict[str, tuple[int, int]]]]:
    """Each order as Shopify shows it: Stockroom's status for it and its lines (sku -> units, shipped)."""
    truth = {}
    with fake.lock:
        for order in fake.orders.values():
            lines = {
                line.sku: (line.current_quantity, min(line.current_quantity, order.shipped(line)))
                for line in order.lines
                if line.current_quantity > 0
            }
            if order.cancelled_at:
                status = Order.Status.CANCELLED
            elif lines and all(done >= units for units, done in lines.values()):
                status = Order.Status.FULFILLED
            elif any(done for _units, done in lines.values()):
                status = Order.Status.PARTIALLY_FULFILLED
            else:
                status = Order.Status.CONFIRMED
            truth[str(order.id)] = (status, lines)
    return truth


def out_of_step(store: Store) -> list[str]:
    wrong = []
    stored = {o.external_id: o for o in Order.objects.filter(channel=store.channel).prefetch_related("lines")}
    for external_id, (status, lines) in platform_truth(store.fake).items():
        mine = stored.get(external_id)
        if status == Order.Status.CANCELLED:
            if mine is not None and mine.status != Order.Status.CANCELLED:
                wrong.append(f"{external_id}: {mine.status}, Shopify cancelled")
            continue
        if mine is None:
            wrong.append(f"{external_id}: not imported")
            continue
        have = {
            line.channel_sku: (line.quantity, line.fulfilled_quantity) for line in mine.lines.all() if line.quantity
        }
        if mine.status != status or have != lines:
            wrong.append(f"{external_id}: {mine.status} {have}, Shopify {status} {lines}")
    return wrong


class Shopper:
    """Random life on the shop: sales, edits, shipments (some pending, some given back), cancels."""

    SKUS = ("web-HOOD-M", "web-KIT")

    def __init__(self, fake: ShopifyFake, seed: int) -> None:
        self.fake, self.rng = fake, random.Random(seed)
        self.actions: dict[str, int] = {}

    def _open(self) -> list[FakeOrder]:
        with self.fake.lock:
            return [
                o
                for o in self.fake.orders.values()
                if not o.cancelled_at and any(o.shipped(line) < line.current_quantity for line in o.lines)
            ]

    def step(self) -> None:
        rng, fake = self.rng, self.fake
        orders = self._open()
        action = rng.choice(["create", "create", "edit", "ship", "ship", "cancel", "settle"]) if orders else "create"
        self.actions[action] = self.actions.get(action, 0) + 1
        if action == "create":
            skus = rng.sample(self.SKUS, rng.randint(1, 2))
            fake.create_order([(sku, rng.randint(1, 3)) for sku in skus])
            return
        order = rng.choice(orders)
        if action == "edit":
            quantities = {sku: rng.randint(0, 4) for sku in self.SKUS}
            if not any(quantities.values()):
                quantities[self.SKUS[0]] = 1
            fake.edit_order(order.id, quantities)
        elif action == "ship":
            sku = rng.choice([line.sku for line in order.lines if line.current_quantity])
            fake.fulfill_order(order.id, {sku: rng.randint(1, 2)}, status=rng.choice([SHIPPED, SHIPPED, "PENDING"]))
        elif action == "cancel":
            fake.cancel_order(order.id)
        else:  # a pending fulfillment ships or is given back
            pending = [f for f in order.fulfillments if f.status == "PENDING"]
            if pending:
                fake.fulfillment_status(order.id, pending[0].id, rng.choice([SHIPPED, "CANCELLED"]))


def network(rng: random.Random) -> Callable[[Delivery], str]:
    """What becomes of a webhook: 15 % lost, 15 % held back (overtaken), 10 % the same event twice."""

    def fate(_delivery: Delivery) -> str:
        roll = rng.random()
        return "drop" if roll < 0.15 else "hold" if roll < 0.30 else "repeat" if roll < 0.40 else "deliver"

    return fate


def test_soak_random_sales_edits_shipments_cancels_lost_repeated_reordered_webhooks_and_an_outage(
    store,
    celery_worker,  # noqa: F811
):
    for item in Item.objects.all():
        stock(item, store.s.warehouse, 5000)
    celery_worker(env=WORKER_ENV)
    first_sync(store)
    seed = int(os.environ.get("SHOPIFY_SOAK_SEED", "7"))
    rng = random.Random(seed)
    shopper = Shopper(store.fake, seed)
    store.fake.chaos = network(rng)
    beat = {platform_orders_poll_all: 3.0, platform_orders_sweep_all: 2.0, sync_sweep: 0.5}
    started = time.monotonic()
    outage_at, outage_s = SOAK_S * 0.4, 12.0
    outage_done = False
    sales = 0
    n = 0
    most_wrong = 0  # orders out of step at one look during the soak (lost, held and repeated webhooks)
    with Beat(beat):
        while time.monotonic() - started < SOAK_S:
            elapsed = time.monotonic() - started
            if not outage_done and elapsed >= outage_at:
                store.fake.outage(outage_s)  # Shopify down: its API answers 503, no order is placed there
                outage_done = True
                until = time.monotonic() + outage_s
                while time.monotonic() < until:  # the shop's till keeps selling in Stockroom meanwhile
                    sales += 1
                    stock_movement_record(
                        location_code="WH", item_sku=rng.choice(["HOOD-M", "CAP"]), kind=Movement.Kind.POS_SALE,
                        quantity=1, idempotency_key=f"soak-till-{sales}", actor="till",
                    )  # fmt: skip
                    time.sleep(1.0)
                continue
            n += 1
            shopper.step()
            if rng.random() < 0.1:
                sales += 1
                stock_movement_record(
                    location_code="WH", item_sku=rng.choice(["HOOD-M", "CAP"]), kind=Movement.Kind.POS_SALE,
                    quantity=1, idempotency_key=f"soak-till-{sales}", actor="till",
                )  # fmt: skip
            if rng.random() < 0.1:
                store.fake.release_held(lambda held: rng.sample(held, len(held)))  # late, in any order
            if n % 5 == 0:
                most_wrong = max(most_wrong, len(out_of_step(store)))
            time.sleep(0.15)
        store.fake.chaos = None
        store.fake.release_held()  # the last late ones, newest first
        ended = time.monotonic()
        wait_for(lambda: not out_of_step(store), timeout=90, every=0.5)
        orders_right = time.monotonic() - ended
        wait_for(lambda: not out_of_step(store) and in_sync(store), timeout=90, every=0.5)
        settled = time.monotonic() - ended
    wrong = out_of_step(store)
    assert wrong == [], wrong[:10]
    assert most_wrong > 0  # the network did leave orders wrong for a while
    assert in_sync(store)
    assert stock_invariants()["oversold"] == 0  # and the ledger sums to every level (checked inside)
    assert not PlatformOrderRejection.objects.filter(resolved_at__isnull=True).exists()
    assert not DeadLetterRecord.objects.filter(healed_at__isnull=True).exists()
    assert DeadLetterRecord.objects.exists()  # the outage did kill work, which healed by itself
    orders = Order.objects.filter(channel=store.channel)
    assert orders.count() >= 20 and orders.filter(status=Order.Status.CANCELLED).exists()
    print(
        f"\nsoak {SOAK_S:.0f} s seed {seed}: {len(store.fake.orders)} Shopify orders, actions {shopper.actions}, "
        f"{len(store.fake.deliveries)} webhooks, {sales} till sales, at most {most_wrong} orders wrong at once; "
        f"after the soak every order right in {orders_right:.1f} s, every quantity in {settled:.1f} s"
    )
