"""Hold expiry racing real order placement, cancels and a pusher: no deadlock, every lapsed hold released."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.catalog.tests.factories import stock
from apps.channels.services.push import channel_push
from apps.channels.tests.factories import channel_selling, listing, shop
from apps.core.testing import run_all
from apps.orders.errors import InsufficientStock
from apps.orders.locks import hold_expiry_run_lock
from apps.orders.models import Order
from apps.orders.services import LineRequest, hold_release_expired, order_cancel, order_reserve
from apps.orders.tests.factories import stock_invariants
from sandbox.simulator import ChannelSimulator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PLACERS = 6


@pytest.fixture
def simulator() -> Iterator[ChannelSimulator]:
    sim = ChannelSimulator(rate=500, burst=200, secret="s3cret").start()
    yield sim
    sim.stop()


def deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def lapse(order_id: int) -> None:
    """The hold's time is up (holds are at least a minute long; the test cannot wait that long)."""
    Order.objects.filter(pk=order_id, status=Order.Status.RESERVED).update(expires_at=timezone.now())


def test_expiry_placement_and_pusher_never_deadlock_and_every_lapsed_hold_goes(simulator):
    s = shop(hoodies=400, caps=400)
    stock(s.hoodie, s.store, 200)
    stock(s.cap, s.store, 200)
    web = channel_selling("web", [s.warehouse, s.store], push_url=simulator.url, secret="s3cret")
    market = channel_selling("market", [s.store, s.warehouse], push_url=simulator.url, secret="s3cret")
    for channel in (web, market):
        listing(channel, s.single, f"{channel.code}-1")
        listing(channel, s.pack, f"{channel.code}-3")
        listing(channel, s.kit, f"{channel.code}-K")
        listing(channel, s.cap_only, f"{channel.code}-C")
    skus = ["1", "3", "K", "C"]
    before = deadlocks()
    placing = threading.Event()
    placing.set()
    placers_left = [PLACERS]
    counter = threading.Lock()
    expiry_runs = []

    def expiry() -> None:
        while placing.is_set():
            expiry_runs.append(hold_release_expired(batch=5))
            time.sleep(0.05)

    def pusher() -> None:
        while placing.is_set():
            for channel in (web, market):
                channel_push(channel_id=channel.pk)
            time.sleep(0.02)

    def placer(n: int) -> None:
        channel = (web, market)[n % 2]
        try:
            for k in range(30):
                # several lines in a different order each time: the levels a batch of expiries locks overlap
                picked = [skus[(n + k + j) % 4] for j in range(1 + k % 3)]
                lines = [
                    LineRequest(f"{channel.code}-{sku}", 1 + (k + j) % 2) for j, sku in enumerate(dict.fromkeys(picked))
                ]
                try:
                    order = order_reserve(channel=channel, external_id=f"p{n}-{k}", lines=lines).order
                except InsufficientStock:
                    continue
                if k % 5 == 4:
                    order_cancel(order_id=order.pk)
                else:
                    lapse(order.pk)
        finally:
            with counter:
                placers_left[0] -= 1
                if placers_left[0] == 0:
                    placing.clear()

    def role(index: int) -> None:
        if index == 0:
            expiry()
        elif index == 1:
            pusher()
        else:
            placer(index - 2)

    errors = run_all(role, PLACERS + 2)
    assert not errors, errors  # a deadlock is a DeadlockDetected error in the thread that lost
    hold_release_expired()
    assert sum(expiry_runs) > 0  # expiry did run while orders were placed and pushed
    assert not Order.objects.filter(status=Order.Status.RESERVED, expires_at__lte=timezone.now()).exists()
    assert Order.objects.filter(status=Order.Status.EXPIRED).count() >= sum(expiry_runs)
    assert sum(StockLevel.objects.values_list("reserved", flat=True)) == 0  # all stock sellable again
    assert stock_invariants()["oversold"] == 0
    assert deadlocks() == before


def test_a_second_run_exits_at_once_while_one_is_going():
    with hold_expiry_run_lock() as first:
        assert first
        started = time.monotonic()
        result: list[int] = []

        def second() -> None:
            try:
                result.append(hold_release_expired(now=timezone.now() + timedelta(days=1)))
            finally:
                connection.close()

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=10)
        assert result == [0] and time.monotonic() - started < 5
    assert hold_release_expired() == 0  # the lock is free again
