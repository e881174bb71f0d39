"""The freshness promise across hosts: once a write has returned, no host serves the old availability,
even when the writer's host could not reach Redis while the reader's could.

Two hosts in one process, one after the other: the reader's Redis settings point at the shared Redis;
the writer's at an address that accepts connections and never answers (a host cut off from Redis by
the network: its calls time out, then its breaker opens). Same key prefix, so the writer, had it
reached Redis, would have bumped the very versions the reader checks.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import availability_cache
from apps.core.redis_breaker import breaker_for, breakers_reset
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A Redis URL whose server accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@pytest.fixture(autouse=True)
def fresh_breaker() -> Iterator[None]:
    breakers_reset()
    availability_cache.state.reset()
    yield
    breakers_reset()
    availability_cache.state.reset()


def host_without_redis(url: str):
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    return override_settings(CACHES=caches)


def shown(api) -> int:
    response = api.get("/api/v1/availability/", {"sku": "hood"})
    assert response.status_code == 200, response.content
    return response.json()["results"][0]["available"]


def order(api, n: int) -> None:
    response = api.post(
        "/api/v1/orders/",
        {"external_id": f"A{n}", "lines": [{"sku": "hood", "quantity": 1}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"a-{n}",
    )
    assert response.status_code == 201, response.content


def test_a_write_on_a_host_cut_off_from_redis_is_seen_by_every_other_host_at_once(channel_api, black_hole):
    warehouse = LocationFactory(code="wh")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 10)
    listing_of(channel_of("web", [warehouse]), "hood", product_of("HOOD-P", {hood: 1}))
    api = channel_api("web")
    assert shown(api) == 10  # the reader's host caches it
    assert shown(api) == 10  # ... and serves it from Redis
    hits = availability_cache.AVAILABILITY_CACHE.labels(result="hit")._value.get()

    with host_without_redis(black_hole):
        order(api, 1)  # the first Redis calls time out: the invalidation cannot reach Redis
    assert shown(api) == 9  # the other host: not the cached 10

    with host_without_redis(black_hole):
        assert breaker_for(black_hole.split("//")[1].split("/")[0]).is_open
        order(api, 2)  # the breaker is open: no Redis call is even tried
    availability_cache.state.reset()
    assert shown(api) == 8
    assert shown(api) == 8
    # the cache still serves the reader's host once it has the new value
    assert availability_cache.AVAILABILITY_CACHE.labels(result="hit")._value.get() > hits


def test_writes_that_reach_redis_leave_the_database_epoch_alone(channel_api):
    warehouse = LocationFactory(code="wh")
    hood = ItemFactory(sku="HOOD")
    stock(hood, warehouse, 10)
    listing_of(channel_of("web", [warehouse]), "hood", product_of("HOOD-P", {hood: 1}))
    api = channel_api("web")
    before = availability_cache._database_epoch()
    assert shown(api) == 10
    order(api, 1)
    assert shown(api) == 9
    assert availability_cache._database_epoch() == before  # the normal path costs no write to PostgreSQL
