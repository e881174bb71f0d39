"""One web host loses Redis: calls fail fast behind the breaker, orders keep being taken at near-normal
speed, /healthz/ready says 503 (a load balancer moves traffic away) while /healthz/live stays 200,
and the first trial after Redis is back closes the breaker.

A Redis server of the test's own on a free loopback port; "unreachable" is that process stopped with
SIGSTOP: connections are accepted by the kernel and never answered, as across a network cut.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from django.test import override_settings

from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import availability_cache
from apps.core.redis_breaker import breaker_for, breakers_reset
from apps.orders.models import Order
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ORDERS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OwnRedis:
    process: subprocess.Popen
    port: int

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def own_redis(settings) -> Iterator[OwnRedis]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = OwnRedis(process, port)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_timeout=0.5).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the test's Redis did not start"
            time.sleep(0.05)
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    breakers_reset()
    availability_cache.state.reset()
    try:
        with override_settings(CACHES=caches, REDIS_BREAKER_OPEN_S=1.0):
            yield server
    finally:
        server.thaw()
        process.terminate()
        process.wait(timeout=10)
        breakers_reset()
        availability_cache.state.reset()


def place(client, prefix: str) -> float:
    """Place ORDERS orders one after another; returns the seconds they took, all answered 201."""
    started = time.monotonic()
    for n in range(ORDERS):
        response = client.post(
            "/api/v1/orders/",
            {"external_id": f"{prefix}{n}", "lines": [{"sku": "hood", "quantity": 1}], "hold_minutes": 5},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"{prefix}{n}",
        )
        assert response.status_code == 201, response.content
    return time.monotonic() - started


def test_redis_gone_orders_go_on_fast_readiness_503_and_back(own_redis, channel_api, client):
    warehouse = LocationFactory(code="wh")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 100)
    listing_of(channel_of("web", [warehouse]), "hood", product_of("HOOD-P", {hood: 1}))
    api = channel_api("web")
    assert client.get("/healthz/ready").status_code == 200
    normal = place(api, "up-")

    own_redis.freeze()
    cut = place(api, "down-")
    # Only the first calls wait out a socket timeout (0.5 s); then the breaker answers at once.
    assert cut < normal + 2.0, (normal, cut)
    breaker = breaker_for(f"127.0.0.1:{own_redis.port}")
    assert breaker.is_open and breaker.opened >= 1
    assert Order.objects.filter(external_id__startswith="down-").count() == ORDERS

    started = time.monotonic()
    ready = client.get("/healthz/ready")
    assert ready.status_code == 503, ready.content
    assert time.monotonic() - started < 1.0
    assert ready.json()["checks"]["database"]["ok"] and not ready.json()["checks"]["redis"]["ok"]
    assert client.get("/healthz/live").status_code == 200
    legacy = client.get("/healthz")  # the operator's view keeps its contract: degraded, not down
    assert legacy.status_code == 200 and legacy.json()["status"] == "degraded"

    own_redis.thaw()
    deadline = time.monotonic() + 10
    while client.get("/healthz/ready").status_code != 200:  # the first trial after the open time closes it
        assert time.monotonic() < deadline, "readiness did not come back with Redis"
        time.sleep(0.2)
    assert not breaker.is_open
    place(api, "back-")


def test_an_open_breaker_refuses_without_touching_the_network(own_redis):
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    assert client.ping()
    own_redis.freeze()
    waits = []
    for _ in range(6):
        started = time.monotonic()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            client.get("k")
        waits.append(time.monotonic() - started)
    assert waits[0] > 0.4  # the first call waits out the socket timeout
    assert max(waits[2:]) < 0.05, waits  # after the second, none does


def test_a_redis_on_a_unix_socket_has_its_breaker_too(tmp_path):
    """The embedded Redis of `make run` answers on a unix socket: its connections are the breaker's too."""
    from django_redis.pool import ConnectionFactory

    from apps.core.redis_breaker import BreakerConnectionFactory, BreakerUnixConnection

    path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        url = f"unix://{path}?db=0"
        factory = BreakerConnectionFactory({})
        pool = factory.get_connection_pool(ConnectionFactory.make_connection_params(factory, url))
        assert pool.connection_class is BreakerUnixConnection
        client = redis.Redis(connection_pool=pool)
        assert client.ping()
        process.kill()
        process.wait(10)
        for _ in range(3):
            with pytest.raises(redis.ConnectionError):
                client.ping()
        assert breaker_for(str(path)).is_open
    finally:
        process.kill()
        breakers_reset()
