"""Schemathesis over the whole OpenAPI schema, against a live server: no input is a server error.

Stateless: for every operation it sends generated requests (valid and invalid, the schema's
boundaries included) with a staff token and with a channel token, and checks that the answer
is never a 5xx and that documented answers match the schema. Bounded to well under a minute.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.tests.factories import channel_selling, listing
from apps.core.services import token_create

pytestmark = pytest.mark.django_db(transaction=True)

# Examples per operation, token and mode (valid / invalid input); raise it to hunt for more.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "6"))

# What a channel token may call; the staff token is tried on every operation.
CHANNEL_PATHS = ("/api/v1/availability/", "/api/v1/orders/", "/api/v1/events/", "/api/v1/whoami/", "/api/v1/channels/")

ANY_TEXT = ({"type": "string"}, {"type": "string", "pattern": "^[^/]+$"})


@pytest.fixture
def tokens(django_user_model) -> dict[str, str]:
    """A staff token with every permission and a channel token, on a catalog the cases can hit."""
    django_user_model.objects.create_user(username="fuzz", password="pw-fuzz-1", is_staff=True, is_superuser=True)
    warehouse = LocationFactory(code="WH")
    hoodie = ItemFactory(sku="HOOD-M")
    stock(hoodie, warehouse, 50)
    listing(channel_selling("shop1", [warehouse]), product_of("KIT", {hoodie: 1}), sku="SKU-1")
    return {"staff": token_create(staff_username="fuzz"), "channel": token_create(channel_code="shop1")}


@pytest.mark.slow
def test_no_input_is_a_server_error(live_server, tokens):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/?format=json")
    schema.config.update(base_url=live_server.url)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        if _streams(operation):
            continue  # an open stream never ends (and needs the ASGI server): apps/channels/tests/test_stream.py
        for who, token in tokens.items():
            if who == "channel" and not operation.path.startswith(CHANNEL_PATHS):
                continue  # refused by permission before any input is read: nothing to learn
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if _can_be_invalid(operation) else []
            for mode in modes or [GenerationMode.POSITIVE]:
                try:
                    _exercise(operation, mode, token)
                except Exception as failure:  # every operation is tried; all failures are reported together
                    failures.append(f"{operation.label} ({who} token, {mode.value}): {failure}")
    assert not failures, "\n\n".join(failures)


def _streams(operation: Any) -> bool:
    answer = operation.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in answer.get("content", {})


def _can_be_invalid(operation: Any) -> bool:
    """Whether invalid input can be built at all: a lone path code takes any text, so asking
    Hypothesis for an invalid one only spends seconds before it gives up (Unsatisfiable)."""
    raw = operation.definition.raw
    parameters = raw.get("parameters", [])
    return "requestBody" in raw or any(p["in"] != "path" or p.get("schema", {}) not in ANY_TEXT for p in parameters)


def _exercise(operation: Any, mode: GenerationMode, token: str) -> None:
    strategy = operation.as_strategy(generation_mode=mode, headers={"Authorization": f"Token {token}"})

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any) -> None:
        response = case.call(timeout=30)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    exercise()
