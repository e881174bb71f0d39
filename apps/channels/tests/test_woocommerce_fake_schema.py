"""The WooCommerce fake answers in WooCommerce's published REST schema, for every field the connector reads.

WooCommerce publishes its REST schema in code: each controller's ``get_item_schema()`` (and
``get_collection_params()`` for the query). The facts below were read from WooCommerce's controllers
(``plugins/woocommerce/includes/rest-api/Controllers/Version2`` and ``Version3``; ``wc/v3`` classes
extend the ``V2`` ones) and are written down here, field -> JSON type, with the controller named:
nothing is fetched at test time. A type ``"date-time"`` is WooCommerce's: a string
``YYYY-MM-DDTHH:MM:SS`` without a zone, or null when there is no such date (``wc_rest_prepare_date_response``).
``"mixed"`` is what the schema says of ids it lets through unchecked; WooCommerce sends integers there.

If the connector starts reading a field that is not here, or the fake changes a field's type, this
test fails, as production would.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import ChannelRef
from apps.channels.connectors.woocommerce import (
    PRODUCT_FIELDS,
    REST_LINE_FIELDS,
    REST_ORDER_FIELDS,
    VARIATION_FIELDS,
    WooCommerceConnector,
)
from apps.channels.tests.test_connector_woocommerce import Receiver
from sandbox.fakes.woocommerce import ORDER_STATUSES, WooCommerceFake

Schema = Mapping[str, Any]  # field -> type name, or a nested Schema for an object / a list of objects

# WC_REST_Orders_V2_Controller::get_item_schema (wc/v3: WC_REST_Orders_Controller, which only marks
# coupon_lines.discount read-only). Webhook bodies of order.created/updated are this object too
# (WC_Webhook::build_payload asks the REST API for the order).
ORDER_SCHEMA: Schema = {
    "id": "integer",
    "parent_id": "integer",
    "number": "string",
    "status": "string",
    "currency": "string",
    "date_created_gmt": "date-time",
    "date_modified_gmt": "date-time",
    "date_paid_gmt": "date-time",
    "date_completed_gmt": "date-time",
    "total": "string",
    "customer_id": "integer",
    "line_items": [
        {
            "id": "integer",
            "name": "string",  # "mixed" in the schema: the item's name
            "product_id": "mixed",
            "variation_id": "integer",
            "quantity": "integer",
            "tax_class": "string",
            "subtotal": "string",
            "total": "string",
            "sku": "string|null",  # null when the product was deleted since (get_order_item_data)
            "price": "number",
            "meta_data": "array",
        }
    ],
    "refunds": [{"id": "integer", "reason": "string", "total": "string"}],
}
# WC_REST_Order_Refunds_V2_Controller::get_item_schema (GET /orders/<id>/refunds).
REFUND_SCHEMA: Schema = {
    "id": "integer",
    "date_created_gmt": "date-time",
    "amount": "string",
    "reason": "string",
    "refunded_by": "integer",
    "refunded_payment": "boolean",
    "line_items": [
        {
            "id": "integer",
            "name": "string",  # "mixed" in the schema
            "product_id": "mixed",
            "variation_id": "integer",
            "quantity": "integer",  # negative: units refunded
            "sku": "string",
            "price": "number",
        }
    ],
}
# WC_REST_Products_V2_Controller::get_item_schema (wc/v3: WC_REST_Products_Controller).
PRODUCT_SCHEMA: Schema = {
    "id": "integer",
    "name": "string",
    "type": "string",
    "status": "string",
    "sku": "string",
    "manage_stock": "boolean",
    "stock_quantity": "integer|null",  # null while stock is not managed
    "stock_status": "string",
    "parent_id": "integer",
    "variations": "array",  # of integers
    "date_modified_gmt": "date-time",
}
PRODUCT_TYPES = {"simple", "grouped", "external", "variable"}
# WC_REST_Product_Variations_V2_Controller::get_item_schema: manage_stock is "mixed" there: true, false or
# "parent" when the parent product keeps the count.
VARIATION_SCHEMA: Schema = {
    "id": "integer",
    "name": "string",
    "sku": "string",
    "manage_stock": "boolean|parent",
    "stock_quantity": "integer|null",
    "stock_status": "string",
    "parent_id": "integer",
    "attributes": "array",
}
# WC_REST_Webhooks_V2_Controller::get_item_schema (the secret is write-only: context "edit", never shown).
WEBHOOK_SCHEMA: Schema = {
    "id": "integer",
    "name": "string",
    "status": "string",
    "topic": "string",
    "resource": "string",
    "event": "string",
    "hooks": "array",
    "delivery_url": "string",
    "date_created_gmt": "date-time",
}
WEBHOOK_STATUSES = {"active", "paused", "disabled"}
# WC_REST_Orders_Controller::get_collection_params (wc/v3): status is a list of "any", "trash" and the order
# statuses (wc_get_order_statuses without "wc-"); WC_REST_CRUD_Controller: per_page 1..100, orderby one of these.
ORDER_QUERY_STATUSES = {"any", "trash", *ORDER_STATUSES}
ORDERBY = {"date", "id", "include", "title", "slug", "modified"}
# WC_Webhook::build_payload: a deleted resource's body is its id alone.
DELETED_WEBHOOK_SCHEMA: Schema = {"id": "integer"}

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def type_errors(value: Any, schema: Schema, where: str = "") -> list[str]:
    """Every field of ``schema`` present in ``value`` and not of its type (names missing from ``value`` too)."""
    errors = []
    if not isinstance(value, dict):
        return [f"{where or 'the body'} is not an object"]
    for name, expected in schema.items():
        path = f"{where}{name}"
        if name not in value:
            errors.append(f"{path} missing")
            continue
        got = value[name]
        if isinstance(expected, list):
            if not isinstance(got, list):
                errors.append(f"{path} is not a list")
            for n, item in enumerate(got if isinstance(got, list) else []):
                errors += type_errors(item, expected[0], f"{path}[{n}].")
        elif not any(_is(got, kind) for kind in str(expected).split("|")):
            errors.append(f"{path} is {got!r}, not {expected}")
    return errors


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "mixed"):  # "mixed" ids: WooCommerce sends integers
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "null":
        return value is None
    if kind == "parent":
        return value == "parent"
    if kind == "date-time":
        return value is None or (isinstance(value, str) and bool(DATE.match(value)))
    raise AssertionError(f"unknown schema type {kind}")


@pytest.fixture
def store() -> Iterator[WooCommerceFake]:
    fake = WooCommerceFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_the_connector_reads_only_fields_woocommerce_publishes() -> None:
    line_schema = ORDER_SCHEMA["line_items"][0]
    assert set(REST_ORDER_FIELDS) <= set(ORDER_SCHEMA)
    assert set(REST_LINE_FIELDS) <= set(line_schema)
    assert set(PRODUCT_FIELDS.split(",")) <= set(PRODUCT_SCHEMA)
    assert set(VARIATION_FIELDS.split(",")) <= set(VARIATION_SCHEMA)
    # What the refund read asks for (``_fields``) and reads.
    assert {"id", "date_created_gmt", "line_items"} <= set(REFUND_SCHEMA)
    assert {"product_id", "variation_id", "quantity"} <= set(REFUND_SCHEMA["line_items"][0])


def test_the_fakes_orders_refunds_products_variations_and_webhooks_follow_the_schema(
    store: WooCommerceFake, receiver: Receiver
) -> None:
    store.set_webhook(receiver.url, "hook-secret")
    mug = store.add_product(sku="MUG", stock_quantity=20)
    untracked = store.add_product(sku="POSTER", manage_stock=False, stock_quantity=None)
    shirt = store.add_product(sku="SHIRT")
    small = store.add_variation(shirt, sku="SHIRT-S", stock_quantity=5)
    order_id = store.create_order([(mug, 2), (f"{shirt}/{small}", 1)])
    store.refund_order(order_id, {mug: 1}, reason="damaged")
    store.edit_order(order_id, {mug: 3})
    done = store.create_order([(mug, 1)], status="completed")
    store.delete_order(done)
    channel = ChannelRef(id=1, code="web", settings=store.channel_settings(), credentials=store.channel_credentials())
    connector = connector_named("woocommerce")
    assert isinstance(connector, WooCommerceConnector)

    def get(path: str, **params: str) -> Any:
        return connector._call(channel, "GET", path, params=params)

    orders = get("orders", status="any", per_page="100") + get("orders", status="trash")
    assert len(orders) == 2
    for order in orders:
        assert type_errors(order, ORDER_SCHEMA) == [], order["id"]
        assert order["status"] in ORDER_QUERY_STATUSES
    refunds = get(f"orders/{order_id}/refunds")
    assert refunds and all(type_errors(r, REFUND_SCHEMA) == [] for r in refunds)
    assert refunds[0]["line_items"][0]["quantity"] == -1
    products = get("products", per_page="100")
    assert {p["type"] for p in products} <= PRODUCT_TYPES
    for product in products:
        assert type_errors(product, PRODUCT_SCHEMA) == [], product["id"]
    assert next(p for p in products if p["id"] == untracked)["stock_quantity"] is None
    assert next(p for p in products if p["id"] == shirt)["variations"] == [small]
    for variation in get(f"products/{shirt}/variations"):
        assert type_errors(variation, VARIATION_SCHEMA) == []
    for hook in get("webhooks", status="all"):
        assert type_errors(hook, WEBHOOK_SCHEMA) == [] and hook["status"] in WEBHOOK_STATUSES
        assert "secret" not in hook
    # The webhook bodies: orders as the REST API shows them; a deletion carries the id alone.
    deliveries = store.wait_for_deliveries(5)  # two created, two updated, one deleted
    time.sleep(0.2)
    assert len(receiver.received) == len(deliveries)
    for headers, body in receiver.received:
        payload = json.loads(body)
        schema = DELETED_WEBHOOK_SCHEMA if headers["X-WC-Webhook-Topic"] == "order.deleted" else ORDER_SCHEMA
        assert type_errors(payload, schema) == [], headers["X-WC-Webhook-Topic"]


def test_the_connectors_order_queries_stay_within_the_published_parameters(store: WooCommerceFake) -> None:
    mug = store.add_product(sku="MUG", stock_quantity=20)
    order_id = store.create_order([(mug, 1)])
    store.refund_order(order_id, {mug: 1})
    channel = ChannelRef(id=1, code="web", settings=store.channel_settings(), credentials=store.channel_credentials())
    connector = connector_named("woocommerce")
    connector.orders_since(channel, None)
    connector.orders_since(channel, datetime.now(UTC) - timedelta(hours=1))
    connector.orders_get(channel, [str(order_id), "999999"])

    reads = [r for r in store.requests("/wc/v3/orders") if not r["path"].endswith("/refunds")]
    assert len(reads) >= 4
    for read in reads:
        query = read["query"]
        assert set(query.get("status", "any").split(",")) <= ORDER_QUERY_STATUSES
        assert 1 <= int(query.get("per_page", "10")) <= 100
        assert query.get("orderby", "date") in ORDERBY
        assert read["status"] == 200
