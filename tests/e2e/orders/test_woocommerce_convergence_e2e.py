"""WooCommerce orders and quantities converge, end to end with real Celery workers and the fake store.

The store's webhooks reach the live API; workers push and run the beat's order poll and truth sweep.
What the network and the store do in real life is played by the fake: webhooks delivered in the
wrong order (``order.deleted`` before ``order.created``), lost, repeated; order edits; an outage of
the store long enough for the sync work to die. Afterwards every order and every listing is right,
with no staff action.
"""

from __future__ import annotations

import pytest

from apps.catalog.models import Movement
from apps.catalog.services.movements import stock_movement_record
from apps.channels.models import DeadLetterRecord, SyncWork
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_sweep
from apps.orders import tasks
from apps.orders.models import Order, PlatformOrderTombstone
from apps.orders.tests.factories import stock_invariants
from tests.e2e.orders.test_woocommerce_e2e import (  # noqa: F401 (fixtures)
    WooShop,
    beat,
    celery_worker,
    clean_sync_redis,
    fast_sync,
    first_sync,
    reserved,
    settled,
    shown,
    truth,
    wait_for,
    woo,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow]

SWEEP_NOW = {"ORDERS_SWEEP_AGE_S": "0"}  # the worker's sweep re-reads every open order at once


def reconcile(shop: WooShop) -> bool:
    """The beat's reconciliation: read back what the store shows, queue a push where it drifted."""
    channel_reconcile(channel_id=shop.channel.pk)
    return True


def stored(order_id: int) -> Order | None:
    return Order.objects.filter(external_id=str(order_id)).first()


def test_a_delete_that_arrives_before_its_create_reserves_nothing(celery_worker, woo: WooShop) -> None:  # noqa: F811
    celery_worker()
    first_sync(woo)
    woo.store.hold_webhooks()  # the store's queue delivers out of order
    order_id = woo.store.create_order([(woo.hoodie_id, 3)])
    woo.store.delete_order(order_id, force=True)

    woo.store.release_webhooks(reverse=True)

    deliveries = woo.store.wait_for_deliveries(2)
    assert [d["topic"] for d in deliveries] == ["order.deleted", "order.created"]
    assert all(d["status"] == 200 for d in deliveries)
    wait_for(lambda: PlatformOrderTombstone.objects.filter(external_id=str(order_id)).exists(), timeout=10)
    assert stored(order_id) is None and reserved("HOOD-M") == 0
    # The poll does not bring it back either: the store no longer has it. The store kept the 3 units it took
    # off (WooCommerce restocks on cancel, not on delete): the reconciliation puts its count right.
    wait_for(lambda: beat(woo) and reconcile(woo) and settled(woo), timeout=30, every=1.0)
    assert stored(order_id) is None and reserved("HOOD-M") == 0
    assert stock_invariants()["oversold"] == 0


def test_a_lost_cancel_is_healed_by_the_sweep(celery_worker, woo: WooShop) -> None:  # noqa: F811
    celery_worker(env=SWEEP_NOW)
    first_sync(woo)
    cancelled = woo.store.create_order([(woo.hoodie_id, 2)])
    binned = woo.store.create_order([(woo.kit_ref, 1)])
    wait_for(lambda: stored(cancelled) is not None and stored(binned) is not None, timeout=10)
    assert (reserved("HOOD-M"), reserved("CAP")) == (3, 1)
    woo.store.lose_webhooks(2)

    woo.store.cancel_order(cancelled)
    woo.store.delete_order(binned)  # to the bin: status "trash"
    woo.store.wait_for_deliveries(4)
    assert (reserved("HOOD-M"), reserved("CAP")) == (3, 1)  # nothing told Stockroom

    tasks.platform_orders_sweep_all.delay()  # what beat sends every ORDERS_SWEEP_EVERY_S

    wait_for(lambda: (reserved("HOOD-M"), reserved("CAP")) == (0, 0), timeout=20)
    assert stored(cancelled).status == stored(binned).status == Order.Status.CANCELLED  # type: ignore[union-attr]
    assert [r["query"]["status"] for r in woo.store.requests("/wc/v3/orders")][:2] == ["any", "trash"]
    wait_for(lambda: beat(woo) and settled(woo), timeout=20, every=1.0)
    assert shown(woo) == (40, 40)
    assert stock_invariants()["oversold"] == 0


def test_a_line_edit_from_two_to_five_reserves_more(celery_worker, woo: WooShop) -> None:  # noqa: F811
    celery_worker()
    first_sync(woo)
    order_id = woo.store.create_order([(woo.hoodie_id, 2), (woo.kit_ref, 1)])
    wait_for(lambda: stored(order_id) is not None and reserved("HOOD-M") == 3, timeout=10)

    woo.store.edit_order(order_id, {woo.hoodie_id: 5, woo.kit_ref: 0})

    wait_for(lambda: (reserved("HOOD-M"), reserved("CAP")) == (5, 0), timeout=10)
    order = stored(order_id)
    assert order is not None
    assert dict(order.lines.values_list("channel_sku", "quantity")) == {"WOO-HOOD": 5}
    # A second edit whose webhook is lost: the order poll brings it (5 -> 3 hoodies, 2 kits added back).
    woo.store.lose_webhooks(1)
    woo.store.edit_order(order_id, {woo.hoodie_id: 3, woo.kit_ref: 2})
    woo.store.wait_for_deliveries(3)
    assert (reserved("HOOD-M"), reserved("CAP")) == (5, 0)
    wait_for(lambda: beat(woo) and (reserved("HOOD-M"), reserved("CAP")) == (5, 2), timeout=20, every=1.0)
    woo.store.edit_order(order_id, {woo.hoodie_id: 5, woo.kit_ref: 0})
    wait_for(lambda: (reserved("HOOD-M"), reserved("CAP")) == (5, 0), timeout=10)
    wait_for(lambda: beat(woo) and settled(woo), timeout=20, every=1.0)
    assert shown(woo) == (35, 35) == truth(woo)  # the kit takes a hoodie too
    assert stock_invariants()["oversold"] == 0


def test_refunded_units_of_an_unshipped_order_are_released(celery_worker, woo: WooShop) -> None:  # noqa: F811
    celery_worker()
    first_sync(woo)
    order_id = woo.store.create_order([(woo.hoodie_id, 4)])
    wait_for(lambda: reserved("HOOD-M") == 4, timeout=10)

    woo.store.refund_order(order_id, {woo.hoodie_id: 3}, reason="customer changed their mind")

    wait_for(lambda: reserved("HOOD-M") == 1, timeout=10)
    assert stored(order_id).status == Order.Status.CONFIRMED  # type: ignore[union-attr]
    wait_for(lambda: beat(woo) and settled(woo), timeout=20, every=1.0)
    assert shown(woo) == (39, 39)
    assert stock_invariants()["oversold"] == 0


def test_after_an_outage_long_enough_for_work_to_die_every_listing_is_right_without_staff(
    celery_worker,  # noqa: F811
    woo: WooShop,  # noqa: F811
    stockroom_knobs,
) -> None:
    stockroom_knobs(SYNC_PROBE_S="1")
    celery_worker(env={"SYNC_PROBE_S": "1"})
    first_sync(woo)
    woo.store.outage()

    for n in range(3):
        stock_movement_record(
            location_code="WH", item_sku="HOOD-M", kind=Movement.Kind.POS_SALE, quantity=2,
            idempotency_key=f"till-outage-{n}", actor="till",
        )  # fmt: skip
    # The beat retries the failed pushes until they are dead letters (3 attempts in these tests).
    wait_for(lambda: sync_sweep() is not None and DeadLetterRecord.objects.exists(), timeout=30, every=0.5)
    assert SyncWork.objects.filter(state=SyncWork.State.DEAD).exists()
    assert shown(woo) == (40, 40)  # the store never heard

    woo.store.outage(False)

    waited = wait_for(lambda: sync_sweep() is not None and settled(woo), timeout=30, every=0.5)
    assert shown(woo) == (34, 34) == truth(woo)
    assert not SyncWork.objects.filter(state=SyncWork.State.DEAD).exists()
    assert DeadLetterRecord.objects.exists()  # staff still see what died and why
    assert waited < 30
