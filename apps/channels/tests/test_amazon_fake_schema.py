"""The Amazon fake's requests and answers against Amazon's published SP-API models for the pinned versions.

Amazon publishes its SP-API models (OpenAPI 2) and generates its Python SDK, ``amzn-sp-api``, from them:
each model becomes a class whose ``swagger_types``/``attribute_map`` name every field and its type, whose
setters refuse ``None`` for a required field and list the allowed values of an enum field, and each
operation a method naming its path and query parameters. The test downloads that package with pip at
test time (nothing of it is kept in the repository; a copy is cached under ``var/cache/``), reads those
classes with ``ast`` (the SDK is not imported), drives the connector against the fake, and checks:

- every request the connector sent (Orders 2026-01-01 ``searchOrders``/``getOrder``, Orders v0
  ``getOrders``/``getOrder``/``getOrderItems``, Feeds ``createFeed``) goes to an operation's path with only
  the query parameters that operation has, enum values among the published ones, bodies with the
  published fields;
- every answer of the fake to those requests has only published fields, of their types, with every
  required field and enum values among the published ones.

``fulfilledBy`` and ``includedData`` are enums of the query only (no model class in the SDK): their values
were checked by hand against the published model (``MERCHANT``/``AMAZON``; ``FULFILLMENT`` among eleven
datasets). Without pip or the registry the test is skipped and says why.
"""

from __future__ import annotations

import ast
import fcntl
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from apps.channels.connectors.amazon import AmazonConnector
from apps.channels.connectors.base import ChannelRef, QuantityUpdate
from sandbox.fakes.amazon import AmazonFake

PACKAGE = os.environ.get("AMAZON_SDK_PACKAGE", "amzn-sp-api==1.13.0")
CACHE = Path(settings.VAR_DIR) / "cache" / "amzn-sp-api"
connector = AmazonConnector()


@dataclass
class Model:
    fields: dict[str, str] = field(default_factory=dict)  # json key -> SDK type ("str", "List[OrderItem]", ...)
    required: set[str] = field(default_factory=set)  # json keys
    enums: dict[str, list[str]] = field(default_factory=dict)  # json key -> allowed values
    values: list[str] = field(default_factory=list)  # an enum model's values


@dataclass
class Operation:
    path: str
    method: str
    query: list[str]


def sdk() -> zipfile.ZipFile:
    CACHE.mkdir(parents=True, exist_ok=True)
    # Parallel runners share the cache: one downloads, the others wait for its copy.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _cached_sdk()


def _cached_sdk() -> zipfile.ZipFile:
    wheels = sorted(CACHE.glob("amzn_sp_api-*.whl"))
    if not wheels:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "-d", str(CACHE), "-q"],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"pip download {PACKAGE} took over 5 minutes: the package registry is not reachable")
        wheels = sorted(CACHE.glob("amzn_sp_api-*.whl"))
        if done.returncode or not wheels:
            pytest.skip(f"pip download {PACKAGE} failed (no registry?): {done.stderr.strip()[-300:]}")
    return zipfile.ZipFile(wheels[-1])


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def models(archive: zipfile.ZipFile, package: str) -> dict[str, Model]:
    found: dict[str, Model] = {}
    for name in archive.namelist():
        if not name.startswith(f"spapi/models/{package}/") or not name.endswith(".py"):
            continue
        tree = ast.parse(archive.read(name))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            model = found.setdefault(cls.name, Model())
            types: dict[str, str] = {}
            keys: dict[str, str] = {}
            for node in cls.body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    target, value = node.targets[0].id, _literal(node.value)
                    if target == "swagger_types":
                        types = value or {}
                    elif target == "attribute_map":
                        keys = value or {}
                    elif target.isupper() and isinstance(value, str):
                        model.values.append(value)
            model.fields = {keys[attr]: kind for attr, kind in types.items() if attr in keys}
            for node in cls.body:
                if not isinstance(node, ast.FunctionDef) or node.name not in keys:
                    continue
                if not any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in node.decorator_list):
                    continue
                source = ast.unparse(node)
                if "must not be `None`" in source:
                    model.required.add(keys[node.name])
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Assign)
                        and isinstance(inner.targets[0], ast.Name)
                        and inner.targets[0].id == "allowed_values"
                    ):
                        model.enums[keys[node.name]] = list(_literal(inner.value) or [])
    return found


def operations(archive: zipfile.ZipFile, package: str) -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for name in archive.namelist():
        if not name.startswith(f"spapi/api/{package}/") or not name.endswith(".py"):
            continue
        tree = ast.parse(archive.read(name))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef) or not function.name.endswith("_with_http_info"):
                continue
            words = function.name.removesuffix("_with_http_info").split("_")
            operation = words[0] + "".join(w.title() for w in words[1:])
            query: list[str] = []
            path = method = ""
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    if node.func.attr == "append" and ast.unparse(node.func.value) == "query_params":
                        pair = node.args[0]
                        if isinstance(pair, ast.Tuple):
                            query.append(str(_literal(pair.elts[0])))
                    elif node.func.attr == "call_api":
                        path, method = str(_literal(node.args[0])), str(_literal(node.args[1]))
            found[operation] = Operation(path, method, query)
    return found


def shape_errors(value: Any, kind: str, schema: dict[str, Model], where: str) -> list[str]:
    """What in ``value`` the published type ``kind`` does not allow."""
    if value is None:
        return []
    if kind.startswith("List["):
        if not isinstance(value, list):
            return [f"{where}: a {type(value).__name__}, not a list"]
        return [e for n, v in enumerate(value) for e in shape_errors(v, kind[5:-1], schema, f"{where}[{n}]")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}
    if kind in simple:
        ok = isinstance(value, simple[kind]) and not (kind in ("int", "float") and isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not a {kind}"]
    model = schema.get(kind)
    if model is None:
        return [f"{where}: type {kind} not in the published models"]
    if model.values:
        return [] if value in model.values else [f"{where}: {value!r} is not a {kind} ({model.values})"]
    if not model.fields and not isinstance(value, dict):
        return []  # a named simple type (SKU, Asin, Decimal)
    if not isinstance(value, dict):
        return [f"{where}: not an object ({kind})"]
    errors = [f"{where}.{key}: not a field of {kind}" for key in value if key not in model.fields]
    errors += [f"{where}.{key}: required by {kind}, missing" for key in model.required if key not in value]
    for key, item in value.items():
        if key in model.fields:
            errors += shape_errors(item, model.fields[key], schema, f"{where}.{key}")
        if key in model.enums and item is not None and item not in model.enums[key]:
            errors.append(f"{where}.{key}: {item!r} not among {model.enums[key]}")
    return errors


def request_errors(request: dict[str, Any], operation: Operation) -> list[str]:
    pattern = re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(operation.path))
    errors = []
    if not re.fullmatch(pattern, request["path"]) or request["method"] != operation.method:
        errors.append(f"{request['method']} {request['path']} is not {operation.method} {operation.path}")
    errors += [
        f"query parameter {name} is not one of {operation.query}"
        for name in request["query"]
        if name not in operation.query
    ]
    return errors


@pytest.fixture
def fake() -> Iterator[AmazonFake]:
    amazon = AmazonFake(settle_s=1.0, rates={"getOrderItems": (50.0, 100), "createFeed": (5.0, 20)}).start()
    yield amazon
    amazon.stop()


def _orders(fake: AmazonFake) -> list[str]:
    fake.add_listing("SOCK", 500)
    fake.add_listing("MUG", 500)
    ids = [fake.create_order([("SOCK", 1), ("MUG", 2)]) for _ in range(23)]
    fake.create_order([("MUG", 1)], status="Pending")
    fake.ship_order(ids[0], {"MUG": 2})
    fake.ship_order(ids[1])
    fake.cancel_order(ids[2])
    fake.change_order(ids[3], "SOCK", 4)
    fake.create_order([("SOCK", 1)], fulfillment_channel="AFN")
    return ids


def _channel(fake: AmazonFake, **settings: str) -> ChannelRef:
    config = fake.channel_settings()
    return ChannelRef(7, "amazon-us", {**config["settings"], **settings}, config["credentials"])


def _poll(channel: ChannelRef, since: datetime) -> None:
    page = connector.orders_since(channel, since)
    while page.next_cursor:
        page = connector.orders_since(channel, since, page.next_cursor)


def _answers(fake: AmazonFake, operation: str) -> list[Any]:
    """The fake's answers to the first-page requests the connector sent, asked again over HTTP."""
    token = connector_token(fake)
    answers = []
    for request in fake.requests(operation):
        if any(name in request["query"] for name in ("NextToken", "paginationToken")):
            continue  # a page token is good once
        query = {k: v[0] for k, v in request["query"].items()}
        answer = requests.get(
            fake.url + request["path"], params=query, headers={"x-amz-access-token": token}, timeout=5
        )
        assert answer.status_code in (200, 404), answer.text
        answers.append((answer.status_code, answer.json()))
    return answers


def connector_token(fake: AmazonFake) -> str:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": fake.refresh_token,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    return str(requests.post(fake.token_url, data=form, timeout=5).json()["access_token"])


@pytest.mark.slow
def test_orders_2026_01_01_requests_and_answers_follow_amazons_published_model(fake) -> None:
    archive = sdk()
    schema, ops = models(archive, "orders_v2026_01_01"), operations(archive, "orders_v2026_01_01")
    assert {"searchOrders", "getOrder"} <= set(ops) and "Order" in schema
    # The check bites: a field Amazon does not have, a required one missing, a wrong type, an unknown enum value.
    broken = {"orders": [{"orderId": 5, "shippedQuantity": 1, "fulfillment": {"fulfillmentStatus": "DONE"}}]}
    found = shape_errors(broken, "SearchOrdersResponse", schema, "s")
    assert "s.orders[0].shippedQuantity: not a field of Order" in found
    assert "s.orders[0].createdTime: required by Order, missing" in found
    assert "s.orders[0].orderId: 5 is not a str" in found
    assert any(e.startswith("s.orders[0].fulfillment.fulfillmentStatus: 'DONE'") for e in found)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ids = _orders(fake)
    channel = _channel(fake)
    _poll(channel, since)
    fake.delete_order(ids[5])
    connector.orders_get(channel, ids[:6])

    errors: list[str] = []
    for operation in ("searchOrders", "getOrder"):
        sent = fake.requests(operation)
        assert sent, operation
        for request in sent:
            errors += request_errors(request, ops[operation])
            for value in request["query"].get("fulfillmentStatuses", [""])[0].split(","):
                if value and value not in schema["FulfillmentStatus"].values:
                    errors.append(f"fulfillmentStatuses {value} is not a FulfillmentStatus")
    for _, body in _answers(fake, "searchOrders"):
        errors += shape_errors(body, "SearchOrdersResponse", schema, "searchOrders")
    for status, body in _answers(fake, "getOrder"):
        errors += shape_errors(body, "GetOrderResponse" if status == 200 else "ErrorList", schema, "getOrder")
    assert errors == []


@pytest.mark.slow
def test_orders_v0_requests_and_answers_follow_amazons_published_model(fake) -> None:
    archive = sdk()
    schema, ops = models(archive, "orders_v0"), operations(archive, "orders_v0")
    assert {"getOrders", "getOrder", "getOrderItems"} <= set(ops)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ids = _orders(fake)
    channel = _channel(fake, orders_api="v0")
    _poll(channel, since)
    connector.orders_get(channel, ids[:4])

    errors: list[str] = []
    for operation in ("getOrders", "getOrder", "getOrderItems"):
        sent = fake.requests(operation)
        assert sent, operation
        for request in sent:
            errors += request_errors(request, ops[operation])
    for request in fake.requests("getOrders"):
        for value in request["query"]["OrderStatuses"][0].split(","):
            if value not in schema["Order"].enums["OrderStatus"]:
                errors.append(f"OrderStatuses {value} is not an OrderStatus")
        if request["query"]["FulfillmentChannels"][0] not in schema["Order"].enums["FulfillmentChannel"]:
            errors.append("FulfillmentChannels is not a FulfillmentChannel")
    for _, body in _answers(fake, "getOrders"):
        errors += shape_errors(body, "GetOrdersResponse", schema, "getOrders")
    for _, body in _answers(fake, "getOrder"):
        errors += shape_errors(body, "GetOrderResponse", schema, "getOrder")
    for _, body in _answers(fake, "getOrderItems"):
        errors += shape_errors(body, "GetOrderItemsResponse", schema, "getOrderItems")
    assert errors == []


@pytest.mark.slow
def test_the_listings_feed_submission_follows_amazons_published_feeds_model(fake) -> None:
    archive = sdk()
    schema, ops = models(archive, "feeds_v2021_06_30"), operations(archive, "feeds_v2021_06_30")
    for n in range(30):
        fake.add_listing(f"SKU-{n:02d}", 0)
    channel = _channel(fake, product_type="PRODUCT")
    result = connector.push(channel, [QuantityUpdate(n, f"SKU-{n:02d}", "", 4, None) for n in range(30)])
    assert len(result.accepted) == 30

    errors: list[str] = []
    for operation, body_type in (
        ("createFeedDocument", "CreateFeedDocumentSpecification"),
        ("createFeed", "CreateFeedSpecification"),
    ):
        (request,) = fake.requests(operation)
        errors += request_errors(request, ops[operation])
        errors += shape_errors(request["body"], body_type, schema, operation)
    assert errors == []
