"""Drop-ship order check: a real loopback supplier endpoint, the service directly, and one real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.catalog.models import Incident, StockLevel
from apps.catalog.tests.factories import product_of
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.core.testing import database_url
from apps.orders.models import Order
from apps.orders.services import LineRequest, order_reserve
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.order_check import OrderCheckUnavailable, order_check_request
from apps.suppliers.tasks import supplier_order_check
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso
from apps.suppliers.tests.servers import http_server, json_response

ROOT = Path(__file__).resolve().parents[3]


def _drop_ship_order(check_url: str, *, timeout_s: float = 2.0) -> tuple[Order, object]:
    supplier = make_supplier(
        "dropper", settings={"path": "/x", "order_check_url": check_url, "order_check_timeout_s": timeout_s}
    )
    mapping = make_mapping(supplier, "DS-1")
    feed_ingest(supplier=supplier, raw=csv_feed([("DS-1", 10, now_iso())]))
    channel = Channel.objects.create(code="shop", name="Shop")
    ChannelLocation.objects.create(channel=channel, location=supplier.location, priority=0)
    Listing.objects.create(channel=channel, channel_sku="SHOP-DS-1", product=product_of("DS-P", {mapping.item: 1}))
    placed = order_reserve(channel=channel, external_id="W-1", lines=[LineRequest(sku="SHOP-DS-1", quantity=3)])
    return placed.order, supplier


def _reserved(supplier) -> int:
    return StockLevel.objects.get(location=supplier.location).reserved


@pytest.mark.django_db
def test_accepted_order_keeps_its_reservation():
    with http_server() as server:
        server.handler = lambda request: json_response({"accepted": True})
        order, supplier = _drop_ship_order(f"{server.url}/check")
        assert order_check_request(order_id=order.pk, location_id=supplier.location_id) == "accepted"
    import json

    sent = json.loads(server.requests[-1].body)
    assert sent["order_id"] == order.pk and sent["lines"][0]["supplier_sku"] == "DS-1"
    assert sent["lines"][0]["quantity"] == 3
    assert _reserved(supplier) == 3


@pytest.mark.django_db
def test_refusal_releases_flags_and_raises_an_incident():
    with http_server() as server:
        server.handler = lambda request: json_response({"accepted": False, "reason": "out of stock"}, status=409)
        order, supplier = _drop_ship_order(f"{server.url}/check")
        assert order_check_request(order_id=order.pk, location_id=supplier.location_id) == "refused"
    order.refresh_from_db()
    assert order.flagged and "out of stock" in order.flag_reason
    assert _reserved(supplier) == 0
    assert Incident.objects.filter(kind=Incident.Kind.SUPPLIER_REFUSAL, reference=f"order:{order.pk}").exists()


@pytest.mark.django_db
def test_timeouts_retry_with_backoff_then_flag():
    with http_server() as server:

        def slow(request):
            time.sleep(0.6)
            return json_response({"accepted": True})

        server.handler = slow
        order, supplier = _drop_ship_order(f"{server.url}/check", timeout_s=0.1)
        with pytest.raises(OrderCheckUnavailable):
            order_check_request(order_id=order.pk, location_id=supplier.location_id)
        result = supplier_order_check.apply(args=(order.pk, supplier.location_id))
    assert result.get() == "unanswered"
    assert len(server.requests) == 1 + 1 + supplier_order_check.max_retries
    order.refresh_from_db()
    assert order.flagged
    assert _reserved(supplier) == 3  # no answer is not a refusal: the hold stays for staff to decide
    assert Incident.objects.filter(kind=Incident.Kind.SUPPLIER_REFUSAL, detail__contains="no answer").exists()


def _worker_env() -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
            "DATABASE_URL": database_url(db),
            "REDIS_URL": settings.REDIS_URL,
            "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
            "LOG_LEVEL": "INFO",
        }
    )
    return env


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_reservation_at_supplier_location_is_checked_by_a_real_worker():
    with http_server() as server:
        server.handler = lambda request: json_response({"accepted": False, "reason": "discontinued"})
        command = [
            str(Path(sys.executable).with_name("celery")), "-A", "inventory_site", "worker", "-Q", "default",
            "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
            "--hostname", f"suppliers-test-{os.getpid()}@%h",
        ]  # fmt: skip
        worker = subprocess.Popen(
            command, cwd=ROOT, env=_worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        output: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert worker.stdout is not None
            for line in worker.stdout:
                output.append(line)
                if " ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            assert ready.wait(60), "".join(output[-30:])
            order, supplier = _drop_ship_order(f"{server.url}/check")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                order.refresh_from_db()
                if order.flagged:
                    break
                time.sleep(0.2)
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(15)
    assert order.flagged, "".join(output[-30:])
    assert "discontinued" in order.flag_reason
    assert _reserved(supplier) == 0
