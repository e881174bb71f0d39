from __future__ import annotations

import pytest

from apps.catalog.models import Item, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.core.models import IdempotencyRecord
from apps.core.testing import error_fields
from apps.orders.models import Order, OrderEvent
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"


@pytest.fixture
def web(shop, channel_api):
    return channel_api("web")


def post(client, path, body, key="k-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, body, format="json", **headers)


def reserved(item: Item) -> int:
    return sum(StockLevel.objects.filter(item=item).values_list("reserved", flat=True))


def test_create_order_answers_201_with_the_contract_fields(web, shop):
    response = post(web, ORDERS, {"external_id": "W1", "lines": [{"sku": "kit", "quantity": 2}], "hold_minutes": 5})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {"id", "external_id", "status", "lines", "expires_at"} <= set(body)
    assert body["status"] == "reserved" and body["external_id"] == "W1"
    assert body["lines"][0]["sku"] == "kit" and body["lines"][0]["quantity"] == 2
    assert web.get(f"{ORDERS}{body['id']}/").json()["status"] == "reserved"


def test_insufficient_stock_is_409_with_lines_and_a_replay_refuses_the_same_way(web, shop):
    body = {"external_id": "W2", "lines": [{"sku": "hood", "quantity": 99}]}
    response = post(web, ORDERS, body)
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_stock"
    assert response.json()["lines"] == [{"sku": "hood", "requested": 99, "available": 15}]
    again = post(web, ORDERS, body)
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"
    assert reserved(shop.hood) == 0


def test_idempotency_replay_and_key_reuse(web, shop):
    body = {"external_id": "W3", "lines": [{"sku": "hood", "quantity": 1}]}
    first = post(web, ORDERS, body, key="same")
    replay = post(web, ORDERS, body, key="same")
    assert replay.status_code == 201 and replay.json() == first.json()
    reuse = post(web, ORDERS, {**body, "external_id": "W4"}, key="same")
    assert reuse.status_code == 422 and reuse.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1 and reserved(shop.hood) == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"lines": [{"sku": "hood", "quantity": 1}]}, "external_id"),
        ({"external_id": "B", "lines": []}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": 0}]}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": -3}]}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": 10**15}]}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": "many"}]}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": 1}, {"sku": "hood", "quantity": 2}]}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "ghost", "quantity": 1}]}, "lines"),
        ({"external_id": "B", "lines": "hood"}, "lines"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": 1}], "mode": "steal"}, "mode"),
        ({"external_id": "B", "lines": [{"sku": "hood", "quantity": 1}], "hold_minutes": 0}, "hold_minutes"),
    ],
)
def test_bad_input_is_400_with_field_errors_and_changes_nothing(web, shop, body, field):
    response = post(web, ORDERS, body)
    assert response.status_code == 400, response.json()
    assert field in error_fields(response.json())
    assert not Order.objects.exists() and reserved(shop.hood) == 0


def test_field_line_and_conflict_errors_share_one_shape(web, shop):
    """An unknown SKU, a quantity of 0 and a shortage: each a flat list of entries under ``errors``."""
    unknown = post(web, ORDERS, {"external_id": "E1", "lines": [{"sku": "ghost", "quantity": 1}]}, key="e1").json()
    zero = post(web, ORDERS, {"external_id": "E2", "lines": [{"sku": "hood", "quantity": 0}]}, key="e2").json()
    short = post(web, ORDERS, {"external_id": "E3", "lines": [{"sku": "hood", "quantity": 99}]}, key="e3").json()
    assert unknown["errors"] == [
        {"field": "lines[0].sku", "code": "invalid", "detail": "Unknown SKU for this channel."}
    ], unknown
    assert [(e["field"], e["code"]) for e in zero["errors"]] == [("lines[0].quantity", "min_value")], zero
    assert short["errors"] == [
        {
            "sku": "hood",
            "code": "insufficient_stock",
            "detail": "hood: requested 99, available 15.",
            "requested": 99,
            "available": 15,
        }
    ]
    for body in (unknown, zero, short):
        assert set(body) >= {"code", "detail", "errors"}
        assert all({"code", "detail"} <= set(entry) and ({"field", "sku"} & set(entry)) for entry in body["errors"])


def test_missing_idempotency_key_is_400(web, shop):
    response = post(web, ORDERS, {"external_id": "B", "lines": [{"sku": "hood", "quantity": 1}]}, key=None)
    assert response.status_code == 400 and "Idempotency-Key" in error_fields(response.json())


def test_a_channel_sees_only_its_own_orders_and_staff_are_refused(web, shop, channel_api, staff_api):
    order_id = post(web, ORDERS, {"external_id": "W5", "lines": [{"sku": "hood", "quantity": 1}]}).json()["id"]
    channel_of("other", [shop.warehouse])
    other = channel_api("other")
    assert other.get(f"{ORDERS}{order_id}/").status_code == 404
    assert post(other, f"{ORDERS}{order_id}/cancel/", {}, key="x").status_code == 404
    assert staff_api.get(f"{ORDERS}{order_id}/").status_code == 403
    assert post(staff_api, ORDERS, {"external_id": "S", "lines": [{"sku": "hood", "quantity": 1}]}).status_code == 403
    assert Order.objects.get(pk=order_id).status == "reserved"


def test_actions_over_http(web, shop):
    order_id = post(web, ORDERS, {"external_id": "W6", "lines": [{"sku": "hood", "quantity": 3}]}).json()["id"]
    assert post(web, f"{ORDERS}{order_id}/confirm/", {}, key="c").json()["status"] == "confirmed"
    partial = post(web, f"{ORDERS}{order_id}/fulfil/", {"lines": [{"sku": "hood", "quantity": 1}]}, key="f1")
    assert partial.status_code == 200 and partial.json()["status"] == "partially_fulfilled"
    replay = post(web, f"{ORDERS}{order_id}/fulfil/", {"lines": [{"sku": "hood", "quantity": 1}]}, key="f1")
    assert replay.json() == partial.json()  # not shipped twice
    too_many = post(web, f"{ORDERS}{order_id}/fulfil/", {"lines": [{"sku": "hood", "quantity": 5}]}, key="f2")
    assert too_many.status_code == 409
    bad = post(web, f"{ORDERS}{order_id}/fulfil/", {"lines": [{"sku": "kit", "quantity": 1}]}, key="f3")
    assert bad.status_code == 400 and "lines" in error_fields(bad.json())
    assert post(web, f"{ORDERS}{order_id}/fulfil/", {}, key="f4").json()["status"] == "fulfilled"
    assert post(web, f"{ORDERS}{order_id}/return/", {}, key="r").json()["status"] == "returned"
    assert post(web, f"{ORDERS}{order_id}/cancel/", {}, key="x").status_code == 409
    assert StockLevel.objects.get(item=shop.hood, location=shop.warehouse).on_hand == 10
    assert post(web, f"{ORDERS}{order_id}/cancel/", {}, key=None).status_code == 400


def test_import_mode_over_http_is_never_refused(web, shop):
    response = post(web, ORDERS, {"external_id": "MK", "mode": "import", "lines": [{"sku": "hood", "quantity": 20}]})
    assert response.status_code == 201
    assert response.json()["flagged"] is True
    assert response.json()["lines"][0]["unallocated_quantity"] == 5


def test_availability_lists_own_skus_and_zero_for_unknown(web, shop, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = web.get("/api/v1/availability/?sku=hood&sku=kit&sku=ghost")
    assert response.status_code == 200
    rows = {row["sku"]: row for row in response.json()["results"]}
    assert rows["hood"]["available"] == 15 and rows["kit"]["available"] == 7 and rows["ghost"]["available"] == 0
    assert response.json()["unknown"] == ["ghost"]
    assert all(row["as_of"] for row in rows.values())
    assert web.get("/api/v1/availability/").status_code == 400


def test_availability_refuses_a_comma_list_instead_of_reading_one_unknown_sku(web, shop):
    response = web.get("/api/v1/availability/?sku=hood,kit")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "sku" and "?sku=A&sku=B" in response.json()["errors"][0]["detail"]
    both = web.get("/api/v1/availability/?sku=hood&sku=kit").json()
    assert [row["sku"] for row in both["results"]] == ["hood", "kit"] and both["unknown"] == []


def test_availability_does_not_show_another_channels_listing(web, shop):
    other = channel_of("other", [shop.warehouse])
    item = ItemFactory(sku="SECRET")
    stock(item, LocationFactory(code="wh"), 9)
    listing_of(other, "secret", product_of("SECRET-P", {item: 1}))
    assert web.get("/api/v1/availability/?sku=secret").json()["results"][0]["available"] == 0


def test_events_endpoint_parks_applies_and_replays(web, shop):
    cancel = web.post("/api/v1/events/", {"type": "cancel", "external_id": "MK-9", "sequence": 2}, format="json")
    assert cancel.status_code == 201 and cancel.json()["status"] == "parked"
    create = {"type": "create", "external_id": "MK-9", "sequence": 1, "lines": [{"sku": "hood", "quantity": 1}]}
    assert web.post("/api/v1/events/", create, format="json").json()["status"] == "applied"
    assert web.post("/api/v1/events/", create, format="json").status_code == 200
    changed = {**create, "lines": [{"sku": "hood", "quantity": 2}]}
    assert web.post("/api/v1/events/", changed, format="json").status_code == 422
    assert OrderEvent.objects.filter(status="applied").count() == 2
    bad = web.post("/api/v1/events/", {"type": "create", "external_id": "x", "sequence": -1}, format="json")
    assert bad.status_code == 400 and {"sequence", "lines"} & error_fields(bad.json())
    assert IdempotencyRecord.objects.count() == 0


def test_a_channel_finds_its_own_order_by_external_id_and_never_another_channels(web, shop, channel_api):
    assert post(web, ORDERS, {"external_id": "SAME", "lines": [{"sku": "hood", "quantity": 1}]}).status_code == 201
    second = {"external_id": "W9", "lines": [{"sku": "kit", "quantity": 1}]}
    assert post(web, ORDERS, second, key="k-2").status_code == 201
    other = channel_of("other", [shop.warehouse])
    listing_of(other, "hood", shop.hood_product)
    theirs = channel_api("other")
    assert post(theirs, ORDERS, {"external_id": "SAME", "lines": [{"sku": "hood", "quantity": 2}]}).status_code == 201

    found = web.get(ORDERS, {"external_id": "SAME"}).json()
    assert found["count"] == 1
    assert found["results"][0]["lines"] == [
        {"sku": "hood", "quantity": 1, "fulfilled_quantity": 0, "returned_quantity": 0, "unallocated_quantity": 0}
    ]
    assert found["results"][0]["id"] == Order.objects.get(channel=shop.channel, external_id="SAME").pk
    none = {"count": 0, "next": None, "previous": None, "results": []}
    assert web.get(ORDERS, {"external_id": "nope"}).json() == none
    assert [o["external_id"] for o in web.get(ORDERS).json()["results"]] == ["W9", "SAME"]  # newest first
    assert theirs.get(ORDERS, {"external_id": "W9"}).json()["count"] == 0
    assert theirs.get(ORDERS, {"external_id": "SAME"}).json()["results"][0]["lines"][0]["quantity"] == 2
