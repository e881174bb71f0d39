"""WooCommerce orders read back by id (the order truth sweep), edits, refunds, the bin and deletion for good,
and the fake's webhook faults: the connector against the fake store over loopback (no database needed)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import requests

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import ChannelRef, ConnectorError, OrderLine, PlatformOrder
from apps.channels.connectors.woocommerce import WooCommerceConnector
from apps.channels.tests.test_connector_woocommerce import Receiver
from sandbox.fakes.woocommerce import WooCommerceFake

Status = PlatformOrder.Status


@pytest.fixture
def fake() -> Iterator[WooCommerceFake]:
    store = WooCommerceFake().start()
    yield store
    store.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


@pytest.fixture
def connector() -> WooCommerceConnector:
    found = connector_named("woocommerce")
    assert isinstance(found, WooCommerceConnector)
    return found


def ref(store: WooCommerceFake) -> ChannelRef:
    return ChannelRef(id=1, code="web", settings=store.channel_settings(), credentials=store.channel_credentials())


def test_orders_get_reads_open_cancelled_binned_and_deleted_orders_back(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=50)
    open_id = fake.create_order([(mug, 2)])
    cancelled_id = fake.create_order([(mug, 1)])
    fake.cancel_order(cancelled_id)
    binned_id = fake.create_order([(mug, 3)])
    fake.delete_order(binned_id)
    gone_id = fake.create_order([(mug, 4)])
    fake.delete_order(gone_id, force=True)
    draft_id = fake.create_order([(mug, 1)], status="checkout-draft")

    asked = [str(i) for i in (open_id, cancelled_id, binned_id, gone_id, draft_id)] + ["not-a-woo-id"]
    orders = {o.external_id: o for o in connector.orders_get(ref(fake), asked)}

    assert orders[str(open_id)].status == Status.OPEN
    assert orders[str(open_id)].lines == (OrderLine(sku="MUG", quantity=2, external_id=str(mug)),)
    assert orders[str(cancelled_id)].status == Status.CANCELLED
    assert orders[str(binned_id)].status == Status.CANCELLED  # shown with status "trash"
    assert orders[str(gone_id)] == PlatformOrder(external_id=str(gone_id), status=Status.CANCELLED, lines=())
    assert str(draft_id) not in orders and "not-a-woo-id" not in orders  # nothing to say about them
    reads = fake.requests("/wc/v3/orders")
    # status=any first (any leaves the bin out), then the bin for the ids not shown: two requests in all.
    assert [r["query"]["status"] for r in reads] == ["any", "trash"]
    assert reads[1]["query"]["include"] == f"{binned_id},{gone_id}"


def test_orders_get_asks_at_most_100_ids_a_request(fake: WooCommerceFake, connector: WooCommerceConnector) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=500)
    ids = [str(fake.create_order([(mug, 1)])) for _ in range(130)]

    orders = connector.orders_get(ref(fake), ids)

    assert len(orders) == 130 and {o.status for o in orders} == {Status.OPEN}
    assert connector.orders_get_batch == 100
    assert all(len(r["query"]["include"].split(",")) <= 100 for r in fake.requests("/wc/v3/orders"))


def test_orders_get_during_an_outage_is_a_connector_error_and_says_nothing_is_cancelled(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=5)
    order_id = fake.create_order([(mug, 1)])
    fake.outage()

    with pytest.raises(ConnectorError):
        connector.orders_get(ref(fake), [str(order_id)])

    fake.outage(False)
    assert connector.orders_get(ref(fake), [str(order_id)])[0].status == Status.OPEN


def test_a_line_edit_shows_in_the_webhook_the_poll_and_the_read_back(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    cap = fake.add_product(sku="CAP", stock_quantity=20)
    order_id = fake.create_order([(mug, 2), (cap, 1)])

    fake.edit_order(order_id, {mug: 5, cap: 0})  # 2 -> 5 mugs, the cap taken off

    fake.wait_for_deliveries(2)
    channel = ref(fake)
    edited = connector.webhook_verify(channel, *receiver.received[1])
    assert edited is not None and edited.topic == "order.updated"
    assert edited.orders[0].lines == (OrderLine(sku="MUG", quantity=5, external_id=str(mug)),)
    assert connector.orders_get(channel, [str(order_id)])[0].lines == edited.orders[0].lines
    # The paid order's stock followed the edit, as WooCommerce adjusts a line's reduced stock.
    assert (fake.quantity(mug), fake.quantity(cap)) == (15, 20)


def test_refunded_units_of_an_unshipped_order_no_longer_count(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    parent = fake.add_product(sku="SHIRT")
    small = fake.add_variation(parent, sku="SHIRT-S", stock_quantity=10)
    order_id = fake.create_order([(mug, 4), (f"{parent}/{small}", 2)])

    fake.refund_order(order_id, {mug: 1, f"{parent}/{small}": 2}, reason="out of stock")

    # WooCommerce shows the refund beside unchanged lines; the refunds route gives the units.
    shown = fake.order(order_id)
    assert [li["quantity"] for li in shown["line_items"]] == [4, 2]
    assert shown["refunds"][0]["total"] == "-30.00" and shown["status"] == "processing"
    expected = (OrderLine(sku="MUG", quantity=3, external_id=str(mug)),)
    assert connector.orders_get(ref(fake), [str(order_id)])[0].lines == expected
    fake.wait_for_deliveries(2)
    hook = connector.webhook_verify(ref(fake), *receiver.received[1])
    assert hook is not None and hook.orders[0].lines == expected
    assert (fake.quantity(mug), fake.quantity(small)) == (17, 10)  # the refunded units were restocked
    # Cancelled afterwards: WooCommerce gives back what the order still held, not the refunded units again.
    fake.cancel_order(order_id)
    assert (fake.quantity(mug), fake.quantity(small)) == (20, 10)


def test_of_a_completed_order_only_refunds_made_before_it_was_completed_count(
    fake: WooCommerceFake, connector: WooCommerceConnector
) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    returned = fake.create_order([(mug, 3)], status="completed")
    time.sleep(1.1)  # WooCommerce keeps dates to the second
    fake.refund_order(returned, {mug: 1})  # after shipping: a return, the units left
    short = fake.create_order([(mug, 4)])
    fake.refund_order(short, {mug: 1})  # before shipping: that unit never leaves
    time.sleep(1.1)
    fake.complete_order(short)

    orders = {o.external_id: o for o in connector.orders_get(ref(fake), [str(returned), str(short)])}

    assert orders[str(returned)].status == Status.FULFILLED
    assert orders[str(returned)].lines == (OrderLine(sku="MUG", quantity=3, fulfilled=3, external_id=str(mug)),)
    assert orders[str(short)].lines == (OrderLine(sku="MUG", quantity=3, fulfilled=3, external_id=str(mug)),)
    cancelled = fake.create_order([(mug, 2)])
    fake.refund_order(cancelled, {mug: 1})
    fake.cancel_order(cancelled)
    before = len(fake.requests("/refunds"))
    assert connector.orders_get(ref(fake), [str(cancelled)])[0].status == Status.CANCELLED
    assert len(fake.requests("/refunds")) == before  # a cancelled order's refunds are not read


def test_a_webhook_whose_refunds_cannot_be_read_is_left_to_the_poll_and_the_sweep(
    fake: WooCommerceFake, connector: WooCommerceConnector, receiver: Receiver
) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    order_id = fake.create_order([(mug, 4)])
    fake.refund_order(order_id, {mug: 1})
    fake.wait_for_deliveries(2)
    fake.outage()

    hook = connector.webhook_verify(ref(fake), *receiver.received[1])

    assert hook is not None and hook.topic == "order.updated" and hook.orders == []


def test_held_webhooks_arrive_reversed_delete_before_create(fake: WooCommerceFake, receiver: Receiver) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    fake.hold_webhooks()
    order_id = fake.create_order([(mug, 2)])
    fake.delete_order(order_id, force=True)
    assert fake.deliveries() == []

    fake.release_webhooks(reverse=True)

    topics = [d["topic"] for d in fake.wait_for_deliveries(2)]
    assert topics == ["order.deleted", "order.created"]


def test_released_webhooks_can_be_lost_repeated_and_shuffled(fake: WooCommerceFake, receiver: Receiver) -> None:
    fake.set_webhook(receiver.url, "hook-secret")
    mug = fake.add_product(sku="MUG", stock_quantity=500)
    fake.hold_webhooks()
    for _ in range(40):
        fake.create_order([(mug, 1)])

    sent = fake.release_webhooks(rng=random.Random(7), lose=0.25, repeat=0.25)

    delivered = fake.wait_for_deliveries(sent)
    ids = [d["order_id"] for d in delivered]
    assert fake.lost_held > 0 and len(ids) > len(set(ids))  # some lost, some twice
    assert ids != sorted(ids)  # and not in the order they were made


def test_status_any_never_includes_the_bin_as_in_wc_v3(fake: WooCommerceFake) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    order_id = fake.create_order([(mug, 1)])
    fake.delete_order(order_id)
    channel = ref(fake)
    connector = connector_named("woocommerce")
    assert isinstance(connector, WooCommerceConnector)

    for status in ("any,trash", "trash,any"):
        rows = connector._call(channel, "GET", "orders", params={"status": status, "include": str(order_id)})
        assert rows == []
    rows = connector._call(channel, "GET", "orders", params={"status": "trash", "include": str(order_id)})
    assert [r["status"] for r in rows] == ["trash"]


def test_the_fake_is_driven_over_http_for_edits_refunds_deletions_and_outages(fake: WooCommerceFake) -> None:
    mug = fake.add_product(sku="MUG", stock_quantity=20)
    order_id = fake.create_order([(mug, 2)])
    base = f"{fake.url}/_fake"

    edited = requests.post(f"{base}/orders/{order_id}/edit", json={"lines": [[str(mug), 5]]}, timeout=5).json()
    refunded = requests.post(f"{base}/orders/{order_id}/refund", json={"lines": [[str(mug), 1]]}, timeout=5).json()
    assert edited["line_items"][0]["quantity"] == 5 and len(refunded["refunds"]) == 1
    assert requests.post(f"{base}/outage", json={"down": True}, timeout=5).json() == {"down": True}
    assert requests.get(f"{fake.url}/wp-json/", timeout=5).status_code == 503
    requests.post(f"{base}/outage", json={"down": False}, timeout=5)
    requests.delete(f"{base}/orders/{order_id}", json={"force": True}, timeout=5)
    assert order_id not in fake.orders and fake.quantity(mug) == 16  # 5 taken, 1 refunded and restocked
