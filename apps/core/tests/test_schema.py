"""The OpenAPI schema is served, valid OpenAPI 3, and the docs page loads without a network."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


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
