"""A dead worker's messages come back within a minute or two, and a live worker's long task is never handed
to a second one: real workers, one killed with SIGKILL (as a crashed host), on the real broker.

The workers run with short knobs (a 6 s visibility timeout renewed every second) so the test takes seconds;
the defaults (60 s, renewed every 10 s, scanned every 10 s) bound a redelivery by timeout + scan, 70 s."""

from __future__ import annotations

import os
import secrets
import time

import pytest
import redis
from django.conf import settings
from django.db import connection

from apps.core.testing import CeleryWorker, database_url
from inventory_site.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]

KNOBS = {"BROKER_VISIBILITY_TIMEOUT_S": "6", "BROKER_VISIBILITY_RENEW_S": "1", "BROKER_RESTORE_EVERY_S": "1"}
BOUND_S = 6 + 1  # timeout + one restore scan (the last renewal was before the kill)


def worker_start(name: str, queue: str, pool: str) -> CeleryWorker:
    env = {
        **os.environ, **KNOBS,
        "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "INFO",
    }  # fmt: skip
    return CeleryWorker(
        queue, env=env, pool=pool, concurrency=1, include="apps.core.tests.broker_tasks", hostname=f"{name}@test",
        ready_s=60,
    )  # fmt: skip


@pytest.fixture
def workers():
    started: list[CeleryWorker] = []
    queue = f"broker-test-{secrets.token_hex(4)}"

    def start(name: str, pool: str = "prefork") -> CeleryWorker:
        started.append(worker_start(name, queue, pool))
        return started[-1]

    start.queue = queue  # type: ignore[attr-defined]
    yield start
    for worker in started:
        worker.kill()


def events(client: redis.Redis, key: str) -> list[tuple[str, str, float]]:
    return [(kind, host, float(at)) for kind, host, at in (e.decode().split() for e in client.lrange(key, 0, -1))]


def wait_for(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.1)
    return time.monotonic() - started


def unacked_of(client: redis.Redis, queue: str) -> list[bytes]:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return [raw for raw in client.hvals(f"{prefix}unacked") if f'"{queue}"'.encode() in raw]


def test_the_defaults_redeliver_within_two_minutes():
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    knobs = settings.STOCKROOM
    assert options["visibility_timeout"] == knobs["BROKER_VISIBILITY_TIMEOUT_S"] == 60
    assert options["unacked_restore_interval"] == knobs["BROKER_RESTORE_EVERY_S"]
    assert options["unacked_restore_throttle"] == 1  # a scan every interval, not every tenth
    bound = knobs["BROKER_VISIBILITY_TIMEOUT_S"] + knobs["BROKER_RESTORE_EVERY_S"]
    assert bound <= 120
    # Renewed several times within one timeout: a late renewal never hands a running task to another worker.
    assert knobs["BROKER_VISIBILITY_RENEW_S"] * 3 <= knobs["BROKER_VISIBILITY_TIMEOUT_S"]
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


def test_a_task_running_three_visibility_timeouts_runs_once(workers):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"broker-test:{secrets.token_hex(4)}"
    workers("first")
    workers("second", pool="threads")
    app.send_task("tests.broker.hold", args=[key, 18.0], queue=workers.queue)
    wait_for(lambda: any(kind == "done" for kind, _, _ in events(client, key)), 40)
    time.sleep(2)
    runs = events(client, key)
    assert [kind for kind, _, _ in runs] == ["start", "done"], runs  # no second worker started it meanwhile
    assert unacked_of(client, workers.queue) == []  # acknowledged
    client.delete(key)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_killed_workers_message_goes_to_another_worker_within_the_bound(workers, pool):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"broker-test:{secrets.token_hex(4)}"
    first = workers("first", pool=pool)
    app.send_task("tests.broker.hold", args=[key, 15.0 if pool == "threads" else 30.0], queue=workers.queue)
    wait_for(lambda: events(client, key), 20)
    workers("second", pool=pool)
    assert len(unacked_of(client, workers.queue)) == 1  # held by the first worker, running
    first.kill()  # a crashed host: no shutdown, no acknowledgement, no restore of its own
    killed = time.time()
    wait_for(lambda: any(host.startswith("second@") for _, host, _ in events(client, key)), BOUND_S + 10)
    redelivered = next(at for kind, host, at in events(client, key) if host.startswith("second@")) - killed
    assert redelivered <= BOUND_S + 2, redelivered
    assert redelivered >= 6 - 1 - 1, redelivered  # not earlier than the timeout after the last renewal
    if pool == "threads":
        wait_for(lambda: any(kind == "done" for kind, _, _ in events(client, key)), 20)
        assert [(kind, host.split("@")[0]) for kind, host, _ in events(client, key)] == [
            ("start", "first"), ("start", "second"), ("done", "second")
        ]  # fmt: skip
        wait_for(lambda: unacked_of(client, workers.queue) == [], 5)
    client.delete(key)
