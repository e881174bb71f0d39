"""An order through the API is one INFO line (`order_in` or `order_refused`); a replay logs nothing more."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"


@pytest.fixture
def web(shop, channel_api):
    return channel_api("web")


def post(client, body, key):
    return client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def order_lines(logs):
    return [entry for entry in logs if entry["event"] in ("order_in", "order_refused")]


def test_an_order_in_a_refusal_and_a_replay(web, shop):
    with capture_logs() as logs:
        taken = post(web, {"external_id": "W1", "lines": [{"sku": "hood", "quantity": 2}]}, "k-1")
        refused = post(web, {"external_id": "W2", "lines": [{"sku": "hood", "quantity": 99}]}, "k-2")
        post(web, {"external_id": "W1", "lines": [{"sku": "hood", "quantity": 2}]}, "k-1")  # a replay
    assert (taken.status_code, refused.status_code) == (201, 409)
    (order_in, order_refused) = order_lines(logs)
    assert order_in["log_level"] == "info" and order_in["event"] == "order_in"
    assert (order_in["channel"], order_in["external_id"], order_in["units"], order_in["order"]) == (
        "web",
        "W1",
        2,
        taken.json()["id"],
    )
    assert order_in["status"] == "reserved" and order_in["mode"] == "reserve"
    assert order_refused["log_level"] == "info"
    assert (order_refused["code"], order_refused["http_status"], order_refused["units"]) == (
        "insufficient_stock",
        409,
        99,
    )
    # The request line itself is housekeeping.
    assert {entry["log_level"] for entry in logs if entry["event"] == "request"} <= {"debug"}
