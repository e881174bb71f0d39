"""Bounded waits on every database connection: a session idle in a transaction is ended and its locks
freed, a web request stuck behind a lock answers 503 instead of hanging, keepalives reach the socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from apps.catalog.models import StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.orders.models import Order
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db(transaction=True)


def session(**overrides: str) -> psycopg.Connection:
    """A second real session with the settings' connection options, some server settings overridden."""
    params = connection.get_connection_params()
    extra = " ".join(f"-c {name}={value}" for name, value in overrides.items())
    params["options"] = f"{params.get('options', '')} {extra}".strip()  # a later -c wins
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def level_row() -> int:
    stock(ItemFactory(sku="HOOD"), LocationFactory(code="wh"), 5)
    return StockLevel.objects.get().pk


def test_every_session_carries_the_configured_bounds():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('idle_in_transaction_session_timeout', "
            "'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')"
        )
        server = dict(cursor.fetchall())
    assert server == {
        "idle_in_transaction_session_timeout": str(settings.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS),
        "tcp_keepalives_idle": str(settings.DATABASE_TCP_KEEPALIVES_IDLE_S),
        "tcp_keepalives_interval": str(settings.DATABASE_TCP_KEEPALIVES_INTERVAL_S),
        "tcp_keepalives_count": str(settings.DATABASE_TCP_KEEPALIVES_COUNT),
        "tcp_user_timeout": str(settings.DATABASE_TCP_USER_TIMEOUT_MS),
    }
    # libpq's own: the client's socket notices a dead server too
    client = connection.connection.info.get_parameters()
    assert client["keepalives"] == "1"
    assert client["keepalives_idle"] == str(settings.DATABASE_TCP_KEEPALIVES_IDLE_S)
    assert client["keepalives_interval"] == str(settings.DATABASE_TCP_KEEPALIVES_INTERVAL_S)
    assert client["keepalives_count"] == str(settings.DATABASE_TCP_KEEPALIVES_COUNT)
    assert client["tcp_user_timeout"] == str(settings.DATABASE_TCP_USER_TIMEOUT_MS)


def test_a_session_idle_in_a_transaction_is_cut_off_and_its_locks_freed():
    pk = level_row()
    stuck = session(idle_in_transaction_session_timeout="1000")
    waiter = session(lock_timeout="10000")
    try:
        stuck.execute("BEGIN")
        stuck.execute("SELECT id FROM catalog_stocklevel WHERE id = %s FOR UPDATE", [pk])
        # ... and its process hangs (or the network cuts it off) before it commits
        started = time.monotonic()
        waiter.execute("SELECT id FROM catalog_stocklevel WHERE id = %s FOR UPDATE", [pk])
        waited = time.monotonic() - started
        assert 0.5 < waited < 5, waited  # freed after the timeout, not when the peer comes back
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            stuck.execute("COMMIT")  # the stuck session learns it was ended; nothing it did is kept
    finally:
        stuck.close()
        waiter.close()


@pytest.fixture
def session_dropped_after() -> Iterator[None]:
    """The request set a 1 s statement timeout on this thread's session: end it before the flush."""
    yield
    connection.close()


@pytest.mark.parametrize(
    "bounds",
    [
        {"DATABASE_WEB_STATEMENT_TIMEOUT_MS": 1000},
        # The lock wait alone is bounded (a session cut off holding the level): the statement timeout stays long.
        {"DATABASE_WEB_STATEMENT_TIMEOUT_MS": 120000, "DATABASE_WEB_LOCK_TIMEOUT_MS": 1000},
    ],
    ids=["statement_timeout", "lock_timeout"],
)
def test_a_web_request_stuck_behind_a_lock_answers_503_within_the_timeout(
    channel_api, session_dropped_after, settings, bounds
):
    for name, value in bounds.items():
        setattr(settings, name, value)
    warehouse = LocationFactory(code="wh")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 10)
    listing_of(channel_of("web", [warehouse]), "hood", product_of("HOOD-P", {hood: 1}))
    client = channel_api("web")
    blocker = session()
    try:
        blocker.execute("BEGIN")
        blocker.execute("SELECT id FROM catalog_stocklevel FOR UPDATE")  # a worker holding the level
        started = time.monotonic()
        response = client.post(
            "/api/v1/orders/",
            {"external_id": "W1", "lines": [{"sku": "hood", "quantity": 1}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        )
        elapsed = time.monotonic() - started
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "statement_timeout"
    assert response["Content-Type"] == "application/json"
    assert elapsed < 5
    assert not Order.objects.exists()  # nothing was changed; the retry with the same key places it
    retry = client.post(
        "/api/v1/orders/",
        {"external_id": "W1", "lines": [{"sku": "hood", "quantity": 1}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert retry.status_code == 201, retry.content


def test_workers_have_no_statement_timeout():
    """Outside a request (a Celery task, a management command) long statements may run."""
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
