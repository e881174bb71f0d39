"""A supplier's addresses against the outbound rule and the credential binding, from the attacker's side:
a staff user who may edit suppliers must not send a supplier's stored secret to an address of their
choosing, nor make Stockroom poll an internal service."""

from __future__ import annotations

import json

import pytest

from apps.catalog.tests.factories import product_of
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.core.testing import admin_form
from apps.core.tests.servers import echo, http_server
from apps.orders.services import LineRequest, order_reserve
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.order_check import OrderCheckUnavailable, order_check_request
from apps.suppliers.services.polling import supplier_poll
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso
from apps.suppliers.tests.servers import sftp_server

pytestmark = pytest.mark.django_db

SECRET = "supplier-bearer-7f3a9c21"


def rest_supplier(url: str, **settings: object) -> Supplier:
    return make_supplier(
        "acme", connector=Supplier.Connector.REST, settings={"url": url, "attempts": 1, **settings}, secret=SECRET
    )


@pytest.mark.parametrize("key", ["url", "order_check_url"])
def test_moving_a_suppliers_address_without_its_secret_is_refused(staff_api, key):
    with http_server() as own, http_server() as attacker:
        supplier = rest_supplier(f"{own.url}/feed", order_check_url=f"{own.url}/check")
        moved = {**supplier.settings, key: f"{attacker.url}/collect"}
        refused = staff_api.patch("/api/v1/suppliers/acme/", {"settings": moved}, format="json")
        assert refused.status_code == 400, refused.content
        assert refused.json()["code"] == "credentials_required" and refused.json()["field"] == f"settings.{key}"
        supplier.refresh_from_db()
        assert supplier.settings[key] != moved[key]
        supplier_poll(supplier_id=supplier.pk)
        assert attacker.seen == []
        again = {"settings": moved, "secret": "new-one-123"}
        moved_ok = staff_api.patch("/api/v1/suppliers/acme/", again, format="json")
        assert moved_ok.status_code == 200, moved_ok.content
    supplier.refresh_from_db()
    assert supplier.settings[key] == moved[key] and supplier.secret == "new-one-123"


def test_other_supplier_settings_change_freely(staff_api):
    supplier = rest_supplier("https://feeds.example.com/acme")
    changed = {**supplier.settings, "items_key": "products"}
    assert staff_api.patch("/api/v1/suppliers/acme/", {"settings": changed}, format="json").status_code == 200


def test_the_admin_refuses_a_new_url_without_the_secret(admin_client):
    supplier = rest_supplier("https://feeds.example.com/acme")
    url = f"/admin/suppliers/supplier/{supplier.pk}/change/"
    form = admin_form(admin_client, url)
    form["settings"] = json.dumps({**supplier.settings, "url": "https://collector.example.net/"})
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "secret" in " ".join(response.context["adminform"].form.errors["settings"])
    supplier.refresh_from_db()
    assert supplier.settings["url"] == "https://feeds.example.com/acme"
    form["new_secret"] = "typed-again-456"
    assert admin_client.post(url, form).status_code == 302
    supplier.refresh_from_db()
    assert supplier.settings["url"] == "https://collector.example.net/" and supplier.secret == "typed-again-456"


def test_polling_an_internal_address_is_refused_once_not_retried(settings):
    settings.STOCKROOM_OUTBOUND_ALLOW = []
    with http_server(echo(200)) as internal:
        supplier = rest_supplier(f"{internal.url}/metrics", attempts=4, backoff_s=2)
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert internal.seen == []
    assert run.status == FeedRun.Status.FAILED
    assert "outbound request refused" in run.error and "loopback" in run.error
    assert (run.finished_at - run.started_at).total_seconds() < 2  # no backoff: a refusal is not transient


def _drop_ship_order(check_url: str):
    supplier = make_supplier("dropper", settings={"path": "/x", "order_check_url": check_url}, secret=SECRET)
    mapping = make_mapping(supplier, "DS-1")
    feed_ingest(supplier=supplier, raw=csv_feed([("DS-1", 10, now_iso())]))
    channel = Channel.objects.create(code="shop", name="Shop")
    ChannelLocation.objects.create(channel=channel, location=supplier.location, priority=0)
    Listing.objects.create(channel=channel, channel_sku="SHOP-DS-1", product=product_of("DS-P", {mapping.item: 1}))
    placed = order_reserve(channel=channel, external_id="W-1", lines=[LineRequest(sku="SHOP-DS-1", quantity=3)])
    return placed.order, supplier


def test_the_order_check_does_not_reach_an_internal_address(settings):
    settings.STOCKROOM_OUTBOUND_ALLOW = []
    with http_server() as internal:
        order, supplier = _drop_ship_order(f"{internal.url}/check")
        with pytest.raises(OrderCheckUnavailable, match="outbound request refused"):
            order_check_request(order_id=order.pk, location_id=supplier.location_id)
        assert internal.seen == []


def test_a_refusal_that_echoes_the_request_does_not_put_the_secret_on_the_order():
    with http_server(echo(409)) as supplier_host:
        order, supplier = _drop_ship_order(f"{supplier_host.url}/check")
        assert order_check_request(order_id=order.pk, location_id=supplier.location_id) == "refused"
        assert SECRET in supplier_host.seen[0].headers["Authorization"]
    order.refresh_from_db()
    assert order.flagged and SECRET not in order.flag_reason


def test_an_sftp_supplier_on_an_internal_host_is_refused_before_the_password_is_sent(settings, tmp_path):
    settings.STOCKROOM_OUTBOUND_ALLOW = []
    with sftp_server(tmp_path) as server:
        supplier = make_supplier(
            connector="sftp",
            settings={"host": server.host, "port": server.port, "username": server.username, "path": "/outbox",
                      "host_key": server.host_key, "timeout_s": 5},
            secret=server.password,
        )  # fmt: skip
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert server.connections == 0  # never connected, so nothing was sent
    assert run.status == FeedRun.Status.FAILED
    assert "outbound request refused" in run.error and server.password not in run.error


def test_an_sftp_suppliers_host_does_not_change_without_its_password(staff_api):
    make_supplier(
        "sftpco",
        connector=Supplier.Connector.SFTP,
        settings={"host": "sftp.supplier.example", "username": "feed", "path": "/out", "host_key": "ssh-ed25519 AAAA"},
        secret="sftp-password-1",
    )
    moved = {"host": "collector.example.net", "username": "feed", "path": "/out", "host_key": "ssh-ed25519 AAAA"}
    refused = staff_api.patch("/api/v1/suppliers/sftpco/", {"settings": moved}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "settings.host"
    assert Supplier.objects.get(code="sftpco").settings["host"] == "sftp.supplier.example"
