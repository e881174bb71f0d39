"""The API's one idempotency contract, walked over every mutating endpoint of the schema.

Each call is sent with an ``Idempotency-Key``, then replayed (same status and body,
``Idempotent-Replayed: true``, nothing done twice), then the key is sent with another request
(422 ``idempotency_key_reused``). The walk must cover every POST/PUT/PATCH/DELETE the OpenAPI
schema lists, so a new endpoint cannot slip past the contract.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from apps.catalog.models import Location, Movement, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.tests.factories import channel_selling, listing
from apps.channels.tests.shelf import shelf  # noqa: F401  (the in-test platform with a catalog, a fixture)
from apps.orders.models import Order

pytestmark = pytest.mark.django_db

# Authenticated by its signature and timestamp, which refuse a replay themselves (401); a platform's order
# webhook is signed by the platform and deduplicated by its own delivery id.
NOT_KEYED = {("POST", "/api/v1/suppliers/{code}/webhook/"), ("POST", "/api/v1/channels/{code}/webhooks/{connector}/")}

_keys = itertools.count()


class Walk:
    """Sends each call three times and remembers which (method, path template) it covered."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.covered: set[tuple[str, str]] = set()

    def call(self, method: str, template: str, path: str, body: Any, other: Any, **expect: Any) -> Any:
        key = f"contract-{next(_keys)}"
        send = getattr(self.client, method.lower())
        first = send(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert first.status_code == expect.get("status", first.status_code) and first.status_code < 300, (
            method,
            path,
            first.status_code,
            first.content[:300],
        )
        assert "Idempotent-Replayed" not in first
        replay = send(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert replay.status_code == first.status_code, (method, path, replay.content[:300])
        assert replay["Idempotent-Replayed"] == "true"
        assert _json(replay) == _json(first)
        other_path, other_body = other if isinstance(other, tuple) else (path, other)
        reused = send(other_path, other_body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert reused.status_code == 422, (method, path, reused.content[:300])
        assert reused.json()["code"] == "idempotency_key_reused" and isinstance(reused.json()["errors"], list)
        self.covered.add((method, template))
        return _json(first)


def _json(response: Any) -> Any:
    return response.json() if response.content else None


def _mutating_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method.upper() in {"POST", "PUT", "PATCH", "DELETE"}
    }


@pytest.mark.slow
def test_every_mutating_endpoint_takes_the_header_replays_and_refuses_reuse(staff_api, channel_api, shelf, settings):  # noqa: F811
    warehouse = LocationFactory(code="WH")
    hoodie = ItemFactory(sku="HOOD-M")
    stock(hoodie, warehouse, 50)
    staff = Walk(staff_api)

    # Catalog: locations, items, products, each created, replaced, patched.
    staff.call("POST", "/api/v1/locations/", "/api/v1/locations/", {"code": "S1", "name": "Store 1", "kind": "store"},
               {"code": "S2", "name": "Store 2", "kind": "store"})  # fmt: skip
    staff.call("PUT", "/api/v1/locations/{code}/", "/api/v1/locations/S1/", {"code": "S1", "name": "Store One",
               "kind": "store"}, {"code": "S1", "name": "Other", "kind": "store"})  # fmt: skip
    staff.call("PATCH", "/api/v1/locations/{code}/", "/api/v1/locations/S1/", {"name": "Store 1"}, {"name": "X"})
    staff.call("POST", "/api/v1/items/", "/api/v1/items/", {"sku": "CAP", "name": "Cap", "unit": "piece"},
               {"sku": "CAP2", "name": "Cap", "unit": "piece"})  # fmt: skip
    staff.call("PUT", "/api/v1/items/{sku}/", "/api/v1/items/CAP/", {"sku": "CAP", "name": "Cap, red", "unit": "piece"},
               {"sku": "CAP", "name": "Cap, blue", "unit": "piece"})  # fmt: skip
    staff.call("PATCH", "/api/v1/items/{sku}/", "/api/v1/items/CAP/", {"name": "Cap"}, {"name": "Hat"})
    kit = {"code": "KIT", "name": "Kit", "kind": "bundle", "components": [{"item": "HOOD-M", "quantity": 1},
                                                                          {"item": "CAP", "quantity": 1}]}  # fmt: skip
    staff.call("POST", "/api/v1/products/", "/api/v1/products/", kit, {**kit, "code": "KIT2"})
    staff.call("PUT", "/api/v1/products/{code}/", "/api/v1/products/KIT/", {**kit, "name": "Kit, winter"},
               {**kit, "name": "Kit, summer"})  # fmt: skip
    staff.call("PATCH", "/api/v1/products/{code}/", "/api/v1/products/KIT/", {"name": "Kit"}, {"name": "Set"})
    product_of("HOOD-P", {hoodie: 1})

    # Stock: the header alone is enough (the body field is the deprecated alias).
    receipt = {"location": "WH", "item": "CAP", "kind": "receipt", "quantity": 8, "note": "delivery 1"}
    staff.call("POST", "/api/v1/stock/movements/", "/api/v1/stock/movements/", receipt, {**receipt, "quantity": 9})
    assert StockLevel.objects.get(item__sku="CAP", location__code="WH").on_hand == 8
    assert Movement.objects.filter(item__sku="CAP").count() == 1

    # Channels and listings.
    channel = {"code": "shop1", "name": "Webshop", "kind": "webshop", "push_url": "https://shop.example.test/stock",
               "rate_per_s": 5, "burst": 10, "coefficient": "1.000", "buffer": 0, "locations": ["WH", "S1"],
               "secret": "top-secret"}  # fmt: skip
    staff.call("POST", "/api/v1/channels/", "/api/v1/channels/", channel, {**channel, "code": "shop2"})
    staff.call("PUT", "/api/v1/channels/{code}/", "/api/v1/channels/shop1/", {**channel, "name": "Shop"},
               {**channel, "name": "Store"})  # fmt: skip
    staff.call("PATCH", "/api/v1/channels/{code}/", "/api/v1/channels/shop1/", {"buffer": 1}, {"buffer": 2})
    now = datetime.now(UTC).isoformat()
    staff.call("POST", "/api/v1/channels/{code}/watermark/", "/api/v1/channels/shop1/watermark/",
               {"orders_imported_until": now}, {"orders_pending_until": now})  # fmt: skip
    staff.call("POST", "/api/v1/channels/{code}/sync/", "/api/v1/channels/shop1/sync/", {}, {"again": True})
    row = {"channel": "shop1", "channel_sku": "kit", "product": "KIT"}
    listing_id = staff.call("POST", "/api/v1/listings/", "/api/v1/listings/", row, {**row, "channel_sku": "kit2"})["id"]
    staff.call("PUT", "/api/v1/listings/{id}/", f"/api/v1/listings/{listing_id}/", {**row, "buffer": 0},
               {**row, "buffer": 1})  # fmt: skip
    staff.call("PATCH", "/api/v1/listings/{id}/", f"/api/v1/listings/{listing_id}/", {"max_qty": 40}, {"max_qty": 41})
    staff_api.post("/api/v1/listings/", {**row, "channel_sku": "hood", "product": "HOOD-P"}, format="json")

    # Going live: a platform channel (the in-memory shelf platform) linked, stocked, live, paused, resumed.
    from apps.channels.services.config import channel_create

    settings.STOCKROOM_PUBLIC_URL = "https://stock.example.test"
    shelf().add("HOOD-P", "v1", 3)
    channel_create(
        fields={"code": "plat", "name": "Platform", "connector": "shelf", "credentials": {"access_token": "t"},
                "settings": {"shop_url": "https://plat.example.test", "location_id": "gid://shelf/Location/1"}},
        location_ids=[warehouse.pk],
    )  # fmt: skip
    plat = "/api/v1/channels/plat"
    staff.call("POST", "/api/v1/channels/{code}/link/", f"{plat}/link/", {"apply": True}, {"apply": False})
    staff.call("POST", "/api/v1/channels/{code}/opening-stock/", f"{plat}/opening-stock/", {"location": "S1"},
               {"location": "WH"})  # fmt: skip
    staff.call("POST", "/api/v1/channels/{code}/go-live/", f"{plat}/go-live/", {"confirm": True}, {"confirm": False})
    staff.call("POST", "/api/v1/channels/{code}/pause/", f"{plat}/pause/", {}, {"again": True})
    staff.call("POST", "/api/v1/channels/{code}/resume/", f"{plat}/resume/", {}, {"again": True})
    # Last: a catalog read is queued for a worker (none here) and answered 202 with its progress.
    staff.call("POST", "/api/v1/channels/{code}/catalog-read/", f"{plat}/catalog-read/", {}, {"again": True})

    # Suppliers and their mappings.
    supplier = {"code": "acme", "name": "Acme", "connector": "rest", "settings": {"url": "http://127.0.0.1:9/feed"}}
    staff.call("POST", "/api/v1/suppliers/", "/api/v1/suppliers/", supplier, {**supplier, "code": "acme2"})
    staff.call("PUT", "/api/v1/suppliers/{code}/", "/api/v1/suppliers/acme/", {**supplier, "name": "Acme Ltd"},
               {**supplier, "name": "Acme plc"})  # fmt: skip
    staff.call("PATCH", "/api/v1/suppliers/{code}/", "/api/v1/suppliers/acme/", {"cap": 50}, {"cap": 60})
    mapping = {"supplier": "acme", "supplier_sku": "A-CAP", "item": "CAP", "units_per_pack": 1}
    mapping_id = staff.call("POST", "/api/v1/supplier-products/", "/api/v1/supplier-products/", mapping,
                            {**mapping, "supplier_sku": "A-CAP-2"})["id"]  # fmt: skip
    staff.call("PUT", "/api/v1/supplier-products/{id}/", f"/api/v1/supplier-products/{mapping_id}/",
               {**mapping, "units_per_pack": 2}, {**mapping, "units_per_pack": 3})  # fmt: skip
    staff.call("PATCH", "/api/v1/supplier-products/{id}/", f"/api/v1/supplier-products/{mapping_id}/",
               {"lead_time_days": 2}, {"lead_time_days": 3})  # fmt: skip

    # The channel's own calls: an order through its whole life, a second one exchanged and cancelled.
    shop = Walk(channel_api("shop1"))
    order = {"external_id": "W1", "lines": [{"sku": "kit", "quantity": 2}], "hold_minutes": 30}
    order_id = shop.call("POST", "/api/v1/orders/", "/api/v1/orders/", order, {**order, "external_id": "W9"})["id"]
    assert Order.objects.count() == 1
    base = f"/api/v1/orders/{order_id}"
    shop.call("POST", "/api/v1/orders/{id}/confirm/", f"{base}/confirm/", {}, {"note": "other"})
    shop.call("POST", "/api/v1/orders/{id}/fulfil/", f"{base}/fulfil/", {"lines": [{"sku": "kit", "quantity": 1}]},
              {"lines": [{"sku": "kit", "quantity": 2}]})  # fmt: skip
    assert Order.objects.get(pk=order_id).lines.get().fulfilled_quantity == 1
    shop.call("POST", "/api/v1/orders/{id}/return/", f"{base}/return/", {"lines": [{"sku": "kit", "quantity": 1}]},
              {"lines": [{"sku": "kit", "quantity": 2}]})  # fmt: skip
    second = shop.call("POST", "/api/v1/orders/", "/api/v1/orders/", {**order, "external_id": "W2"},
                       {**order, "external_id": "W8"})["id"]  # fmt: skip
    shop.call("POST", "/api/v1/orders/{id}/exchange/", f"/api/v1/orders/{second}/exchange/",
              {"sku": "kit", "new_sku": "hood"}, {"sku": "kit", "new_sku": "kit"})  # fmt: skip
    shop.call("POST", "/api/v1/orders/{id}/cancel/", f"/api/v1/orders/{second}/cancel/", {}, {"note": "other"})
    event = {"type": "create", "external_id": "M1", "sequence": 1, "lines": [{"sku": "kit", "quantity": 1}]}
    shop.call("POST", "/api/v1/events/", "/api/v1/events/", event, {**event, "sequence": 2})

    # Deletions: replayed as the first 204 although the record is gone; another path is a reuse.
    def made(path: str, body: dict[str, Any]) -> Any:
        response = staff_api.post(path, body, format="json")
        assert response.status_code == 201, response.content[:300]
        return response.json()

    made("/api/v1/locations/", {"code": "GONE", "name": "Gone", "kind": "store"})
    made("/api/v1/locations/", {"code": "OLD", "name": "Old", "kind": "store"})
    made("/api/v1/items/", {"sku": "OLD", "name": "Old", "unit": "piece"})
    made(
        "/api/v1/products/",
        {"code": "OLD", "name": "Old", "kind": "standard", "components": [{"item": "OLD", "quantity": 1}]},
    )
    made("/api/v1/channels/", {**channel, "code": "old", "locations": []})
    old_listing = made("/api/v1/listings/", {"channel": "old", "channel_sku": "old", "product": "OLD"})["id"]
    made("/api/v1/suppliers/", {**supplier, "code": "old"})
    old_mapping = made("/api/v1/supplier-products/", {**mapping, "supplier": "old", "item": "OLD"})["id"]
    for template, path in [
        ("/api/v1/supplier-products/{id}/", f"/api/v1/supplier-products/{old_mapping}/"),
        ("/api/v1/suppliers/{code}/", "/api/v1/suppliers/old/"),
        ("/api/v1/listings/{id}/", f"/api/v1/listings/{old_listing}/"),
        ("/api/v1/channels/{code}/", "/api/v1/channels/old/"),
        ("/api/v1/products/{code}/", "/api/v1/products/OLD/"),
        ("/api/v1/items/{sku}/", "/api/v1/items/OLD/"),
        ("/api/v1/locations/{code}/", "/api/v1/locations/OLD/"),
    ]:
        staff.call("DELETE", template, path, None, ("/api/v1/locations/GONE/", None), status=204)
    assert Location.objects.filter(code="GONE").exists()  # each reuse was undone
    assert not Location.objects.filter(code="OLD").exists()

    missing = _mutating_operations() - NOT_KEYED - staff.covered - shop.covered
    assert not missing, f"mutating operations the contract walk does not cover: {sorted(missing)}"


def test_the_body_field_is_a_deprecated_alias_and_must_match_the_header(staff_api):
    LocationFactory(code="WH")
    ItemFactory(sku="HOOD-M")
    body = {"location": "WH", "item": "HOOD-M", "kind": "receipt", "quantity": 3, "idempotency_key": "r-1"}
    first = staff_api.post("/api/v1/stock/movements/", body, format="json")
    assert first.status_code == 201
    by_header = staff_api.post("/api/v1/stock/movements/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert by_header.status_code == 201 and by_header["Idempotent-Replayed"] == "true"
    assert by_header.json() == first.json()
    clash = staff_api.post("/api/v1/stock/movements/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-2")
    assert clash.status_code == 400 and clash.json()["errors"][0]["field"] == "idempotency_key"
    assert Movement.objects.count() == 1 and first.json()["movement"]["idempotency_key"] == "r-1"


def test_keys_belong_to_their_caller(channel_api):
    warehouse = LocationFactory(code="WH")
    hoodie = ItemFactory(sku="HOOD-M")
    stock(hoodie, warehouse, 10)
    for code in ("a", "b"):
        listing(channel_selling(code, [warehouse]), product_of(f"P-{code}", {hoodie: 1}), sku="hood")
    body = {"external_id": "X1", "lines": [{"sku": "hood", "quantity": 1}]}
    first = channel_api("a").post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    other = channel_api("b").post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert first.status_code == other.status_code == 201 and "Idempotent-Replayed" not in other
    assert first.json()["id"] != other.json()["id"]


def test_the_key_is_optional_where_a_repeat_moves_no_stock(staff_api):
    response = staff_api.post("/api/v1/locations/", {"code": "S7", "name": "Store 7", "kind": "store"}, format="json")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response


def test_a_method_the_endpoint_lacks_is_405_with_or_without_a_key(channel_api, staff_api):
    warehouse = LocationFactory(code="WH")
    listing(channel_selling("shop1", [warehouse]), product_of("P", {ItemFactory(sku="HOOD-M"): 1}), sku="hood")
    for client, path in [(channel_api("shop1"), "/api/v1/orders/"), (staff_api, "/api/v1/stock/movements/1/")]:
        for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "k-405"}):
            response = client.put(path, {"external_id": "x"}, format="json", **headers)
            assert response.status_code in (404, 405) and response.json()["errors"] == [], response.content
    refused = channel_api("shop1").put("/api/v1/orders/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-405")
    assert refused.status_code == 405 and refused.json()["code"] == "method_not_allowed"
