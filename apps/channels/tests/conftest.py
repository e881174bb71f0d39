"""Real machinery for sync tests: a channel simulator on loopback and real Celery worker processes.

Workers get the test database (``DATABASE_URL``) and this run's Redis (``REDIS_URL``,
``CACHE_KEY_PREFIX``), so tests using them need ``transactional_db``: the worker sees only
committed data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from apps.channels.models import Listing, SyncWork
from apps.channels.selectors import listings_availability
from apps.channels.services.config import listings_sync_now
from apps.channels.tests.scripted import scripted  # noqa: F401  (the in-test platform connector, a fixture)
from apps.channels.tests.shelf import shelf  # noqa: F401  (the in-test platform with a catalog, a fixture)
from apps.core.testing import CeleryWorker, database_url
from sandbox.fakes.amazon import AmazonFake
from sandbox.simulator import ChannelSimulator

# Short tunables, for the test process (through the settings) and the workers it starts (their environment).
FAST_SYNC = {
    "SYNC_TIER1_GATHER_S": "0.1",
    "SYNC_TIER2_DELAY_S": "0.5",
    "SYNC_TIER3_BATCH_S": "2",
    "SYNC_LOCK_TTL_S": "3",
    "SYNC_LOCK_RENEW_S": "1",
    "SYNC_BACKOFF_BASE_S": "0.2",
    "SYNC_BACKOFF_MAX_S": "1",
    "SYNC_MAX_ATTEMPTS": "3",
    "SYNC_PUSH_SLICE_S": "10",
    "SYNC_INLINE_WAIT_S": "3",
    "SYNC_HOLD_RECHECK_S": "1",
    "SYNC_RATE_MARGIN": "0.9",
}


@pytest.fixture(autouse=True)
def fast_sync(stockroom_knobs) -> None:
    stockroom_knobs(**FAST_SYNC)


@pytest.fixture(autouse=True)
def clean_sync_redis() -> Iterator[None]:
    """Buckets, locks and metrics of one test never leak into the next."""
    from apps.channels.limits import redis_client

    def wipe() -> None:
        client = redis_client()
        prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', 'stockroom')}:sync:*"
        keys = list(client.scan_iter(match=prefix, count=1000))
        if keys:
            client.delete(*keys)

    wipe()
    yield
    wipe()


@pytest.fixture
def simulator() -> Iterator[Callable[..., ChannelSimulator]]:
    started: list[ChannelSimulator] = []

    def start(*, rate: float = 50.0, burst: int = 20, secret: str = "s3cret") -> ChannelSimulator:
        sim = ChannelSimulator(rate=rate, burst=burst, secret=secret).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def worker_env() -> dict[str, str]:
    url = database_url(connection.settings_dict)
    env = dict(os.environ)
    env.update(FAST_SYNC)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
            "DATABASE_URL": url,
            "REDIS_URL": settings.REDIS_URL,
            "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "stockroom-test"),
            "LOG_LEVEL": "INFO",
        }
    )
    return env


class Worker(CeleryWorker):
    """A real `celery worker` process on the sync shards and the default queue."""

    def __init__(
        self,
        queues: str = "sync.0,sync.1,default",
        concurrency: int = 4,
        env: dict[str, str] | None = None,
        include: str = "",
    ) -> None:
        super().__init__(
            queues, env={**worker_env(), **(env or {})}, concurrency=concurrency, include=include,
            hostname=f"sync-test-{os.getpid()}-{time.monotonic_ns()}@%h",
        )  # fmt: skip


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Callable[..., Worker]]:
    """Start real workers (as many as the test wants); all are stopped at the end."""
    purge_queues()
    workers: list[Worker] = []

    def start(**kwargs: object) -> Worker:
        worker = Worker(**kwargs)  # type: ignore[arg-type]
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()  # nothing to finish: the rows are the work, and the queues are purged
    purge_queues()


def purge_queues() -> None:
    """Drop queued and unacknowledged task messages of the sync and default queues: this runner's only
    (Celery's keys carry its prefix), never those of another runner or of a `make run` on the same Redis."""
    from apps.channels.limits import redis_client

    client = redis_client()
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    patterns = [f"{prefix}{name}" for name in ("sync.*", "default*", "unacked*")]
    keys = [key for pattern in patterns for key in client.scan_iter(match=pattern)]
    if keys:
        client.delete(*keys)


def wait_for(condition: Callable[[], object], timeout: float = 15.0, every: float = 0.05) -> float:
    """Poll until the condition holds; returns seconds waited, fails the test on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def settled(sim: ChannelSimulator, listings: list[Listing]) -> bool:
    """No sync work is left and the simulator shows every listing's availability."""
    truth = listings_availability([lst.pk for lst in listings])
    return not SyncWork.objects.exists() and all(
        sim.shown(lst.channel_sku) == truth[lst.pk].available for lst in listings
    )


def first_sync(sim: ChannelSimulator, listings: list[Listing]) -> None:
    """Staff press "sync now" on new listings; the worker pushes them."""
    listings_sync_now(listing_ids=[lst.pk for lst in listings])
    wait_for(lambda: settled(sim, listings), timeout=15)


@pytest.fixture
def amazon() -> Iterator[Callable[..., AmazonFake]]:
    """Start SP-API fakes on loopback (``amazon(**options)``); each is stopped after the test."""
    started: list[AmazonFake] = []

    def start(**kwargs: Any) -> AmazonFake:
        fake = AmazonFake(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()
