"""Import mode is for channels that cannot refuse a sale, and an absurd import is refused
(docs/architecture.md, "Limits and edges").

A webshop importing would zero every channel of the item; a marketplace line far beyond stock
is a mistake or an attack, not a sale. Both are refused before anything is written: no order,
no level, no ledger row, no sync work; the implausible one opens an incident for staff.
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.catalog.models import Incident, Movement, StockLevel
from apps.catalog.services.movements import stock_movement_record
from apps.channels.models import Channel, SyncWork
from apps.orders.errors import ImplausibleQuantity, ImportNotAllowed
from apps.orders.models import Order, OrderEvent
from apps.orders.services import LineRequest, event_apply, order_import
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"


@pytest.fixture
def channels(shop):
    """A webshop with its default settings and a marketplace, both selling hoodies (15 available)."""
    webshop = channel_of("shop2", [shop.warehouse, shop.store], kind=Channel.Kind.WEBSHOP)
    listing_of(webshop, "s-hood", shop.hood_product)
    market = channel_of("market", [shop.warehouse, shop.store], kind=Channel.Kind.MARKETPLACE)
    listing_of(market, "m-hood", shop.hood_product)
    listing_of(market, "m-kit", shop.kit)
    return webshop, market


def snapshot() -> dict[str, Any]:
    """Everything an import could write."""
    return {
        "levels": sorted(StockLevel.objects.values_list("item_id", "location_id", "on_hand", "reserved")),
        "ledger": Movement.objects.count(),
        "sync_work": sorted(SyncWork.objects.values_list("listing_id", "version")),
        "orders": Order.objects.count(),
        "oversells": Incident.objects.filter(kind=Incident.Kind.OVERSELL).count(),
    }


def post(client, body: dict[str, Any], key: str):
    return client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def imported(sku: str, quantity: int, external_id: str = "X1") -> dict[str, Any]:
    return {"external_id": external_id, "mode": "import", "lines": [{"sku": sku, "quantity": quantity}]}


@pytest.mark.parametrize("quantity", [2, 1_000_000], ids=["within-stock", "far-beyond"])
def test_a_webshop_may_not_import_and_nothing_changes(shop, channels, channel_api, quantity):
    before = snapshot()
    response = post(channel_api("shop2"), imported("s-hood", quantity), key=f"i-{quantity}")
    assert response.status_code == 403, response.json()
    body = response.json()
    assert body["code"] == "import_not_allowed" and "can_import" in body["detail"]
    assert snapshot() == before
    assert not Incident.objects.exists()
    # Reserving stays open to it.
    reserve = {"external_id": "R1", "lines": [{"sku": "s-hood", "quantity": 2}]}
    assert post(channel_api("shop2"), reserve, key="r").status_code == 201


def test_the_service_refuses_an_import_from_a_channel_that_may_not(shop, channels):
    webshop, market = channels
    with pytest.raises(ImportNotAllowed):
        order_import(channel=webshop, external_id="S1", lines=[LineRequest("s-hood", 1)])
    market.can_import = False  # a marketplace the merchant switched off
    market.save(update_fields=["can_import"])
    with pytest.raises(ImportNotAllowed):
        order_import(channel=market, external_id="M1", lines=[LineRequest("m-hood", 1)])
    assert not Order.objects.exists()


def test_an_import_beyond_the_cap_is_refused_with_422_and_an_incident(shop, channels, channel_api):
    before = snapshot()
    client = channel_api("market")
    response = post(client, imported("m-hood", 151), key="big")  # 15 available: cap 150
    assert response.status_code == 422, response.json()
    body = response.json()
    assert body["code"] == "implausible_quantity" and body["detail"]
    assert body["lines"] == [{"sku": "m-hood", "requested": 151, "cap": 150, "available": 15}]
    assert snapshot() == before
    incident = Incident.objects.get(kind=Incident.Kind.IMPLAUSIBLE_IMPORT)
    assert incident.item_id == shop.hood.pk and "market" in incident.detail and "151" in incident.detail
    # A replay is refused the same way, without a second incident.
    again = post(client, imported("m-hood", 151), key="big")
    assert again.status_code == 422 and again["Idempotent-Replayed"] == "true"
    assert Incident.objects.filter(kind=Incident.Kind.IMPLAUSIBLE_IMPORT).count() == 1


def test_an_import_within_the_cap_is_recorded_as_an_oversell(shop, channels, channel_api):
    response = post(channel_api("market"), imported("m-hood", 150), key="ok")
    assert response.status_code == 201, response.json()
    assert response.json()["flagged"] and response.json()["lines"][0]["unallocated_quantity"] == 135
    assert Incident.objects.filter(kind=Incident.Kind.OVERSELL).count() == 1
    assert not Incident.objects.filter(kind=Incident.Kind.IMPLAUSIBLE_IMPORT).exists()


def test_the_floor_is_100_units_when_little_or_nothing_is_available(shop, channels, channel_api):
    client = channel_api("market")
    # The kit: 5 at the warehouse (10 caps / 2), 2 at the store: 7 available, cap 100.
    refused = post(client, imported("m-kit", 101), key="k1")
    assert refused.status_code == 422 and refused.json()["lines"][0]["cap"] == 100
    assert post(client, imported("m-kit", 100, external_id="X2"), key="k2").status_code == 201


def test_the_cap_uses_what_is_available_at_the_time(shop, channels, channel_api):
    client = channel_api("market")
    assert post(client, imported("m-hood", 200), key="a").status_code == 422  # 15 available: cap 150
    stock_movement_record(
        location_code="wh", item_sku="HOOD", kind="receipt", quantity=10, idempotency_key="rcpt", actor="staff"
    )
    accepted = post(client, imported("m-hood", 200, external_id="X2"), key="b")  # 25 available: cap 250
    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["lines"][0]["unallocated_quantity"] == 175


def test_a_channel_cap_replaces_the_default_on_both_write_paths(shop, channels, channel_api):
    _webshop, market = channels
    market.import_cap_units = 5
    market.save(update_fields=["import_cap_units"])
    client = channel_api("market")
    before = snapshot()
    # 6 is within stock (the one-statement path would take it) but beyond the channel's cap.
    refused = post(client, imported("m-hood", 6), key="six")
    assert refused.status_code == 422 and refused.json()["lines"][0]["cap"] == 5
    assert snapshot() == before
    assert post(client, imported("m-hood", 5, external_id="X2"), key="five").status_code == 201
    # Beyond stock (the locked path) the channel's cap holds too.
    market.import_cap_units = 20
    market.save(update_fields=["import_cap_units"])
    assert post(client, imported("m-hood", 21, external_id="X3"), key="21").status_code == 422
    short = post(client, imported("m-hood", 20, external_id="X4"), key="20")
    assert short.status_code == 201 and short.json()["lines"][0]["unallocated_quantity"] == 10


def test_a_webshop_the_merchant_allows_may_import(shop, channels, channel_api):
    webshop, _market = channels
    webshop.can_import = True
    webshop.save(update_fields=["can_import"])
    response = post(channel_api("shop2"), imported("s-hood", 3), key="ok")
    assert response.status_code == 201 and response.json()["mode"] == "import"


def test_events_honour_the_channel_settings(shop, channels):
    webshop, market = channels
    lines = [{"sku": "s-hood", "quantity": 2}]
    refused = event_apply(
        channel=webshop, type="create", external_id="E1", sequence=1, payload={"lines": lines, "mode": "import"}
    )
    assert refused.event.status == OrderEvent.Status.REJECTED and "import" in refused.event.detail
    # Without a mode, a channel that may not import reserves.
    reserved = event_apply(channel=webshop, type="create", external_id="E2", sequence=1, payload={"lines": lines})
    assert reserved.event.status == OrderEvent.Status.APPLIED
    assert Order.objects.get(external_id="E2").mode == Order.Mode.RESERVE
    # A marketplace event beyond the cap: rejected, nothing written, and the incident stays.
    before = snapshot()
    big = event_apply(
        channel=market, type="create", external_id="E3", sequence=1,
        payload={"lines": [{"sku": "m-hood", "quantity": 1_000_000}]},
    )  # fmt: skip
    assert big.event.status == OrderEvent.Status.REJECTED and "refused" in big.event.detail
    assert snapshot() == before
    assert Incident.objects.filter(kind=Incident.Kind.IMPLAUSIBLE_IMPORT).count() == 1
    # And within it, the marketplace's event imports (its default mode).
    fine = event_apply(
        channel=market, type="create", external_id="E4", sequence=1,
        payload={"lines": [{"sku": "m-hood", "quantity": 2}]},
    )  # fmt: skip
    assert fine.event.status == OrderEvent.Status.APPLIED
    assert Order.objects.get(external_id="E4").mode == Order.Mode.IMPORT


def test_events_over_http_refuse_and_record_the_same_way(shop, channels, channel_api):
    lines = [{"sku": "s-hood", "quantity": 1}]
    body = {"type": "create", "external_id": "H1", "sequence": 1, "mode": "import", "lines": lines}
    response = channel_api("shop2").post("/api/v1/events/", body, format="json")
    assert response.status_code == 201 and response.json()["status"] == "rejected"
    assert not Order.objects.exists()


def test_the_refusal_carries_every_line_beyond_its_cap(shop, channels):
    _webshop, market = channels
    with pytest.raises(ImplausibleQuantity) as refused:
        order_import(channel=market, external_id="M9", lines=[LineRequest("m-hood", 10), LineRequest("m-kit", 500)])
    assert refused.value.data["lines"] == [{"sku": "m-kit", "requested": 500, "cap": 100, "available": 7}]
    assert not Order.objects.exists()


def test_channels_api_exposes_the_import_settings(staff_api, shop):
    created = staff_api.post(
        "/api/v1/channels/", {"code": "mk2", "name": "Market", "kind": "marketplace", "rate_per_s": 5}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["can_import"] is True and created.json()["import_cap_units"] is None
    web = staff_api.post(
        "/api/v1/channels/", {"code": "web2", "name": "Web", "kind": "webshop", "rate_per_s": 5}, format="json"
    )
    assert web.json()["can_import"] is False
    changed = staff_api.patch("/api/v1/channels/web2/", {"can_import": True, "import_cap_units": 40}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["can_import"] is True and changed.json()["import_cap_units"] == 40
    assert Channel.objects.get(code="web2").imports_allowed
    back = staff_api.patch("/api/v1/channels/web2/", {"can_import": None}, format="json")
    assert back.json()["can_import"] is False  # by kind again
    bad = staff_api.patch("/api/v1/channels/web2/", {"import_cap_units": 0}, format="json")
    assert bad.status_code == 400


def test_the_admin_shows_the_import_settings(admin_client, shop, channels):
    _webshop, market = channels
    page = admin_client.get(f"/admin/channels/channel/{market.pk}/change/")
    assert page.status_code == 200
    assert b'name="can_import"' in page.content and b'name="import_cap_units"' in page.content
    assert b"By kind" in page.content
    listing = admin_client.get("/admin/channels/channel/")
    assert listing.status_code == 200 and b"may import" in listing.content.lower()


def test_the_admin_saves_the_import_settings(admin_client, shop, channels):
    webshop, _market = channels
    form = {
        "code": webshop.code, "name": webshop.name, "kind": webshop.kind, "push_url": "", "rate_per_s": "5",
        "burst": "10", "batch_size": "100", "coefficient": "1", "buffer": "0", "is_active": "on",
        "can_import": "true", "import_cap_units": "30",
        "orders_pending_until_0": "", "orders_pending_until_1": "",
        "orders_imported_until_0": "", "orders_imported_until_1": "",
        "channel_locations-TOTAL_FORMS": "0", "channel_locations-INITIAL_FORMS": "0",
        "channel_locations-MIN_NUM_FORMS": "0", "channel_locations-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    response = admin_client.post(f"/admin/channels/channel/{webshop.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    webshop.refresh_from_db()
    assert webshop.can_import is True and webshop.import_cap_units == 30
    response = admin_client.post(
        f"/admin/channels/channel/{webshop.pk}/change/", {**form, "can_import": "unknown", "import_cap_units": ""}
    )
    assert response.status_code == 302
    webshop.refresh_from_db()
    assert webshop.can_import is None and webshop.import_cap_units is None and not webshop.imports_allowed
