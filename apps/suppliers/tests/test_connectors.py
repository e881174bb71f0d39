"""Each connector against a real server on loopback: REST (HTTP), SFTP (paramiko), and a drop folder."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.suppliers.locks import supplier_poll_lock
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.polling import supplier_poll
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso
from apps.suppliers.tests.servers import http_server, json_response, sftp_server

pytestmark = pytest.mark.django_db

FAST = {"attempts": 3, "backoff_s": 0.01, "backoff_max_s": 0.05, "connect_timeout_s": 1, "read_timeout_s": 1}


def _levels(supplier: Supplier) -> dict[str, int]:
    return dict(StockLevel.objects.filter(location=supplier.location).values_list("item__sku", "on_hand"))


def _rest_supplier(url: str, **settings) -> Supplier:
    supplier = make_supplier(connector="rest", settings={"url": url, **FAST, **settings}, secret="tok-123456789012")
    for sku in ("R1", "R2", "R3", "R4", "R5"):
        make_mapping(supplier, sku)
    return supplier


def test_rest_paginated_with_auth_header():
    ts = now_iso()
    pages = {1: [("R1", 1), ("R2", 2)], 2: [("R3", 3), ("R4", 4)], 3: [("R5", 5)]}
    with http_server() as server:

        def handler(request):
            page = int(request.query.get("page", ["1"])[0])
            items = [{"supplier_sku": s, "quantity": q, "updated_at": ts} for s, q in pages.get(page, [])]
            return json_response({"items": items})

        server.handler = handler
        supplier = _rest_supplier(f"{server.url}/stock", auth_header="X-Api-Key", auth_scheme="")
        (run,) = supplier_poll(supplier_id=supplier.pk)
    assert run.status == FeedRun.Status.SUCCEEDED, run.error
    assert run.rows_accepted == 5 and "4 pages" in run.source
    assert _levels(supplier) == {f"ITEM-R{i}": i for i in range(1, 6)}
    assert {r.headers.get("X-Api-Key") for r in server.requests} == {"tok-123456789012"}


def test_rest_next_links():
    ts = now_iso()
    with http_server() as server:

        def handler(request):
            if request.path == "/first":
                return json_response(
                    {"items": [{"supplier_sku": "R1", "quantity": 1, "updated_at": ts}], "next": "/second?c=x"}
                )
            return json_response({"items": [{"supplier_sku": "R2", "quantity": 2, "updated_at": ts}], "next": None})

        server.handler = handler
        supplier = _rest_supplier(f"{server.url}/first")
        (run,) = supplier_poll(supplier_id=supplier.pk)
    assert run.status == FeedRun.Status.SUCCEEDED and run.rows_accepted == 2
    assert server.requests[0].headers["Authorization"] == "Bearer tok-123456789012"
    # A next-link feed is a full feed too: the SKUs it did not list vanished.
    assert _levels(supplier) == {"ITEM-R1": 1, "ITEM-R2": 2}


def test_rest_retries_5xx_with_backoff_then_succeeds():
    ts = now_iso()
    with http_server() as server:
        calls = {"n": 0}

        def handler(request):
            calls["n"] += 1
            if calls["n"] <= 2:
                return 503, {}, b"busy"
            if request.query.get("page") == ["1"]:
                return json_response([{"supplier_sku": "R1", "quantity": 7, "updated_at": ts}])
            return json_response([])

        server.handler = handler
        supplier = _rest_supplier(server.url)
        (run,) = supplier_poll(supplier_id=supplier.pk)
    assert run.status == FeedRun.Status.SUCCEEDED, run.error
    assert calls["n"] == 4  # two failures, page 1, empty page 2
    assert _levels(supplier)["ITEM-R1"] == 7


def test_rest_slow_server_times_out_and_counts_a_failure():
    with http_server() as server:

        def handler(request):
            time.sleep(1.5)
            return json_response({"items": []})

        server.handler = handler
        supplier = _rest_supplier(server.url, attempts=2, read_timeout_s=0.3)
        started = time.monotonic()
        (run,) = supplier_poll(supplier_id=supplier.pk)
        elapsed = time.monotonic() - started
    assert run.status == FeedRun.Status.FAILED and "timed out" in run.error
    assert len(server.requests) == 2
    assert elapsed < 3
    supplier.refresh_from_db()
    assert supplier.failures_in_row == 1 and supplier.last_success_at is None


@pytest.mark.parametrize(
    ("response", "needle"),
    [
        ((200, {"Content-Type": "application/json"}, b'{"items": [{"supplier_sku": "R1",'), "malformed JSON"),
        ((200, {}, b'{"rows": []}'), "expected a JSON object"),
        ((401, {}, b"no"), "HTTP 401"),
        ((200, {}, b'{"items": [' + b'{"supplier_sku": "R1", "quantity": 1},' * 2000 + b"{}]}"), "byte limit"),
        ((200, {}, b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nested too deeply"),
    ],
)
def test_rest_malformed_forbidden_and_huge_responses_fail_without_retry(response, needle, settings):
    settings.FEED_MAX_BYTES = 500_000
    with http_server() as server:
        server.handler = lambda request: response
        supplier = _rest_supplier(server.url, max_bytes=20_000 if needle == "byte limit" else 10**9)
        (run,) = supplier_poll(supplier_id=supplier.pk)
    # Over the size limit is refused whole; the rest could not be read.
    assert run.status == (FeedRun.Status.REFUSED if needle == "byte limit" else FeedRun.Status.FAILED)
    assert needle in run.error
    assert len(server.requests) == 1
    assert _levels(supplier) == {}


def test_circuit_breaker_opens_then_half_opens_and_closes():
    ts = now_iso()
    with http_server() as server:
        healthy = {"on": False}

        def handler(request):
            if not healthy["on"]:
                return 500, {}, b"down"
            if request.query.get("page") == ["1"]:
                return json_response([{"supplier_sku": "R1", "quantity": 1, "updated_at": ts}])
            return json_response([])

        server.handler = handler
        supplier = _rest_supplier(server.url, attempts=1, breaker_threshold=2, breaker_cooldown_s=60)
        supplier_poll(supplier_id=supplier.pk)
        supplier_poll(supplier_id=supplier.pk)
        supplier.refresh_from_db()
        assert supplier.breaker_state == Supplier.Breaker.OPEN and supplier.failures_in_row == 2
        seen = len(server.requests)
        assert supplier_poll(supplier_id=supplier.pk) == []  # open: the supplier is left alone
        assert len(server.requests) == seen
        Supplier.objects.filter(pk=supplier.pk).update(breaker_opened_at=timezone.now() - timedelta(seconds=61))
        (trial,) = supplier_poll(supplier_id=supplier.pk)  # half-open trial fails: open again
        assert trial.status == FeedRun.Status.FAILED
        supplier.refresh_from_db()
        assert supplier.breaker_state == Supplier.Breaker.OPEN
        Supplier.objects.filter(pk=supplier.pk).update(breaker_opened_at=timezone.now() - timedelta(seconds=61))
        healthy["on"] = True
        (ok,) = supplier_poll(supplier_id=supplier.pk)
    assert ok.status == FeedRun.Status.SUCCEEDED
    supplier.refresh_from_db()
    assert supplier.breaker_state == Supplier.Breaker.CLOSED and supplier.failures_in_row == 0


def test_one_supplier_is_never_polled_twice_at_once():
    with http_server() as server:
        supplier = _rest_supplier(server.url)
        held, done = threading.Event(), threading.Event()

        def another_poller() -> None:  # its own thread, so its own database session
            try:
                with supplier_poll_lock(supplier_id=supplier.pk) as acquired:
                    assert acquired
                    held.set()
                    done.wait(30)
            finally:
                connections.close_all()

        thread = threading.Thread(target=another_poller)
        thread.start()
        try:
            assert held.wait(30)
            assert supplier_poll(supplier_id=supplier.pk) == []
        finally:
            done.set()
            thread.join(30)
        assert server.requests == []
        assert not FeedRun.objects.filter(supplier=supplier).exists()


# --- SFTP ---------------------------------------------------------------------------------------


def _sftp_supplier(server, path: str, **settings) -> Supplier:
    supplier = make_supplier(
        connector="sftp",
        settings={
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "path": path,
            "host_key": server.host_key,
            "timeout_s": 5,
            **settings,
        },
        secret=server.password,
    )
    for sku in ("F1", "F2"):
        make_mapping(supplier, sku)
    return supplier


def test_sftp_folder_csv_and_xml_files_are_taken_in_and_moved(tmp_path):
    ts = now_iso()
    inbox = tmp_path / "outbox"
    inbox.mkdir()
    (inbox / "a-stock.csv").write_bytes(csv_feed([("F1", 3, ts), ("F2", 4, ts)]))
    xml = (
        f"<feed><item supplier_sku='F1' quantity='5' updated_at='{ts}'/>"
        f"<item supplier_sku='F2' quantity='6' updated_at='{ts}'/></feed>"
    )
    (inbox / "b-stock.xml").write_text(xml)
    (inbox / "c-broken.csv").write_bytes(b"nothing useful here\n")
    with sftp_server(tmp_path) as server:
        supplier = _sftp_supplier(server, "/outbox")
        runs = supplier_poll(supplier_id=supplier.pk)
    assert [r.status for r in runs] == ["succeeded", "succeeded", "failed"]
    assert _levels(supplier) == {"ITEM-F1": 5, "ITEM-F2": 6}
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a-stock.csv", "b-stock.xml"]
    assert [p.name for p in (inbox / "failed").iterdir()] == ["c-broken.csv"]


def test_sftp_wrong_password_and_wrong_host_key_fail(tmp_path):
    (tmp_path / "stock.csv").write_bytes(csv_feed([("F1", 3, now_iso())]))
    with sftp_server(tmp_path) as server:
        supplier = _sftp_supplier(server, "/stock.csv")
        Supplier.objects.filter(pk=supplier.pk).update(secret="wrong")
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert run.status == FeedRun.Status.FAILED and "authentication" in run.error
        import paramiko

        other = paramiko.ECDSAKey.generate()
        settings = dict(supplier.settings, host_key=f"{other.get_name()} {other.get_base64()}")
        Supplier.objects.filter(pk=supplier.pk).update(secret=server.password, settings=settings)
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert run.status == FeedRun.Status.FAILED
    assert _levels(supplier) == {}


def test_sftp_single_file_and_nothing_listening(tmp_path):
    (tmp_path / "stock.csv").write_bytes(csv_feed([("F1", 3, now_iso()), ("F2", 1, now_iso())]))
    with sftp_server(tmp_path) as server:
        supplier = _sftp_supplier(server, "/stock.csv")
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert run.status == FeedRun.Status.SUCCEEDED
        assert (tmp_path / "stock.csv").exists()  # a published single file stays where it is
        port = server.port
    assert _levels(supplier) == {"ITEM-F1": 3, "ITEM-F2": 1}
    Supplier.objects.filter(pk=supplier.pk).update(settings=dict(supplier.settings, port=port))
    (down,) = supplier_poll(supplier_id=supplier.pk)
    assert down.status == FeedRun.Status.FAILED and "cannot connect" in down.error


# --- drop folder --------------------------------------------------------------------------------


def test_drop_folder(drop_root):
    tmp_path = drop_root / "bulk"
    tmp_path.mkdir()
    ts = now_iso()
    supplier = make_supplier(connector="folder", settings={"path": "bulk"})
    make_mapping(supplier, "D1")
    (tmp_path / "1.csv").write_bytes(csv_feed([("D1", 9, ts)]))
    (tmp_path / "2.csv").write_bytes(csv_feed([("D1", "-3", ts)]))  # all bad: refused, moved to failed/
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    runs = supplier_poll(supplier_id=supplier.pk)
    assert [r.status for r in runs] == ["succeeded", "refused"]
    assert _levels(supplier) == {"ITEM-D1": 9}
    assert [p.name[-5:] for p in (tmp_path / "done").iterdir()] == ["1.csv"]
    assert [p.name[-5:] for p in (tmp_path / "failed").iterdir()] == ["2.csv"]
    assert (tmp_path / "notes.pdf").exists()
    assert supplier_poll(supplier_id=supplier.pk) == []


def test_drop_folder_outside_the_drop_root_is_never_read_nor_moved(drop_root, tmp_path):
    """A path changed behind the API's back (or a link swapped in) is checked again at every poll."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "1.csv").write_bytes(csv_feed([("D1", 9, now_iso())]))
    (drop_root / "link").symlink_to(elsewhere)
    for path in (str(elsewhere), "../elsewhere", "link", str(drop_root / "link")):
        supplier = make_supplier(connector="folder", settings={"path": "placeholder"})
        Supplier.objects.filter(pk=supplier.pk).update(settings={"path": path})
        (run,) = supplier_poll(supplier_id=supplier.pk)
        assert run.status == FeedRun.Status.FAILED and "drop folder refused" in run.error, path
    assert [p.name for p in elsewhere.iterdir()] == ["1.csv"]  # nothing moved, nothing read


def test_drop_folder_skips_links_and_refuses_oversized_files(drop_root, tmp_path, settings):
    settings.FEED_MAX_BYTES = 200
    (drop_root / "in").mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_bytes(csv_feed([("D1", 9, now_iso())]))
    (drop_root / "in" / "a-link.csv").symlink_to(secret)
    (drop_root / "in" / "big.csv").write_bytes(csv_feed([("D1", 1, now_iso())] * 20))
    supplier = make_supplier(connector="folder", settings={"path": "in"})
    make_mapping(supplier, "D1")
    (run,) = supplier_poll(supplier_id=supplier.pk)
    assert run.status == FeedRun.Status.REFUSED and "byte limit" in run.error
    assert sorted(p.name for p in (drop_root / "in").iterdir()) == ["a-link.csv", "failed"]
    assert secret.exists() and _levels(supplier) == {}
