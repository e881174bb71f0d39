"""The OpenAPI schema is served, valid OpenAPI 3, and the docs page loads without a network."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_schema_is_valid_openapi(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate(schema)
    assert schema["info"]["title"] == "Stockroom API"
    assert "/api/v1/whoami/" in schema["paths"]


def test_docs_page_is_self_contained(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content


# Authenticated by the sender's signature, not a token; deduplicated by their own delivery ids, not a key.
SIGNED_WEBHOOKS = {"/api/v1/suppliers/{code}/webhook/", "/api/v1/channels/{code}/webhooks/{connector}/"}


@pytest.fixture
def schema(client) -> dict:
    return yaml.safe_load(client.get("/api/v1/schema/").content)


def _operations(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_the_schema_generates_without_a_single_warning(tmp_path):
    GENERATOR_STATS.reset()
    # --fail-on-warn raises on any warning or error drf-spectacular emits while generating.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").stat().st_size > 10_000


def test_every_error_answer_is_the_one_error_component(schema):
    error_refs = set()
    for method, path, operation in _operations(schema):
        errors = {code: answer for code, answer in operation["responses"].items() if int(code) >= 400}
        assert {"400", "503"} <= set(errors), (method, path)
        if operation.get("security") != [{}] and path not in SIGNED_WEBHOOKS:
            assert {"401", "403", "429"} <= set(errors), (method, path)
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            assert "413" in errors, (method, path)
            assert "409" in errors or path in SIGNED_WEBHOOKS, (method, path)
        for answer in errors.values():
            error_refs.add(answer["content"]["application/json"]["schema"]["$ref"])
            assert answer["description"], (method, path)
    assert error_refs == {"#/components/schemas/Error"}
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "detail", "errors"}
    assert error["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ErrorEntry"}


def test_mutating_calls_document_the_idempotency_headers(schema):
    for method, path, operation in _operations(schema):
        if method not in {"POST", "PUT", "PATCH", "DELETE"} or path in SIGNED_WEBHOOKS:
            continue
        header = next(p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key")
        moves_stock = path.startswith("/api/v1/orders/") or path == "/api/v1/stock/movements/"
        assert header.get("required", False) is moves_stock, (method, path)
        assert "422" in operation["responses"], (method, path)
        success = next(answer for code, answer in operation["responses"].items() if code.startswith("2"))
        assert "Idempotent-Replayed" in success["headers"], (method, path)


def test_each_operation_has_its_own_plain_description(schema):
    descriptions = [operation.get("description", "") for _, _, operation in _operations(schema)]
    assert all(descriptions) and len(set(descriptions)) == len(descriptions)
    text = yaml.safe_dump(schema)
    for internal in ("``", "order_body", "Mixed into", "select_for_update"):
        assert internal not in text, internal


def test_examples_are_a_realistic_order_not_the_limits(schema):
    create = schema["paths"]["/api/v1/orders/"]["post"]
    example = create["requestBody"]["content"]["application/json"]["examples"]
    lines = next(iter(example.values()))["value"]["lines"]
    assert 0 < sum(line["quantity"] for line in lines) < 10
    assert "409" in create["responses"] and "examples" in create["responses"]["409"]["content"]["application/json"]
