"""Bad input anywhere is a clear 4xx in the contract's shape `{"code", "detail"}`, never a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.catalog.models import Item
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of
from apps.channels.tests.factories import ChannelFactory
from apps.core.errors import InvalidJson
from apps.core.parsers import json_loads_strict
from apps.core.testing import error_fields

pytestmark = pytest.mark.django_db

DEEP = "[" * 2000 + "]" * 2000
BUNDLE = {"code": "P3", "name": "p", "kind": "bundle"}


@pytest.fixture
def catalog():
    LocationFactory(code="WH")
    hoodie = ItemFactory(sku="HOOD-M")
    product_of("KIT", {hoodie: 1})
    ChannelFactory(code="shop1")


@pytest.fixture
def shop(channel_api, catalog):
    return channel_api("shop1")


def post_json(client, path, body, **headers):
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.generic("POST", path, raw, content_type="application/json", **headers)


def assert_error(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["detail"], body
    return body


# --- item 5: NUL bytes, deep nesting, oversized bodies ------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/items/?search=a%00b",
        "/api/v1/stock/levels/?item=HOOD%00",
        "/api/v1/supplier-products/?supplier=a%00",
        "/api/v1/feed-runs/?status=%00",
        "/api/v1/listings/?channel__code=%00",
        "/api/v1/items/?x%00=1",
    ],
)
def test_nul_in_query_filters_is_400_invalid_text(staff_api, catalog, path):
    assert_error(staff_api.get(path), 400, "invalid_text")


def test_nul_in_a_path_code_is_404(staff_api, shop, catalog):
    assert_error(staff_api.get("/api/v1/items/HOOD%00M/"), 404, "not_found")
    assert_error(staff_api.delete("/api/v1/suppliers/a%00/"), 404, "not_found")
    assert_error(shop.get("/api/v1/availability/?sku=a%00"), 400, "invalid_text")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/products/", {"code": "P4", "name": "x", "kind": "standard", "components": [{"item": "A\u0000"}]}),
        (
            "/api/v1/stock/movements/",
            {"location": "WH\u0000", "item": "HOOD-M", "kind": "receipt", "quantity": 1, "idempotency_key": "k"},
        ),
        ("/api/v1/suppliers/", {"code": "S2", "name": "x", "connector": "webhook", "settings": {"a\u0000": 1}}),
        ("/api/v1/listings/", {"channel": "shop1", "channel_sku": "s", "product": "KIT\ud800"}),
    ],
)
def test_nul_or_lone_surrogate_in_a_json_body_is_400_invalid_text(staff_api, catalog, path, body):
    assert_error(post_json(staff_api, path, body), 400, "invalid_text")


def test_nul_in_channel_bodies_and_idempotency_key_is_400(shop):
    order = {"external_id": "e1", "lines": [{"sku": "KIT", "quantity": 1}]}
    refused = post_json(shop, "/api/v1/orders/", order, HTTP_IDEMPOTENCY_KEY="k\u0000")
    assert_error(refused, 400, "invalid_idempotency_key")
    bad = {"type": "create", "external_id": "e\u0000", "sequence": 1, "lines": [{"sku": "KIT", "quantity": 1}]}
    assert_error(post_json(shop, "/api/v1/events/", bad), 400, "invalid_text")


def test_nul_on_staff_and_admin_pages_is_refused(admin_client):
    assert_error(admin_client.get("/admin/catalog/item/?q=a%00"), 400, "invalid_text")
    assert_error(admin_client.get("/staff/?item=%00"), 400, "invalid_text")
    assert admin_client.get("/admin/catalog/item/a%00/change/").status_code == 404
    form = admin_client.post("/admin/catalog/item/add/", {"sku": "X\x00", "name": "x", "unit": "piece"})
    assert_error(form, 400, "invalid_text")
    assert not Item.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    "path", ["/api/v1/items/", "/api/v1/products/", "/api/v1/stock/movements/", "/api/v1/listings/"]
)
def test_deeply_nested_json_is_400_on_staff_endpoints(staff_api, catalog, path):
    assert_error(post_json(staff_api, path, DEEP), 400, "invalid_json")


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/events/", "/api/v1/orders/1/fulfil/"])
def test_deeply_nested_json_is_400_on_channel_endpoints(shop, path):
    assert_error(post_json(shop, path, DEEP, HTTP_IDEMPOTENCY_KEY="deep"), 400, "invalid_json")


def test_strict_json_refuses_what_would_hurt_later():
    huge = '{"q": ' + "9" * 5000 + "}"
    for raw in ['{"a": 1, "a": 2}', '{"q": NaN}', '{"q": 1e999}', huge, b"\xff\xfe", "[" * 33 + "]" * 33]:
        with pytest.raises(InvalidJson):
            json_loads_strict(raw)
    assert json_loads_strict("[" * 32 + "]" * 32) is not None


def test_a_body_over_the_limit_is_413_json(staff_api, catalog, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    body = {"sku": "BIG", "name": "x" * 2000, "unit": "piece"}
    assert_error(post_json(staff_api, "/api/v1/items/", body), 413, "body_too_large")
    assert not Item.objects.filter(sku="BIG").exists()


# --- item 6: duplicates, missing fields, out-of-range numbers, dates PostgreSQL refuses ---------


def test_an_existing_code_is_409_already_exists(staff_api, catalog):
    item = post_json(staff_api, "/api/v1/items/", {"sku": "HOOD-M", "name": "x", "unit": "piece"})
    assert "HOOD-M" in assert_error(item, 409, "already_exists")["detail"]
    product = {"code": "KIT", "name": "x", "kind": "standard", "components": [{"item": "HOOD-M", "quantity": 1}]}
    assert_error(post_json(staff_api, "/api/v1/products/", product), 409, "already_exists")
    location = post_json(staff_api, "/api/v1/locations/", {"code": "WH", "name": "x", "kind": "store"})
    assert "code" in error_fields(assert_error(location, 409, "already_exists"))
    channel = {"code": "shop1", "name": "x", "kind": "webshop", "rate_per_s": 1}
    assert_error(post_json(staff_api, "/api/v1/channels/", channel), 409, "already_exists")
    listing = {"channel": "shop1", "channel_sku": "S1", "product": "KIT"}
    assert post_json(staff_api, "/api/v1/listings/", listing).status_code == 201
    assert_error(post_json(staff_api, "/api/v1/listings/", listing), 409, "already_exists")


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/items/", {"sku": "NEW", "name": "x"}, "unit"),
        ("/api/v1/products/", {"code": "P2", "name": "x", "components": [{"item": "HOOD-M", "quantity": 1}]}, "kind"),
        ("/api/v1/products/", {**BUNDLE, "components": [{"quantity": 2}]}, "components"),
        ("/api/v1/products/", {**BUNDLE, "components": ["HOOD-M"]}, "components"),
        ("/api/v1/locations/", {"code": "S2", "name": "x"}, "kind"),
    ],
)
def test_a_missing_required_field_is_400_naming_it(staff_api, catalog, path, body, field):
    assert field in error_fields(assert_error(post_json(staff_api, path, body), 400, "invalid"))


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/items/", {"sku": "N1", "name": "x", "unit": "piece", "safety_max": 10**12}, "safety_max"),
        ("/api/v1/items/", {"sku": "N2", "name": "x", "unit": "piece", "safety_min": 2**31}, "safety_min"),
        ("/api/v1/listings/", {"channel": "shop1", "channel_sku": "s", "product": "KIT", "max_qty": 10**12}, "max_qty"),
    ],
)
def test_a_number_beyond_its_column_is_400(staff_api, catalog, path, body, field):
    assert field in error_fields(assert_error(post_json(staff_api, path, body), 400, "invalid"))


def test_a_value_the_database_refuses_is_400_not_500(staff_api, catalog):
    """The fallback: a range only PostgreSQL knows (DataError) is mapped to 400 by the handler."""
    from django.db import connection

    from apps.core.errors import database_refusal

    with pytest.raises(Exception) as raised, connection.cursor() as cursor:
        cursor.execute("SELECT %s::int", [10**12])
    refusal = database_refusal(raised.value)
    assert refusal is not None and refusal.status_code == 400 and refusal.code == "invalid"


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00Z", "2026-13-40T00:00:00Z"],
)
def test_a_datetime_filter_out_of_range_is_4xx_or_empty(staff_api, catalog, value):
    response = staff_api.get(f"/api/v1/stock/movements/?created_after={value}")
    assert response.status_code in (200, 400), response.content[:200]
    if response.status_code == 400:
        assert_error(response, 400, "invalid")


# --- item 7: every API error is JSON {"code", "detail"}, also with DEBUG on ----------------------


@pytest.mark.parametrize("debug", [False, True])
def test_unmatched_api_routes_are_json_404(staff_api, settings, debug):
    settings.DEBUG = debug
    for method in ("GET", "POST", "DELETE"):
        assert_error(staff_api.generic(method, "/api/v1/nope/"), 404, "not_found")
        assert_error(staff_api.generic(method, "/api/v2/items/"), 404, "not_found")
    slashless = post_json(staff_api, "/api/v1/items", {"sku": "Z", "name": "z", "unit": "piece"})
    assert "/api/v1/items/" in assert_error(slashless, 404, "not_found")["detail"]
    assert_error(staff_api.delete("/api/v1/whoami/"), 405, "method_not_allowed")
    assert_error(Client().get("/api/v1/items/"), 401, "not_authenticated")


@pytest.mark.parametrize("debug", [False, True])
def test_a_server_error_under_the_api_is_json_500(staff_api, settings, debug, monkeypatch):
    from apps.core.api import views

    settings.DEBUG = debug
    staff_api.raise_request_exception = False

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "Response", broken)
    body = assert_error(staff_api.get("/api/v1/whoami/"), 500, "server_error")
    assert "boom" not in json.dumps(body)


# --- the signed supplier webhook: NUL in an item, deep nesting, after a valid signature ---------


def _signed_webhook(raw: bytes) -> dict:
    import time

    from apps.suppliers.services.webhooks import webhook_signature

    stamp = str(int(time.time()))
    return {
        "path": "/api/v1/suppliers/pusher/webhook/",
        "data": raw,
        "content_type": "application/json",
        "HTTP_X_TIMESTAMP": stamp,
        "HTTP_X_SIGNATURE": webhook_signature(secret="whsec-0123456789abcdef", timestamp=stamp, body=raw),
    }


@pytest.mark.parametrize(
    "raw, code",
    [
        (
            b'{"items": [{"supplier_sku": "P1\\u0000", "quantity": 1, "updated_at": "2026-01-01T00:00:00Z"}]}',
            "invalid_text",
        ),
        (
            b'{"items": [{"supplier_sku": "P1", "quantity": 1, "updated_at": "2026-01-01T00:00:00Z\\u0000"}]}',
            "invalid_text",
        ),
        (b'{"items": ' + DEEP.encode() + b"}", "invalid_json"),
        (b'{"items": [], "items": []}', "invalid_json"),
    ],
)
def test_webhook_items_with_nul_or_deep_nesting_are_400(client, raw, code):
    from apps.suppliers.tests.factories import make_mapping, make_supplier

    supplier = make_supplier("pusher", connector="webhook", settings={}, secret="whsec-0123456789abcdef")
    make_mapping(supplier, "P1")
    assert_error(client.post(**_signed_webhook(raw)), 400, code)
    assert not supplier.feed_runs.exists()


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z"]
)
def test_a_datetime_in_a_body_out_of_range_is_400(staff_api, catalog, value):
    response = post_json(staff_api, "/api/v1/channels/shop1/watermark/", {"orders_pending_until": value})
    assert "orders_pending_until" in error_fields(assert_error(response, 400, "invalid"))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/feed-runs/99999999999999999999/",
        "/api/v1/listings/99999999999999999999/",
        "/api/v1/supplier-products/99999999999999999999/",
        "/api/v1/listings/?page=99999999999999999999",
        "/api/v1/stock/movements/?kind=nope",
    ],
)
def test_ids_and_filters_beyond_range_are_4xx(staff_api, catalog, path):
    response = staff_api.get(path)
    assert 400 <= response.status_code < 500, response.content[:200]
    assert response.json()["code"] in ("not_found", "invalid")
