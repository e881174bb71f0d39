"""The staff API (docs/architecture.md, "The API contract") for the catalog and stock, as an integrator sees it."""

from __future__ import annotations

import pytest

from apps.catalog.models import Incident, Item, Movement, Product, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.core.testing import error_fields

pytestmark = pytest.mark.django_db


@pytest.fixture
def shelf():
    store = LocationFactory(code="S1", kind="store", allow_negative=True)
    warehouse = LocationFactory(code="WH", kind="warehouse")
    hoodie = ItemFactory(sku="HOOD-M", name="Hoodie M")
    return store, warehouse, hoodie


def move(api, **body):
    payload = {"location": "WH", "item": "HOOD-M", "kind": "receipt", "quantity": 5, "idempotency_key": "k1"}
    payload.update(body)
    return api.post("/api/v1/stock/movements/", payload, format="json")


# --- locations and items -------------------------------------------------------------------


def test_location_crud_by_code(staff_api):
    created = staff_api.post("/api/v1/locations/", {"code": "S9", "name": "Store Köln", "kind": "store"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["code"] == "S9"
    assert staff_api.get("/api/v1/locations/S9/").json()["name"] == "Store Köln"
    renamed = staff_api.patch("/api/v1/locations/S9/", {"name": "Store Cologne"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Store Cologne"
    listed = staff_api.get("/api/v1/locations/").json()
    assert set(listed) == {"count", "next", "previous", "results"}
    assert [loc["code"] for loc in listed["results"]] == ["S9"]
    assert staff_api.delete("/api/v1/locations/S9/").status_code == 204
    assert staff_api.get("/api/v1/locations/S9/").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"code": "", "name": "x", "kind": "store"}, "code"),
        ({"code": "has space", "name": "x", "kind": "store"}, "code"),
        ({"code": "S1", "name": "x", "kind": "moon"}, "kind"),
        ({"code": "S1", "kind": "store"}, "name"),
        ({"code": ["S1"], "name": "x", "kind": "store"}, "code"),
    ],
)
def test_location_bad_input_is_400_with_field_errors(staff_api, body, field):
    response = staff_api.post("/api/v1/locations/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in error_fields(response.json())


def test_duplicate_codes_are_409_and_code_changes_400(staff_api, shelf):
    again = staff_api.post("/api/v1/locations/", {"code": "S1", "name": "x", "kind": "store"}, format="json")
    assert (
        again.status_code == 409 and again.json()["code"] == "already_exists" and "code" in error_fields(again.json())
    )
    renamed = staff_api.patch("/api/v1/items/HOOD-M/", {"sku": "HOOD-XL"}, format="json")
    assert renamed.status_code == 400 and "sku" in error_fields(renamed.json())
    assert Item.objects.filter(sku="HOOD-M").exists()


def test_item_crud_and_delete_in_use_is_409(staff_api, shelf):
    created = staff_api.post("/api/v1/items/", {"sku": "CAP", "name": "Cap", "unit": "piece"}, format="json")
    assert created.status_code == 201
    assert staff_api.get("/api/v1/items/CAP/").json()["unit"] == "piece"
    move(api=staff_api, item="CAP")
    refused = staff_api.delete("/api/v1/items/CAP/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "in_use"
    assert "movements" in refused.json()["detail"]
    assert Item.objects.filter(sku="CAP").exists()


def test_location_with_stock_cannot_be_deleted(staff_api, shelf):
    _, warehouse, hoodie = shelf
    stock(hoodie, warehouse, 3)
    response = staff_api.delete("/api/v1/locations/WH/")
    assert response.status_code == 409 and response.json()["code"] == "in_use"


def test_refusing_negative_stock_where_stock_is_negative_is_409(staff_api, shelf):
    store, _, hoodie = shelf
    assert move(staff_api, location="S1", kind="pos_sale", quantity=2).status_code == 201
    response = staff_api.patch("/api/v1/locations/S1/", {"allow_negative": False}, format="json")
    assert response.status_code == 409
    assert StockLevel.objects.get(item=hoodie, location=store).allow_negative is True


# --- products ----------------------------------------------------------------------------


def test_bundle_create_read_update(staff_api, shelf):
    ItemFactory(sku="CAP")
    ItemFactory(sku="SOCK")
    body = {
        "code": "KIT",
        "name": "Starter kit",
        "kind": "bundle",
        "components": [
            {"item": "HOOD-M", "quantity": 1},
            {"item": "CAP", "quantity": 1},
            {"item": "SOCK", "quantity": 3},
        ],
    }
    created = staff_api.post("/api/v1/products/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["components"] == body["components"]
    changed = staff_api.patch(
        "/api/v1/products/KIT/",
        {"components": [{"item": "HOOD-M", "quantity": 1}, {"item": "SOCK", "quantity": 2}]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["components"] == [{"item": "HOOD-M", "quantity": 1}, {"item": "SOCK", "quantity": 2}]
    fetched = staff_api.get("/api/v1/products/KIT/").json()
    assert fetched["components"] == changed.json()["components"]


def test_product_list_query_count_does_not_grow(staff_api, shelf, django_assert_max_num_queries):
    for n in range(20):
        product_of(f"P{n}", {shelf[2]: 1})
    staff_api.get("/api/v1/locations/")  # the token's last use is recorded once a minute, not on every call
    with django_assert_max_num_queries(4):  # token, count, page, components with their items
        response = staff_api.get("/api/v1/products/")
    assert response.json()["count"] == 20


@pytest.mark.parametrize(
    "kind, components, message",
    [
        ("standard", [{"item": "NOPE", "quantity": 1}], "does not exist"),
        ("standard", [{"item": "HOOD-M", "quantity": 0}], "greater than or equal to 1"),
        ("standard", [{"item": "HOOD-M", "quantity": -2}], "greater than or equal to 1"),
        ("standard", [{"item": "HOOD-M", "quantity": "two"}], "valid integer"),
        ("standard", [{"item": "HOOD-M", "quantity": 10**15}], "less than or equal"),
        ("standard", [{"item": "HOOD-M", "quantity": 2}], "exactly one item with quantity 1"),
        ("multipack", [{"item": "HOOD-M", "quantity": 1}], "quantity 2 or more"),
        ("weighted", [{"item": "HOOD-M", "quantity": 500}], "counted in pieces"),
        ("bundle", [{"item": "HOOD-M", "quantity": 1}], "at least two"),
        ("bundle", [{"item": "HOOD-M", "quantity": 1}, {"item": "HOOD-M", "quantity": 1}], "listed twice"),
        ("standard", [], "at least one"),
    ],
)
def test_product_make_up_is_validated(staff_api, shelf, kind, components, message):
    body = {"code": "P1", "name": "p", "kind": kind, "components": components}
    response = staff_api.post("/api/v1/products/", body, format="json")
    assert response.status_code == 400, response.json()
    assert "components" in error_fields(response.json())
    assert message in str(response.json()["errors"])
    assert not Product.objects.filter(code="P1").exists()


def test_weighted_product_from_a_bulk_item(staff_api):
    ItemFactory(sku="COFFEE", unit="g")
    body = {
        "code": "COFFEE-500",
        "name": "Coffee 500 g",
        "kind": "weighted",
        "components": [{"item": "COFFEE", "quantity": 500}],
    }
    assert staff_api.post("/api/v1/products/", body, format="json").status_code == 201


def test_product_with_listings_cannot_be_deleted(staff_api, shelf):
    from apps.channels.models import Channel, Listing

    product = product_of("HOOD-M", {shelf[2]: 1})
    channel = Channel.objects.create(code="shop", name="Shop")
    Listing.objects.create(channel=channel, channel_sku="SHOP-HOOD-M", product=product)
    response = staff_api.delete("/api/v1/products/HOOD-M/")
    assert response.status_code == 409 and response.json()["code"] == "in_use"
    assert Product.objects.filter(code="HOOD-M").exists()


# --- movements and levels ----------------------------------------------------------------


def test_receipt_returns_movement_and_new_level(staff_api, shelf):
    response = move(staff_api, quantity=7, note="Delivery 42")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["movement"]["kind"] == "receipt"
    assert body["movement"]["on_hand_delta"] == 7
    assert body["movement"]["actor"] == "staff:staffer"
    assert body["level"] == {**body["level"], "item": "HOOD-M", "location": "WH", "on_hand": 7, "atp": 7}
    assert body["incident"] is None


def test_count_sets_on_hand_and_sale_removes(staff_api, shelf):
    move(staff_api, quantity=10, idempotency_key="a")
    counted = move(staff_api, kind="count", quantity=4, idempotency_key="b").json()
    assert counted["movement"]["on_hand_delta"] == -6 and counted["level"]["on_hand"] == 4
    sold = move(staff_api, kind="pos_sale", quantity=1, idempotency_key="c").json()
    assert sold["level"]["on_hand"] == 3
    adjusted = move(staff_api, kind="adjustment", quantity=-2, idempotency_key="d").json()
    assert adjusted["level"]["on_hand"] == 1


def test_replay_returns_the_first_answer_and_other_body_is_422(staff_api, shelf):
    first = move(staff_api, quantity=5)
    move(staff_api, quantity=3, idempotency_key="later")
    replay = move(staff_api, quantity=5)
    assert replay.status_code == first.status_code == 201
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    reused = move(staff_api, quantity=6)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert Movement.objects.filter(item__sku="HOOD-M").count() == 2
    assert StockLevel.objects.get(item__sku="HOOD-M", location__code="WH").on_hand == 8


def test_sale_below_zero_at_a_warehouse_is_409_and_changes_nothing(staff_api, shelf):
    move(staff_api, quantity=2)
    response = move(staff_api, kind="pos_sale", quantity=3, idempotency_key="k2")
    assert response.status_code == 409 and response.json()["code"] == "negative_stock"
    assert StockLevel.objects.get(item__sku="HOOD-M", location__code="WH").on_hand == 2
    assert Movement.objects.count() == 1


def test_store_sale_into_reserved_stock_reports_an_incident(staff_api, shelf):
    store, _, hoodie = shelf
    stock(hoodie, store, 2)
    StockLevel.objects.filter(item=hoodie, location=store).update(reserved=2)
    Movement.objects.create(item=hoodie, location=store, kind="reserve", reserved_delta=2)
    response = move(staff_api, location="S1", kind="pos_sale", quantity=1)
    assert response.status_code == 201
    assert response.json()["incident"]["kind"] == Incident.Kind.POS_INTO_RESERVED
    assert response.json()["level"]["on_hand"] == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"location": "NOWHERE"}, "location"),
        ({"item": "NOPE"}, "item"),
        ({"kind": "reserve"}, "kind"),
        ({"kind": "theft"}, "kind"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "lots"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": 10**13}, "quantity"),
        ({"quantity": None}, "quantity"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "x" * 121}, "idempotency_key"),
        ({"note": "n" * 501}, "note"),
    ],
)
def test_bad_movements_are_400_and_change_nothing(staff_api, shelf, body, field):
    response = move(staff_api, **body)
    assert response.status_code == 400, response.json()
    assert field in error_fields(response.json())
    assert not Movement.objects.exists()


def test_movement_without_body_fields_is_400(staff_api, shelf):
    response = staff_api.post("/api/v1/stock/movements/", {}, format="json", HTTP_IDEMPOTENCY_KEY="m-empty")
    assert response.status_code == 400
    assert {"location", "item", "kind", "quantity"} <= error_fields(response.json())
    keyless = staff_api.post("/api/v1/stock/movements/", {}, format="json")
    assert keyless.status_code == 400 and error_fields(keyless.json()) == {"Idempotency-Key"}


def test_movements_list_filters_and_paginates(staff_api, shelf):
    for n in range(3):
        move(staff_api, quantity=1, idempotency_key=f"r{n}")
    move(staff_api, location="S1", kind="pos_sale", quantity=1, idempotency_key="s")
    everything = staff_api.get("/api/v1/stock/movements/").json()
    assert everything["count"] == 4
    assert everything["results"][0]["kind"] == "pos_sale"  # newest first
    assert staff_api.get("/api/v1/stock/movements/?location=S1").json()["count"] == 1
    assert staff_api.get("/api/v1/stock/movements/?kind=receipt&item=HOOD-M").json()["count"] == 3
    page = staff_api.get("/api/v1/stock/movements/?page_size=2&page=1").json()
    assert page["count"] == 4
    assert staff_api.get("/api/v1/stock/movements/?kind=nonsense").status_code == 400


def test_levels_show_atp_and_filter_by_codes(staff_api, shelf):
    store, warehouse, hoodie = shelf
    stock(hoodie, warehouse, 10, safety=3)
    StockLevel.objects.filter(item=hoodie, location=warehouse).update(reserved=2)
    stock(hoodie, store, 1)
    response = staff_api.get("/api/v1/stock/levels/?item=HOOD-M&location=WH")
    assert response.status_code == 200
    (level,) = response.json()["results"]
    assert level["on_hand"] == 10 and level["reserved"] == 2 and level["safety"] == 3 and level["atp"] == 5
    assert staff_api.get("/api/v1/stock/levels/?item=HOOD-M").json()["count"] == 2


def test_levels_are_zero_atp_at_a_stale_supplier_location(staff_api, shelf):
    from datetime import timedelta

    from django.utils import timezone

    supplier = LocationFactory(code="SUP", kind="supplier", stock_valid_until=timezone.now() - timedelta(minutes=1))
    stock(shelf[2], supplier, 50)
    (level,) = staff_api.get("/api/v1/stock/levels/?location=SUP").json()["results"]
    assert level["on_hand"] == 50 and level["atp"] == 0


def test_levels_list_query_count_is_constant(staff_api, shelf, django_assert_num_queries, settings):
    settings.API_TOKEN_CACHE_SECONDS = 3600  # the count must not depend on how fast this machine is
    items = [ItemFactory(sku=f"I{n}") for n in range(15)]
    for item in items:
        stock(item, shelf[1], 2)
    staff_api.get("/api/v1/locations/")  # reads the token (remembered for a moment) and records its use
    with django_assert_num_queries(2):  # count, page
        response = staff_api.get("/api/v1/stock/levels/")
    assert response.json()["count"] == 15


@pytest.mark.parametrize("path", ["locations/", "items/", "products/", "stock/movements/", "stock/levels/"])
def test_channel_tokens_and_anonymous_calls_are_refused(client, channel_api, path):
    from apps.channels.models import Channel

    Channel.objects.create(code="shop", name="Shop")
    assert channel_api("shop").get(f"/api/v1/{path}").status_code == 403
    assert client.get(f"/api/v1/{path}").status_code in (401, 403)
