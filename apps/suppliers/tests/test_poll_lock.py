"""A poll whose worker dies: the supplier is free again at once, and its run is abandoned and polled anew.

Real processes throughout: the poll runs in a real Celery worker against a slow HTTP supplier on
loopback and is killed with SIGKILL; the beat job runs in another real worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.core.testing import database_url, run_all
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.polling import supplier_poll
from apps.suppliers.services.runs import feed_runs_abandon
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso
from apps.suppliers.tests.servers import HttpServer, Recorded, http_server, json_response

ROOT = Path(__file__).resolve().parents[3]
SKUS = ("K1", "K2")


def _worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": settings.REDIS_URL,
            "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


class Worker:
    """A real `celery worker` on the default queue, as production runs the supplier polls."""

    def __init__(self, **env: str) -> None:
        command = [
            str(Path(sys.executable).with_name("celery")), "-A", "inventory_site", "worker", "-Q", "default",
            "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
            "--hostname", f"poll-test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=_worker_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.output: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                if " ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(90):
            self.kill()
            raise AssertionError("celery worker did not start:\n" + self.log())

    def log(self) -> str:
        return "".join(self.output[-40:])

    def kill(self) -> None:
        """SIGKILL to the whole process group, as the kernel's OOM killer or a lost machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(15)


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    from inventory_site.celery import app

    app.control.purge()  # messages left by earlier tests of this run would be run by our workers
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(**env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
    app.control.purge()


class SlowSupplier:
    """A REST supplier whose first page hangs until released: the poll is caught in the middle."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.slow = True
        server.handler = self.handle

    def handle(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        if request.query.get("page") != ["1"]:
            return json_response([])
        if self.slow:
            self.arrived.set()
            self.release.wait(60)
        return json_response([{"supplier_sku": s, "quantity": 7, "updated_at": now_iso()} for s in SKUS])


def _supplier(url: str) -> Supplier:
    supplier = make_supplier(
        "slowpoke",
        connector="rest",
        settings={"url": f"{url}/stock", "attempts": 1, "connect_timeout_s": 2, "read_timeout_s": 120},
        poll_interval_s=900,  # the old lock outlived its holder by max(60 s, 4 intervals): an hour here
    )
    for sku in SKUS:
        make_mapping(supplier, sku)
    return supplier


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def _on_hand(supplier: Supplier) -> dict[str, int]:
    return dict(StockLevel.objects.filter(location=supplier.location).values_list("item__sku", "on_hand"))


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_poll_killed_mid_fetch_frees_its_supplier_at_once(workers):
    from apps.suppliers.tasks import supplier_poll as supplier_poll_task

    with http_server() as server:
        slow = SlowSupplier(server)
        supplier = _supplier(server.url)
        doomed = workers()
        supplier_poll_task.delay(supplier.pk)
        assert slow.arrived.wait(60), doomed.log()
        doomed.kill()
        slow.slow = False
        slow.release.set()
        # The dead worker's lock went with its database session: a new poll runs now, not in an hour.
        killed_at = time.monotonic()
        runs: list[FeedRun] = []
        _wait(lambda: runs.extend(supplier_poll(supplier_id=supplier.pk)) or runs, 5, "a new poll did not run")
    assert time.monotonic() - killed_at < 5
    (run,) = runs
    assert run.status == FeedRun.Status.SUCCEEDED, run.error
    assert _on_hand(supplier) == {"ITEM-K1": 7, "ITEM-K2": 7}


@pytest.mark.django_db(transaction=True)
def test_two_polls_of_one_supplier_never_run_at_once():
    with http_server() as server:
        slow = SlowSupplier(server)
        supplier = _supplier(server.url)
        results: list[list[FeedRun]] = [[], []]

        def poll(n: int) -> None:
            if n == 1:  # the second starts while the first is inside the supplier's slow answer
                assert slow.arrived.wait(30)
                results[1] = supplier_poll(supplier_id=supplier.pk)
                slow.release.set()
            else:
                results[0] = supplier_poll(supplier_id=supplier.pk)

        assert run_all(poll, 2) == []
    assert results[1] == []  # skipped: the supplier was being polled
    (run,) = results[0]
    assert run.status == FeedRun.Status.SUCCEEDED, run.error
    assert len([r for r in server.requests if r.query.get("page") == ["1"]]) == 1
    assert FeedRun.objects.filter(supplier=supplier).count() == 1


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_beat_job_abandons_a_killed_poll_and_polls_again(workers, staff_api):
    from apps.suppliers.tasks import feed_runs_abandon
    from apps.suppliers.tasks import supplier_poll as supplier_poll_task

    with http_server() as server:
        slow = SlowSupplier(server)
        supplier = _supplier(server.url)
        doomed = workers()
        supplier_poll_task.delay(supplier.pk)
        assert slow.arrived.wait(60), doomed.log()
        doomed.kill()
        slow.slow = False
        slow.release.set()
        (dead,) = FeedRun.objects.filter(supplier=supplier)
        assert dead.status == FeedRun.Status.RUNNING  # and would stay so forever without the beat job
        beat = workers(FEED_RUN_STALE_S="1")
        time.sleep(1.1)
        feed_runs_abandon.delay()
        _wait(lambda: FeedRun.objects.filter(supplier=supplier).count() == 2, 30, "no fresh run: " + beat.log())
        fresh = FeedRun.objects.filter(supplier=supplier).exclude(pk=dead.pk).get()
        _wait(lambda: FeedRun.objects.get(pk=fresh.pk).status != FeedRun.Status.RUNNING, 30, "fresh run unfinished")
    dead.refresh_from_db()
    fresh.refresh_from_db()
    assert dead.status == FeedRun.Status.ABANDONED
    assert "worker stopped" in dead.error and dead.finished_at is not None
    assert fresh.status == FeedRun.Status.SUCCEEDED, fresh.error
    assert fresh.started_at >= dead.finished_at
    assert _on_hand(supplier) == {"ITEM-K1": 7, "ITEM-K2": 7}
    listed = staff_api.get("/api/v1/feed-runs/?supplier=slowpoke&status=abandoned").json()
    assert [(r["id"], r["status"]) for r in listed["results"]] == [(dead.pk, "abandoned")]


# --- the beat job's service, in this process ------------------------------------------------------


def _aged_run(supplier: Supplier, seconds: float) -> FeedRun:
    run = FeedRun.objects.create(supplier=supplier, source="rest")
    FeedRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))
    return run


@pytest.mark.django_db
def test_stale_runs_are_abandoned_recorded_and_polled_again(admin_client, staff_api):
    polled = make_supplier("polled", connector="rest", settings={"url": "http://127.0.0.1:9/"})
    pushed = make_supplier("pushed", connector="webhook", settings={})
    dead_poll, dead_push = _aged_run(polled, 600), _aged_run(pushed, 301)
    alive = _aged_run(polled, 30)
    queued: list[int] = []
    abandoned = feed_runs_abandon(poll_again=queued.append)
    assert sorted(r.pk for r in abandoned) == sorted([dead_poll.pk, dead_push.pk])
    assert queued == [polled.pk]  # a webhook supplier is not polled: it pushes
    statuses = dict(FeedRun.objects.values_list("pk", "status"))
    assert statuses == {dead_poll.pk: "abandoned", dead_push.pk: "abandoned", alive.pk: "running"}
    polled.refresh_from_db()
    assert polled.failures_in_row == 1 and polled.last_attempt_at is not None
    assert feed_runs_abandon(poll_again=queued.append) == [] and queued == [polled.pk]
    api = staff_api.get("/api/v1/feed-runs/?status=abandoned").json()
    assert {r["id"]: r["status"] for r in api["results"]} == {dead_poll.pk: "abandoned", dead_push.pk: "abandoned"}
    page = admin_client.get("/admin/suppliers/feedrun/?status__exact=abandoned")
    assert page.status_code == 200
    assert page.content.decode().count("Abandoned (its worker stopped)") >= 2


@pytest.mark.django_db(transaction=True)
def test_a_slow_live_poll_is_never_abandoned(settings):
    settings.FEED_RUN_STALE_S = 1
    with http_server() as server:
        slow = SlowSupplier(server)
        supplier = _supplier(server.url)
        queued: list[int] = []
        results: list[list[FeedRun]] = [[], []]

        def act(n: int) -> None:
            if n == 0:
                results[0] = supplier_poll(supplier_id=supplier.pk)
                return
            assert slow.arrived.wait(30)
            time.sleep(1.2)  # the poll is stuck in the fetch: its heartbeat is older than the threshold
            results[1] = feed_runs_abandon(poll_again=queued.append)
            slow.release.set()

        assert run_all(act, 2) == []
    assert results[1] == [] and queued == []
    (run,) = results[0]
    assert run.status == FeedRun.Status.SUCCEEDED, run.error


@pytest.mark.django_db
def test_a_long_ingest_keeps_its_heartbeat(settings):
    settings.FEED_RUN_STALE_S = 1
    supplier = make_supplier("beating")
    make_mapping(supplier, "B1")
    seen: dict[str, list[FeedRun]] = {}

    def progress(stage: str) -> None:
        time.sleep(0.4)  # each stage of a big feed takes a while
        if stage == "apply":  # 1.2 s in: past the threshold, yet the run is alive
            seen["abandoned"] = feed_runs_abandon(poll_again=lambda _id: None)

    run = feed_ingest(supplier=supplier, raw=csv_feed([("B1", 3, now_iso())]), progress=progress)
    assert seen["abandoned"] == []
    assert run.status == FeedRun.Status.SUCCEEDED
    assert FeedRun.objects.get(pk=run.pk).heartbeat_at > run.started_at + timedelta(seconds=0.8)


def test_the_abandoned_run_job_is_on_the_beat():
    job = settings.CELERY_BEAT_SCHEDULE["suppliers-abandoned-runs"]
    assert job["task"] == "suppliers.feed_runs_abandon" and job["schedule"] <= 60
