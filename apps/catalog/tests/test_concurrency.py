"""Real threads, each on its own PostgreSQL connection, hammering the same stock levels."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from django.db import transaction
from django.db.models import Sum

from apps.catalog.errors import NegativeStockRefused
from apps.catalog.locks import levels_for_update
from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.core.testing import run_all

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 32


def ledger_sum(item, location) -> int:
    return Movement.objects.filter(item=item, location=location).aggregate(s=Sum("on_hand_delta"))["s"] or 0


def test_sales_receipts_and_counts_on_one_level(transactional_db):
    warehouse = LocationFactory(code="WH")
    item = ItemFactory(sku="HOT")
    stock_movement_record(
        location_code="WH", item_sku="HOT", kind="receipt", quantity=40, idempotency_key="open", actor="t"
    )
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(n: int) -> None:
        rng = random.Random(n)
        for step in range(6):
            kind = rng.choice(["pos_sale", "pos_sale", "pos_sale", "receipt", "count"])
            quantity = rng.randint(1, 6) if kind != "count" else rng.randint(0, 30)
            try:
                stock_movement_record(
                    location_code="WH",
                    item_sku="HOT",
                    kind=kind,
                    quantity=quantity,
                    idempotency_key=f"w{n}-{step}",
                    actor=f"worker{n}",
                )
                result = "ok"
            except NegativeStockRefused:
                result = "refused"
            with lock:
                outcomes[result] += 1

    errors = run_all(work, WORKERS)
    assert errors == []
    assert outcomes["ok"] + outcomes["refused"] == WORKERS * 6
    level = StockLevel.objects.get(item=item, location=warehouse)
    assert level.on_hand >= 0  # a warehouse never went below zero, whatever the interleaving
    assert level.on_hand == ledger_sum(item, warehouse)
    assert Movement.objects.filter(item=item).count() == 1 + outcomes["ok"]
    assert ledger_reconcile().ok


def test_multi_level_writers_in_opposite_orders_do_not_deadlock(transactional_db):
    store = LocationFactory(code="S1", kind="store", allow_negative=True)
    items = [ItemFactory(sku=f"B{n}") for n in range(3)]
    pairs = [(i.pk, store.pk) for i in items]

    def work(n: int) -> None:
        order = pairs if n % 2 else list(reversed(pairs))
        for step in range(5):
            with transaction.atomic():
                levels_for_update(order)  # sorted inside: the same lock order whatever the caller's
                movements_apply(
                    movements=[
                        MovementSpec(item_id=item, location_id=loc, kind="adjustment", on_hand_delta=1 + (n + step) % 3)
                        for item, loc in order
                    ],
                    actor=f"w{n}",
                    priority=Tier.MANUAL,
                    reason="test",
                )

    assert run_all(work, WORKERS) == []
    for item in items:
        level = StockLevel.objects.get(item=item, location=store)
        assert level.on_hand == ledger_sum(item, store)
        assert level.on_hand == sum(1 + (n + step) % 3 for n in range(WORKERS) for step in range(5))


def test_same_idempotency_key_from_many_threads_records_once(transactional_db):
    LocationFactory(code="WH")
    item = ItemFactory(sku="ONCE")

    def work(n: int) -> None:
        stock_movement_record(
            location_code="WH", item_sku="ONCE", kind="receipt", quantity=3, idempotency_key="same", actor=f"w{n}"
        )

    assert run_all(work, 16) == []
    assert Movement.objects.filter(item=item).count() == 1
    assert StockLevel.objects.get(item=item).on_hand == 3
