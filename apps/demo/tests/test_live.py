"""The living demo of `make run`, against a live server: it wires suppliers and channels and trades."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command

from apps.catalog.models import Movement
from apps.channels.models import Channel
from apps.demo.live import CSV_SUPPLIER, REST_SUPPLIER, LiveDemo
from apps.orders.models import Order
from apps.suppliers.models import Supplier, SupplierProduct


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
        assert Channel.objects.get(code="shop1").push_url == demo.simulators["shop1"].url
        assert list(Channel.objects.get(code="market1").channel_locations.values_list("location__code", flat=True)) == [
            "WH",
            REST_SUPPLIER,
        ]
        assert list(demo.drop.glob("bulkco-*.csv")), "the CSV supplier dropped a file"

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
        for simulator in demo.simulators.values():
            simulator.stop()
        demo.acme.httpd.shutdown()
