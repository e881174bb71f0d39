"""The database drops connections under load: clear 503s, nothing half-written, recovery by itself.

A real gunicorn serves the test database with persistent connections (CONN_MAX_AGE) and
CONN_HEALTH_CHECKS on, as in production; another connection keeps terminating its backends
with ``pg_terminate_backend`` while client threads record stock movements.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection

from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.core.services import token_create
from apps.core.testing import connect_kwargs
from apps.core.testing import database_url as url_of_test_database

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BASE_DIR = Path(settings.BASE_DIR)
APP_NAME = "stockroom-faults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(application_name: str) -> str:
    return url_of_test_database(connection.settings_dict, application_name=application_name)


@pytest.fixture
def server(tmp_path):
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inventory_site.settings.production",
        "SECRET_KEY": "faults-test-only",
        "DATABASE_URL": database_url(APP_NAME),
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "stockroom-test") + "-faults",
        "LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "ERROR"),
        "API_THROTTLE_RATE": "1000000/min",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback, no TLS proxy in front
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "inventory_site.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=2",
            "--threads=4",
            "--worker-class=gthread",
            "--timeout=30",
            "--log-level=warning",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited: {log_path.read_text()[-2000:]}")
            try:
                requests.get(f"{url}/healthz", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.2)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_dropped_connections_give_503_and_nothing_half_written(server, staff_user):
    server, log_path = server
    LocationFactory(code="WH")
    item = ItemFactory(sku="FAULT")
    staff_user.is_superuser = True  # records movements: a staff token with every permission
    staff_user.save(update_fields=["is_superuser"])
    token = token_create(staff_username=staff_user.username)
    headers = {"Authorization": f"Token {token}"}
    statuses: Counter[int] = Counter()
    bodies_503: list[dict] = []
    others: list[str] = []
    unanswered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    killing = threading.Event()
    killing.set()

    def post(session: requests.Session, key: str) -> requests.Response:
        body = {"location": "WH", "item": "FAULT", "kind": "receipt", "quantity": 1, "idempotency_key": key}
        return session.post(f"{server}/api/v1/stock/movements/", json=body, headers=headers, timeout=15)

    def client(n: int) -> None:
        session = requests.Session()
        step = 0
        while not stop.is_set():
            key = f"c{n}-{step}"
            step += 1
            response = post(session, key)
            with lock:
                statuses[response.status_code] += 1
                if response.status_code != 201:
                    unanswered.append(key)
                if response.status_code == 503:
                    bodies_503.append(response.json())
                elif response.status_code != 201:
                    others.append(f"{response.status_code} {response.text[:2000]}")

    def killer() -> None:
        with psycopg.connect(**connect_kwargs(connection.settings_dict), autocommit=True) as conn:
            while killing.is_set():
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
                )
                time.sleep(0.25)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (statuses[503] < 3 or statuses[201] < 10):
        time.sleep(0.2)
    killing.clear()
    kill_thread.join()
    stop.set()
    for thread in clients:
        thread.join()

    # Never a 500, never a hang.
    assert set(statuses) <= {201, 503}, (statuses, others, log_path.read_text()[-6000:])
    assert statuses[503] >= 1, f"no request was caught by a dropped connection: {statuses}"
    assert all(body["code"] == "database_unavailable" and body["detail"] for body in bodies_503)

    # Recovered by itself: new requests succeed, and retrying each failed key records it exactly once.
    session = requests.Session()
    for key in unanswered:
        assert post(session, key).status_code == 201
    for n in range(10):
        assert post(session, f"after-{n}").status_code == 201
    assert session.get(f"{server}/healthz", timeout=5).json()["checks"]["database"]["ok"]

    keys = Movement.objects.filter(item=item).values_list("idempotency_key", flat=True)
    assert len(keys) == len(set(keys)) == statuses[201] + statuses[503] + 10
    assert StockLevel.objects.get(item=item).on_hand == len(keys)
    assert ledger_reconcile().ok
