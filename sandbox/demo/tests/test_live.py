"""The living demo of `make run`, against a live server: it wires suppliers and channels and trades."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command

from apps.catalog.models import Movement, Receipt
from apps.channels.models import Channel
from apps.orders.models import Order
from apps.suppliers.models import Supplier, SupplierProduct
from apps.suppliers.selectors import feed_freshness
from sandbox.demo.live import CSV_SUPPLIER, REST_SUPPLIER, LiveDemo
from sandbox.demo.receipts import demo_receipts_due


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_wires_suppliers_and_channels_then_trades(live_server, django_user_model, tmp_path, settings):
    from apps.core.services import token_create

    settings.STOCKROOM_DROP_ROOT = tmp_path / "drop"

    call_command("loaddata", "demo_catalog", verbosity=0)
    django_user_model.objects.create_user(username="bot", is_staff=True, is_superuser=True)
    tokens = {code: token_create(channel_code=code) for code in ("shop1", "market1", "deliver1")}
    demo = LiveDemo(
        base_url=live_server.url,
        staff_token=token_create(staff_username="bot"),
        channel_tokens=tokens,
        var_dir=tmp_path,
        seed=3,
    )
    demo.wire()
    try:
        assert set(Supplier.objects.values_list("code", flat=True)) == {REST_SUPPLIER, CSV_SUPPLIER}
        assert SupplierProduct.objects.filter(supplier__code=REST_SUPPLIER).count() == 4
        # The webshop is on the Shopify fake, the marketplace on the Amazon fake, the delivery app on the push protocol.
        webshop, marketplace = Channel.objects.get(code="shop1"), Channel.objects.get(code="market1")
        assert demo.platforms is not None
        assert (webshop.connector, webshop.settings["shop_url"]) == ("shopify", demo.platforms.shopify.url)
        assert (marketplace.connector, marketplace.settings["endpoint"]) == ("amazon", demo.platforms.amazon.url)
        assert Channel.objects.get(code="deliver1").push_url == demo.simulators["deliver1"].url
        # Each listing names what it sells on its platform.
        for listing in webshop.listings.all():
            assert demo.platforms.shopify.available(listing.external_id) is not None, listing.channel_sku
        assert sorted(marketplace.listings.values_list("external_id", flat=True)) == sorted(demo.platforms.amazon_skus)
        assert list(Channel.objects.get(code="market1").channel_locations.values_list("location__code", flat=True)) == [
            "WH",
            REST_SUPPLIER,
        ]
        assert list(demo.drop.glob("bulkco-*.csv")), "the CSV supplier dropped a file"
        # Before the dashboard is looked at: both feeds taken in once, fresh, and deliveries due to receive.
        polled = demo.first_polls()
        assert set(polled) == {REST_SUPPLIER, CSV_SUPPLIER} and all("succeeded" in v for v in polled.values()), polled
        assert [r["stale"] for r in feed_freshness()] == [False, False]
        assert demo_receipts_due() == 3
        due = Receipt.objects.filter(status=Receipt.Status.EXPECTED)
        assert sorted(due.values_list("reference", flat=True)) == ["PO-DEMO-1", "PO-DEMO-2", "PO-DEMO-3"]
        assert demo_receipts_due() == 3 and due.count() == 3, "a second start adds none while they are open"

        # The Shopify shop has the warehouse and both stores as locations; the first store's tills are Shopify POS.
        assert webshop.settings["location_map"] == {
            place: [code] for code, place in demo.platforms.shopify_places.items()
        }
        assert list(demo.platforms.shopify_places) == ["WH", "S1", "S2"]
        assert demo.platforms.pos_sale("HOOD-M", 1) is not None
        till = Movement.objects.filter(kind=Movement.Kind.POS_SALE, location__code="S1", key_scope="till:shopify")
        assert [m.on_hand_delta for m in till] == [-1], "a Shopify POS sale is the store's till sale, booked once"

        stop = threading.Event()
        runner = threading.Thread(target=demo.run, args=(stop,), kwargs={"pace_s": 0.05})
        runner.start()
        stop.wait(4)
        stop.set()
        runner.join(10)
        assert not runner.is_alive()
        assert Order.objects.exists(), "shoppers ordered online"
        assert Movement.objects.filter(kind=Movement.Kind.POS_SALE).exists(), "tills sold in the stores"
    finally:
        demo.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_second_start_points_everything_at_its_new_servers_and_goes_on(
    live_server, django_user_model, tmp_path, settings
):
    """`make run` again on the same database: new ports for the fakes and the supplier feed, the same listings,
    and Shopify's order numbers go on from the orders Stockroom already has (they are unique per channel)."""
    from apps.core.services import token_create

    settings.STOCKROOM_DROP_ROOT = tmp_path / "drop"
    call_command("loaddata", "demo_catalog", verbosity=0)
    django_user_model.objects.create_user(username="bot", is_staff=True, is_superuser=True)
    tokens = {code: token_create(channel_code=code) for code in ("shop1", "market1", "deliver1")}

    def start() -> LiveDemo:
        demo = LiveDemo(
            base_url=live_server.url, staff_token=token_create(staff_username="bot"), channel_tokens=tokens,
            var_dir=tmp_path, seed=3,
        )  # fmt: skip
        demo.wire()
        return demo

    first = start()
    try:
        assert first.platforms is not None
        placed = first.platforms.shopify.create_order([("SHOP1-CAP", 1)])  # its webhook imports it at once
        assert Order.objects.filter(channel__code="shop1", external_id=str(placed["id"])).exists()
        items = dict(first.platforms.shopify_items)
    finally:
        first.stop()

    second = start()
    try:
        assert second.platforms is not None
        assert Channel.objects.get(code="shop1").settings["shop_url"] == second.platforms.shopify.url
        assert Channel.objects.get(code="market1").settings["endpoint"] == second.platforms.amazon.url
        assert Supplier.objects.get(code=REST_SUPPLIER).settings["url"] == second.acme.url  # type: ignore[union-attr]
        assert second.platforms.shopify_items == items  # the same inventory items, so the listings keep their ids
        again = second.platforms.shopify.create_order([("SHOP1-CAP", 1)])
        assert again["id"] > placed["id"]
        assert Order.objects.filter(channel__code="shop1").count() == 2
    finally:
        second.stop()
