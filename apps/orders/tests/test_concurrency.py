"""Real threads, each on its own PostgreSQL connection and transaction, racing for the same rows."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.catalog.models import Incident, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import stock
from apps.core.services import token_create
from apps.core.testing import run_all
from apps.orders.errors import InsufficientStock
from apps.orders.models import Order
from apps.orders.services import LineRequest, order_cancel, order_import, order_reserve
from apps.orders.tests.factories import channel_of, listing_of, stock_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 32


def race(fn: Callable[[int], list[str]], workers: int = WORKERS) -> Counter:
    """Run fn(worker) in threads released together; returns the outcomes, fails on any unexpected error."""
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def worker(index: int) -> None:
        result = fn(index)
        with lock:
            outcomes.update(result)

    errors = run_all(worker, workers)
    assert not errors, errors
    return outcomes


def attempt(channel, external_id: str, lines: list[LineRequest]) -> str:
    try:
        order_reserve(channel=channel, external_id=external_id, lines=lines)
        return "reserved"
    except InsufficientStock:
        return "refused"


def test_32_workers_hammering_one_sku_never_oversell(shop):
    stock(shop.hood, shop.warehouse, 50)
    stock(shop.hood, shop.store, 7)

    def buy(worker: int) -> list[str]:
        return [attempt(shop.channel, f"hot-{worker}-{n}", [LineRequest("hood", 1 + n % 2)]) for n in range(4)]

    outcomes = race(buy)
    assert outcomes["reserved"] > 0 and outcomes["refused"] > 0
    assert stock_invariants()["oversold"] == 0
    held = sum(StockLevel.objects.filter(item=shop.hood).values_list("reserved", flat=True))
    assert 57 - 1 <= held <= 57  # at most one unit can be left when only 2-unit orders remain
    assert Order.objects.count() == outcomes["reserved"]


def test_bundles_and_single_items_sharing_components(shop):
    lines = [[LineRequest("kit", 1)], [LineRequest("hood", 2)], [LineRequest("caps", 1)], [LineRequest("kit", 2)]]

    def buy(worker: int) -> list[str]:
        return [attempt(shop.channel, f"mix-{worker}-{n}", lines[(worker + n) % 4]) for n in range(3)]

    outcomes = race(buy)
    assert outcomes["reserved"] > 0
    assert stock_invariants()["oversold"] == 0
    assert outcomes["refused"] > 0  # demand far beyond the stock: the rest was refused, none oversold


def test_multi_line_orders_in_opposite_orders_do_not_deadlock(shop):
    stock(shop.hood, shop.warehouse, 400)
    stock(shop.cap, shop.warehouse, 400)
    stock(shop.hood, shop.store, 400)
    stock(shop.cap, shop.store, 400)

    def buy(worker: int) -> list[str]:
        results = []
        for n in range(5):
            forward = [LineRequest("hood", 1), LineRequest("caps", 1), LineRequest("kit", 1)]
            lines = forward if (worker + n) % 2 else list(reversed(forward))
            results.append(attempt(shop.channel, f"x-{worker}-{n}", lines))
            if n % 2:
                order_cancel(order_id=Order.objects.get(external_id=f"x-{worker}-{n}").pk)
        return results

    outcomes = race(buy)
    assert outcomes == Counter({"reserved": WORKERS * 5})
    assert stock_invariants()["oversold"] == 0


def test_imports_and_store_sales_racing_reservations(shop):
    stock(shop.hood, shop.warehouse, 40)
    stock(shop.hood, shop.store, 0)

    def act(worker: int) -> list[str]:
        results = []
        for n in range(3):
            kind = (worker + n) % 3
            if kind == 0:
                results.append(attempt(shop.channel, f"r-{worker}-{n}", [LineRequest("hood", 2)]))
            elif kind == 1:
                placed = order_import(
                    channel=shop.channel, external_id=f"m-{worker}-{n}", lines=[LineRequest("hood", 2)]
                )
                results.append("import-short" if placed.order.flagged else "import")
            else:
                stock_movement_record(
                    location_code="wh",
                    item_sku="HOOD",
                    kind="pos_sale",
                    quantity=1,
                    idempotency_key=f"pos-{worker}-{n}",
                    actor="till",
                )
                results.append("pos")
        return results

    outcomes = race(act)
    stock_invariants()  # reserved == open reservations, ledger == levels (a store sale may eat reserved stock)
    assert outcomes["pos"] == 32
    level = StockLevel.objects.get(item=shop.hood, location=shop.warehouse)
    assert level.on_hand == 40 - 32
    if outcomes["import-short"]:
        assert Incident.objects.filter(kind=Incident.Kind.OVERSELL).count() >= outcomes["import-short"]
    if level.reserved > level.on_hand:
        assert Incident.objects.filter(kind=Incident.Kind.POS_INTO_RESERVED).exists()
    # Checkout reservations were only ever accepted against free stock: none was accepted once it was gone.
    assert outcomes["reserved"] * 2 + (outcomes["import"] + outcomes["import-short"]) * 2 >= level.reserved


def test_concurrent_requests_with_the_same_idempotency_key_make_one_order(shop):
    raw = token_create(channel_code="web")
    body = {"external_id": "SAME", "lines": [{"sku": "hood", "quantity": 2}]}

    def call(worker: int) -> list[str]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        response = client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="one-key")
        return [str(response.status_code)]

    outcomes = race(call, workers=8)
    assert outcomes == Counter({"201": 8})
    assert Order.objects.count() == 1
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).reserved == 2


def test_concurrent_requests_reusing_one_key_with_other_bodies_make_one_order(shop):
    """Each body names its own order: the one statement that writes an order also records the key,
    so a call whose key another holds writes nothing at all and is told 422."""
    raw = token_create(channel_code="web")

    def call(worker: int) -> list[str]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        body = {"external_id": f"OTHER-{worker}", "lines": [{"sku": "hood", "quantity": 1}]}
        response = client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
        return [str(response.status_code)]

    outcomes = race(call, workers=8)
    assert outcomes == Counter({"201": 1, "422": 7})
    assert Order.objects.count() == 1
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).reserved == 1
    assert stock_invariants()["oversold"] == 0


def test_a_second_channel_races_the_first_for_shared_stock(shop):
    marketplace = channel_of("market", [shop.store, shop.warehouse])
    listing_of(marketplace, "HD", shop.hood_product)
    channels = [shop.channel, marketplace]

    def buy(worker: int) -> list[str]:
        channel = channels[worker % 2]
        sku = "hood" if channel is shop.channel else "HD"
        return [attempt(channel, f"c-{worker}-{n}", [LineRequest(sku, 1)]) for n in range(2)]

    outcomes = race(buy)
    assert outcomes["reserved"] == 15
    assert stock_invariants()["oversold"] == 0


def test_platform_edits_racing_reservations_of_the_same_sku_never_oversell(shop):
    """Imported orders edited up and down (kit lines too: hoodies and caps) while checkouts reserve hoodies."""
    from apps.orders.services.lifecycle import order_lines_change

    stock(shop.hood, shop.warehouse, 30)  # with the store's 5: less than edits and checkouts want together
    imported = [
        order_import(channel=shop.channel, external_id=f"edit-{n}", lines=[LineRequest("hood", 1)]).order.pk
        for n in range(8)
    ]
    sizes = [[3, 1, 6, 0], [5, 2, 4, 1], [2, 7, 1, 3], [6, 0, 2, 5]]

    def work(worker: int) -> list[str]:
        if worker % 2 == 0:
            order_id = imported[worker // 2 % len(imported)]
            outcomes = []
            for step, units in enumerate(sizes[worker // 2 % len(sizes)]):
                lines = [LineRequest("hood", units)] if units else [LineRequest("kit", 1)]
                if step % 2:
                    lines.append(LineRequest("caps", 1))
                changed = order_lines_change(order_id=order_id, lines=lines, actor="platform edit")
                outcomes.append("edited" if changed.changed else "same")
            return outcomes
        return [attempt(shop.channel, f"checkout-{worker}-{n}", [LineRequest("hood", 2)]) for n in range(3)]

    outcomes = race(work, workers=16)
    assert outcomes["edited"] > 0 and outcomes["reserved"] + outcomes["refused"] == 24
    assert stock_invariants()["oversold"] == 0  # and reserved == open reservations, the ledger sums to the levels
    for order in Order.objects.filter(external_id__startswith="edit-"):
        for line in order.lines.all():  # every unit of a line is held or known short, never both, never neither
            by_item: dict[int, int] = {}
            for r in line.reservations.all():
                by_item[r.item_id] = by_item.get(r.item_id, 0) + r.open_quantity // r.per_unit
            assert all(held + line.unallocated_quantity == line.quantity for held in by_item.values())
