"""/healthz: ok, degraded when Redis or the broker is gone, 503 without the database."""

from __future__ import annotations

import copy
import socket

import pytest
from django.db import connection
from django.test import override_settings
from kombu import pools as kombu_pools

from inventory_site.celery import app as celery_app


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker_down():
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{closed_port()}/0"
    _new_broker_pool()
    yield
    celery_app.conf.broker_url = original
    _new_broker_pool()


def _new_broker_pool() -> None:
    """Close the app's connections and forget its pools: a closed pool, kept in kombu's registry,
    refuses every later acquire ("Acquire on closed pool") and broke the next test using the broker."""
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def redis_down(settings):
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(CACHES=caches):  # Django drops its cache handlers on this change
        yield


@pytest.mark.django_db
def test_all_dependencies_answer(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {"database", "redis", "broker", "secrets"}


@pytest.mark.django_db
def test_redis_down_is_degraded_not_down(client, redis_down):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] and not body["checks"]["redis"]["ok"]
    assert "error" in body["checks"]["redis"]


@pytest.mark.django_db
def test_broker_down_is_degraded(client, broker_down):
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"
    assert not body["checks"]["broker"]["ok"]


@pytest.mark.django_db(transaction=True)
def test_database_down_is_503(client):
    original = connection.settings_dict["PORT"], connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", closed_port()
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"], connection.settings_dict["HOST"] = original
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert not body["checks"]["database"]["ok"]


@pytest.mark.django_db
def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_method_total" in response.content
