"""A soak on the WooCommerce fake with real Celery workers: after a random mix of store orders, cancels,
line edits, refunds, completions, the bin and deletions, with webhooks lost, repeated and reordered, till
sales in Stockroom and one outage of the store long enough for sync work to die, every order and every
quantity matches the store and the ledger sums to the levels, with no staff action.

About 30 s of traffic by default (``make test``); ``WOO_SOAK_S`` sets another length (``WOO_SOAK_S=600``
for ten minutes), ``WOO_SOAK_SEED`` another seed.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import pytest

from apps.catalog.models import Movement
from apps.catalog.services.movements import stock_movement_record
from apps.channels.models import DeadLetterRecord
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_sweep
from apps.orders import tasks
from apps.orders.models import Order, PlatformOrderRejection
from apps.orders.tests.factories import stock_invariants
from sandbox.fakes.woocommerce import WooCommerceFake
from tests.e2e.orders.test_woocommerce_e2e import (  # noqa: F401 (fixtures)
    WooShop,
    celery_worker,
    clean_sync_redis,
    fast_sync,
    first_sync,
    settled,
    shown,
    truth,
    wait_for,
    woo,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow]

SOAK_S = float(os.environ.get("WOO_SOAK_S", "30"))
SEED = int(os.environ.get("WOO_SOAK_SEED", "26"))
OUTAGE_S = 10.0  # longer than three failed pushes with their backoff in these tests: the work dies


@dataclass(frozen=True)
class Shown:
    """One order as the store holds it now, as Stockroom should have it."""

    status: str  # Stockroom's: confirmed, fulfilled, cancelled
    lines: dict[str, int]  # channel SKU -> units still sold (refunded units before shipping taken off)


def store_truth(store: WooCommerceFake, made: list[int]) -> dict[int, Shown]:
    with store.lock:
        result = {}
        for order_id in made:
            order = store.orders.get(order_id)
            if order is None or order.trashed or order.status == "cancelled":
                result[order_id] = Shown(Order.Status.CANCELLED, {})
                continue
            lines: dict[str, int] = {}
            for line in order.lines:
                refunded = sum(
                    units
                    for refund in order.refunds
                    if order.completed is None or refund.created < order.completed
                    for li, units in refund.lines
                    if li is line
                )
                if line.quantity - refunded > 0:
                    lines[line.sku] = lines.get(line.sku, 0) + line.quantity - refunded
            status = Order.Status.FULFILLED if order.status == "completed" else Order.Status.CONFIRMED
            result[order_id] = Shown(status, lines)
        return result


def out_of_step(shop: WooShop, made: list[int]) -> list[str]:
    """Orders Stockroom holds otherwise than the store shows them (status, lines, shipped units)."""
    wrong = []
    stored = {o.external_id: o for o in Order.objects.filter(channel=shop.channel).prefetch_related("lines")}
    for order_id, want in store_truth(shop.store, made).items():
        mine = stored.get(str(order_id))
        if want.status == Order.Status.CANCELLED:
            if mine is not None and mine.status != Order.Status.CANCELLED:
                wrong.append(f"{order_id}: {mine.status}, the store has it cancelled or deleted")
            continue
        if mine is None:
            wrong.append(f"{order_id}: not imported")
            continue
        have = {line.channel_sku: line.quantity for line in mine.lines.all() if line.quantity > 0}
        shipped = all(line.fulfilled_quantity == line.quantity for line in mine.lines.all())
        if mine.status != want.status or have != want.lines or (want.status == Order.Status.FULFILLED and not shipped):
            wrong.append(f"{order_id}: {mine.status} {have}, the store shows {want.status} {want.lines}")
    return wrong


class Traffic:
    """What happens on the store and at the tills, at random (one seed, one story)."""

    def __init__(self, shop: WooShop, rng: random.Random) -> None:
        self.store, self.rng = shop.store, rng
        self.refs: list[int | str] = [shop.hoodie_id, shop.kit_ref]
        self.made: list[int] = []
        self.tills = 0
        self.counts: dict[str, int] = {}

    def _open(self) -> list[int]:
        with self.store.lock:
            return [
                i
                for i in self.made
                if (o := self.store.orders.get(i)) is not None and o.status == "processing" and not o.trashed
            ]

    def step(self, *, store_up: bool) -> None:
        roll = self.rng.random()
        if not store_up or roll < 0.1:
            self.till_sale()
            return
        open_orders = self._open()
        if roll < 0.45 or not open_orders:
            lines = self.rng.sample(self.refs, self.rng.randint(1, 2))
            self.made.append(self.store.create_order([(r, self.rng.randint(1, 3)) for r in lines]))
            self._count("sale")
            return
        order_id = self.rng.choice(open_orders)
        if roll < 0.58:
            self.store.cancel_order(order_id)
            self._count("cancel")
        elif roll < 0.72:
            self.edit(order_id)
        elif roll < 0.8:
            self.refund(order_id)
        elif roll < 0.9:
            self.store.complete_order(order_id)
            self._count("complete")
        else:
            self.store.delete_order(order_id, force=self.rng.random() < 0.5)
            self._count("delete")

    def edit(self, order_id: int) -> None:
        with self.store.lock:
            order = self.store.orders[order_id]
            if order.refunds:
                return
            now = {self.store._ref(line): line.quantity for line in order.lines}
        ref = str(self.rng.choice(self.refs))
        quantity = self.rng.randint(0, 5)
        if sum(q for r, q in now.items() if r != ref) + quantity == 0:
            quantity = 2  # an order keeps at least one line
        self.store.edit_order(order_id, {ref: quantity})
        self._count("edit")

    def refund(self, order_id: int) -> None:
        with self.store.lock:
            order = self.store.orders[order_id]
            left = {
                self.store._ref(line): line.quantity
                - sum(units for refund in order.refunds for li, units in refund.lines if li is line)
                for line in order.lines
            }
        choices = [ref for ref, units in left.items() if units >= 2]
        if choices:
            self.store.refund_order(order_id, {self.rng.choice(choices): 1})
            self._count("refund")

    def till_sale(self) -> None:
        self.tills += 1
        stock_movement_record(
            location_code="WH", item_sku=self.rng.choice(["HOOD-M", "CAP"]), kind=Movement.Kind.POS_SALE,
            quantity=self.rng.randint(1, 2), idempotency_key=f"soak-till-{self.tills}", actor="till",
        )  # fmt: skip
        self._count("till")

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def beat(shop: WooShop) -> None:
    """What the beat sends: the order poll and sweep (on the worker), the sync sweep."""
    tasks.platform_orders_poll.delay(shop.channel.pk)
    tasks.platform_orders_sweep_all.delay()
    sync_sweep()


def test_soak_every_order_and_quantity_converges_after_lost_reordered_webhooks_and_an_outage(
    celery_worker,  # noqa: F811
    woo: WooShop,  # noqa: F811
    stockroom_knobs,
) -> None:
    stockroom_knobs(SYNC_PROBE_S="1")
    celery_worker(env={"SYNC_PROBE_S": "1", "ORDERS_SWEEP_AGE_S": "0"})
    first_sync(woo)
    for sku in ("HOOD-M", "CAP"):
        stock_movement_record(
            location_code="WH", item_sku=sku, kind=Movement.Kind.RECEIPT, quantity=5000,
            idempotency_key=f"soak-receipt-{sku}", actor="receiving",
        )  # fmt: skip
    wait_for(lambda: sync_sweep() is not None and settled(woo), timeout=20, every=0.5)
    rng = random.Random(SEED)
    traffic = Traffic(woo, rng)
    woo.store.hold_webhooks()  # every delivery goes through the unreliable network below
    started = time.monotonic()
    outage_at, outage_seen = SOAK_S * 0.4, False
    last_release = last_beat = started

    while (now := time.monotonic()) - started < SOAK_S:
        down = outage_at <= now - started < outage_at + OUTAGE_S
        if down != woo.store.down:
            woo.store.outage(down)
        traffic.step(store_up=not down)
        if now - last_release > 1.0:
            woo.store.release_webhooks(rng=rng, lose=0.2, repeat=0.15, keep_holding=True)
            last_release = now
        if now - last_beat > 2.0:
            beat(woo)
            last_beat = now
        if down and DeadLetterRecord.objects.exists():
            outage_seen = True
        time.sleep(rng.uniform(0.05, 0.25))

    woo.store.outage(False)
    woo.store.release_webhooks(rng=rng, lose=0.2, repeat=0.15)
    traffic_over = time.monotonic()

    def converged() -> bool:
        beat(woo)
        channel_reconcile(channel_id=woo.channel.pk)
        return not out_of_step(woo, traffic.made) and settled(woo)

    try:
        wait_for(converged, timeout=120, every=2.0)
    except AssertionError:
        pytest.fail(f"not converged: {out_of_step(woo, traffic.made)[:10]}; shown {shown(woo)}, truth {truth(woo)}")
    took = time.monotonic() - traffic_over
    lost = woo.store.lost_held
    print(f"soak {SOAK_S:.0f} s, seed {SEED}: {traffic.counts}; {lost} webhooks lost; converged {took:.1f} s after")

    assert outage_seen, "the outage did not last long enough for work to die"
    assert traffic.counts.get("sale", 0) >= 20 and woo.store.lost_held > 0
    assert shown(woo) == truth(woo)
    assert stock_invariants()["oversold"] == 0  # reserved == open reservations; the ledger sums to the levels
    assert not PlatformOrderRejection.objects.filter(resolved_at__isnull=True).exists()
