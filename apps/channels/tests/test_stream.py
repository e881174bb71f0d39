"""The availability stream (docs/stream.md): real uvicorn on loopback, real Redis Streams, real sales."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import count

import pytest
from django.core.cache import caches
from django.utils import timezone

from apps.catalog.services.movements import stock_movement_record
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels import availability_cache
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.stream.hub import hub
from apps.channels.stream.keys import events as events_key
from apps.channels.stream.publish import open_channels, publisher
from apps.channels.tests.factories import channel_selling, listing
from apps.channels.tests.stream_client import STREAM_PATH, AsgiServer, StreamClient
from apps.core.models import ApiToken
from apps.core.services import token_create

pytestmark = pytest.mark.django_db(transaction=True)
_keys = count()


def _clean_stream_keys() -> None:
    client = caches["default"].client.get_client(write=True)
    for key in client.scan_iter(match=caches["default"].make_key("stream:*")):
        client.delete(key)


@pytest.fixture
def server(settings) -> Iterator[AsgiServer]:
    settings.API_TOKEN_CACHE_SECONDS = 1.0
    availability_cache.state.reset()
    _clean_stream_keys()
    open_channels.forget()
    with AsgiServer() as running:
        yield running
    _clean_stream_keys()
    open_channels.forget()


@pytest.fixture
def world(db):
    """A warehouse with hoodies and caps; web and app sell hoodies, app and market sell caps too."""
    warehouse = LocationFactory(code="WH")
    hoodie, cap = ItemFactory(sku="HOOD"), ItemFactory(sku="CAP")
    stock(hoodie, warehouse, 10)
    stock(cap, warehouse, 5)
    hood, cap_product = product_of("HOOD", {hoodie: 1}), product_of("CAP", {cap: 1})
    web = channel_selling("web", [warehouse], push_url="")
    app = channel_selling("app", [warehouse], push_url="")
    market = channel_selling("market", [warehouse], push_url="")
    listing(web, hood, "WEB-HOOD")
    listing(web, cap_product, "WEB-CAP")
    listing(app, hood, "APP-HOOD")
    listing(market, cap_product, "MKT-CAP")
    return {
        "warehouse": warehouse,
        "tokens": {code: token_create(channel_code=code) for code in ("web", "app", "market")},
        "channels": {"web": web, "app": app, "market": market},
    }


def sell(item_sku: str, quantity: int = 1, kind: str = "pos_sale") -> None:
    stock_movement_record(
        location_code="WH",
        item_sku=item_sku,
        kind=kind,
        quantity=quantity,
        idempotency_key=f"stream-test-{next(_keys)}",
        actor="test",
    )


def snapshot_in(client: StreamClient, *skus: str) -> None:
    assert client.wait_for(lambda c: all(c.data_for(s) for s in skus), timeout=10), client.events


def test_an_order_taken_through_the_api_reaches_the_open_streams(server, world):
    """The API's order is one statement (the stock owner's fast path): its listings are told as a sale's are."""
    from rest_framework.test import APIClient

    app = StreamClient(server.port, world["tokens"]["app"], skus=["APP-HOOD"])
    try:
        snapshot_in(app, "APP-HOOD")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens']['web']}", HTTP_IDEMPOTENCY_KEY="stream-order-1")
        body = {"external_id": "W-1", "lines": [{"sku": "WEB-HOOD", "quantity": 2}]}
        placed = api.post("/api/v1/orders/", body, format="json")
        assert placed.status_code == 201, placed.content
        assert app.wait_for(lambda c: c.data_for("APP-HOOD")[-1]["available"] == 8, timeout=5), app.events
    finally:
        app.close()


def test_a_sale_reaches_every_open_stream_of_every_channel_that_sells_the_item(server, world):
    tokens = world["tokens"]
    web_one = StreamClient(server.port, tokens["web"], skus=["WEB-HOOD"])
    web_all = StreamClient(server.port, tokens["web"])
    app = StreamClient(server.port, tokens["app"], skus=["APP-HOOD"])
    market = StreamClient(server.port, tokens["market"])
    try:
        for client, sku in ((web_one, "WEB-HOOD"), (web_all, "WEB-HOOD"), (app, "APP-HOOD"), (market, "MKT-CAP")):
            snapshot_in(client, sku)
        assert web_one.data_for("WEB-HOOD")[-1]["available"] == 10
        assert web_all.data_for("WEB-CAP")[-1] == {
            "sku": "WEB-CAP", "available": 5, "as_of": web_all.data_for("WEB-CAP")[-1]["as_of"], "state": "ok"
        }  # fmt: skip

        sold_at = time.time()
        sell("HOOD")
        for client, sku in ((web_one, "WEB-HOOD"), (web_all, "WEB-HOOD"), (app, "APP-HOOD")):
            assert client.wait_for(lambda c, s=sku: c.data_for(s)[-1]["available"] == 9, timeout=5), client.events
            arrived = [e.at for e in client.events if e.data.get("sku") == sku][-1]
            assert arrived - sold_at < 1.0
        sell("CAP", 2)
        assert market.wait_for(lambda c: c.data_for("MKT-CAP")[-1]["available"] == 3, timeout=5)
        assert web_all.wait_for(lambda c: c.data_for("WEB-CAP")[-1]["available"] == 3, timeout=5)
        # Each stream sees only what it follows, of its own channel.
        assert {e.data["sku"] for e in web_one.events} == {"WEB-HOOD"}
        assert {e.data["sku"] for e in web_all.events} == {"WEB-HOOD", "WEB-CAP"}
        assert {e.data["sku"] for e in app.events} == {"APP-HOOD"}
        assert {e.data["sku"] for e in market.events} == {"MKT-CAP"}
        # One event per change: the hoodie sale did not repeat the cap's unchanged number.
        assert [d["available"] for d in web_all.data_for("WEB-CAP")] == [5, 3]
        assert all(e.id for e in web_all.events)
    finally:
        for client in (web_one, web_all, app, market):
            client.close()


def test_reconnecting_with_last_event_id_misses_nothing(server, world):
    token = world["tokens"]["web"]
    first = StreamClient(server.port, token, skus=["WEB-HOOD"])
    snapshot_in(first, "WEB-HOOD")
    sell("HOOD")
    assert first.wait_for(lambda c: c.data_for("WEB-HOOD")[-1]["available"] == 9)
    resume_from = first.last_id()
    first.close()

    for _ in range(3):  # sold while the storefront was away, each published apart (closer ones may merge)
        sell("HOOD")
        assert publisher.flush()
    again = StreamClient(server.port, token, skus=["WEB-HOOD"], last_event_id=resume_from)
    try:
        assert again.wait_for(lambda c: len(c.data_for("WEB-HOOD")) >= 3)
        assert [d["available"] for d in again.data_for("WEB-HOOD")[:3]] == [8, 7, 6]
        # Exactly what the channel's stream holds after the id it resumed from, in order.
        hood = Listing.objects.get(channel_sku="WEB-HOOD").pk
        redis = caches["default"].client.get_client(write=True)
        held = [
            entry_id.decode()
            for entry_id, fields in redis.xrange(events_key(world["channels"]["web"].pk), min=f"({resume_from}")
            if fields.get(b"l") == str(hood).encode()
        ]
        assert [e.id for e in again.events[:3]] == held
        sell("HOOD")
        assert again.wait_for(lambda c: c.data_for("WEB-HOOD")[-1]["available"] == 5)
    finally:
        again.close()

    # Further behind than the channel keeps (or an id from before it began): the current numbers instead.
    behind = StreamClient(server.port, token, skus=["WEB-HOOD"], last_event_id="1-0")
    try:
        assert behind.wait_for(lambda c: bool(c.data_for("WEB-HOOD")))
        assert [d["available"] for d in behind.data_for("WEB-HOOD")] == [5]
    finally:
        behind.close()


def test_a_closed_clients_stream_is_forgotten(server, world):
    token = world["tokens"]["web"]
    for _ in range(3):
        client = StreamClient(server.port, token, skus=["WEB-HOOD"])
        snapshot_in(client, "WEB-HOOD")
        sell("HOOD")
        assert client.wait_for(lambda c: len(c.data_for("WEB-HOOD")) >= 2)
        client.close()
    deadline = time.monotonic() + 10
    while hub.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.open_streams == 0


def _raw_stream(port: int, token: str, sku: str) -> socket.socket:
    """A stream asked for on a bare socket, so the test decides to the byte when the client goes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"GET {STREAM_PATH}?sku={sku} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def _read_until(sock: socket.socket, marker: bytes, seen: bytearray, times: int = 1) -> None:
    while seen.count(marker) < times:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the stream early: {bytes(seen)!r}"
        seen += chunk


def _chunks(sock: socket.socket, raw: bytearray, *markers: bytes, timeout: float = 10.0) -> list[bytes]:
    """The HTTP chunks (one per write of the server) of a stream's answer (``raw``: what was read of it so
    far), once every marker was read."""
    deadline = time.monotonic() + timeout
    while not all(marker in raw for marker in markers) and time.monotonic() < deadline:
        raw += sock.recv(65536)
    body = bytes(raw).split(b"\r\n\r\n", 1)[1]
    chunks = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        chunks.append(rest[:size])
        body = rest[size + 2 :]
    return chunks


def test_under_a_burst_a_stream_is_written_once_per_batch_window(server, world, settings):
    """Twelve changes in about 0.6 s with a 0.4 s window: the stream's last numbers arrive in a few writes,
    not one write per change (each write costs the web a system call and a wake-up of the stream)."""
    settings.STOCKROOM = {**settings.STOCKROOM, "STREAM_BATCH_SECONDS": 0.4}
    sock = _raw_stream(server.port, world["tokens"]["web"], "WEB-HOOD&sku=WEB-CAP")
    try:
        raw = bytearray()
        _read_until(sock, b'"sku":"WEB-CAP"', raw)
        for n in range(12):
            sell("HOOD") if n % 2 else sell("CAP", kind="receipt")  # hoodies 10 -> 4, caps 5 -> 11
            time.sleep(0.05)
        chunks = _chunks(sock, raw, b'"sku":"WEB-HOOD","available":4,', b'"sku":"WEB-CAP","available":11,')
    finally:
        _hang_up(sock, reset=False)
    written = b"".join(chunks)
    assert b'"sku":"WEB-HOOD","available":4,' in written and b'"sku":"WEB-CAP","available":11,' in written
    # The head's retry line and the snapshot are the first writes; the burst follows in at most four.
    after_snapshot = [chunk for chunk in chunks if b"data:" in chunk][1:]
    assert 1 <= len(after_snapshot) <= 4, [chunk.count(b"data:") for chunk in after_snapshot]


def test_many_streams_opening_at_once_queue_for_redis_rather_than_fail(world, monkeypatch):
    """Forty streams open at once on a web process allowed four Redis connections: they wait their turn."""
    from apps.channels.stream import hub as hub_module

    monkeypatch.setattr(hub_module, "REDIS_CONNECTIONS", 4)
    availability_cache.state.reset()
    _clean_stream_keys()
    open_channels.forget()
    with AsgiServer() as running:
        socks = [_raw_stream(running.port, world["tokens"]["web"], "WEB-HOOD") for _ in range(40)]
        try:
            for sock in socks:
                _read_until(sock, b'"sku":"WEB-HOOD"', bytearray())
        finally:
            for sock in socks:
                _hang_up(sock, reset=False)
        assert _all_answered(running)
    _clean_stream_keys()


def test_open_streams_hold_no_thread_each(server, world):
    """Fifty streams open and fed: the web process has no more threads than with one (an open stream is a
    coroutine; the middleware of every stream runs in one shared thread)."""
    token = world["tokens"]["web"]
    first = _raw_stream(server.port, token, "WEB-HOOD")
    _read_until(first, b"data:", bytearray())
    threads_with_one = threading.active_count()
    socks = [_raw_stream(server.port, token, "WEB-HOOD") for _ in range(50)]
    try:
        for sock in socks:
            _read_until(sock, b"data:", bytearray())
        sell("HOOD")
        for sock in socks:
            _read_until(sock, b'"available":9', bytearray())
        assert threading.active_count() <= threads_with_one + 2, [t.name for t in threading.enumerate()]
    finally:
        for sock in [first, *socks]:
            _hang_up(sock, reset=False)
    assert _all_answered(server)


def _hang_up(sock: socket.socket, reset: bool) -> None:
    if reset:  # RST, as a client killed mid-stream
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _all_answered(server: AsgiServer, timeout: float = 10.0) -> bool:
    """Every request the server took has ended (its ASGI task returned) and no stream is left in the hub."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.server.server_state.tasks and hub.open_streams == 0:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_stream_is_forgotten_whenever_its_client_hangs_up(server, world, reset):
    """Clients hang up at every step of a stream's life: right after asking (the token and SKUs are read in a
    thread), at the response's head, after ``retry`` (subscribing, the first second's wait, the snapshot
    read in a thread), after the snapshot (waiting), and while a burst of changes is written. Each time the
    server ends the request and its web process holds no stream."""
    token = world["tokens"]["web"]
    phases: list[tuple[str, bytes | None, int]] = [
        ("asked", None, 0),
        ("head", b"\r\n\r\n", 1),
        ("retry", b"retry:", 1),
        ("snapshot", b"data:", 1),
    ]
    for rounds in range(3):
        for phase, marker, times in phases:
            socks = [_raw_stream(server.port, token, "WEB-HOOD") for _ in range(4)]
            for sock in socks:
                if marker is not None:
                    _read_until(sock, marker, bytearray(), times)
                _hang_up(sock, reset)
            assert _all_answered(server), (rounds, phase, len(server.server.server_state.tasks), hub.open_streams)
        # A burst: changes keep coming while the clients go.
        socks = [_raw_stream(server.port, token, "WEB-HOOD") for _ in range(4)]
        for sock in socks:
            _read_until(sock, b"data:", bytearray())
        for kind in ("pos_sale", "receipt") * 3:  # the hoodies' number moves and comes back
            sell("HOOD", kind=kind)
        for sock in socks:
            _hang_up(sock, reset)
        for kind in ("pos_sale", "receipt") * 3:
            sell("HOOD", kind=kind)
        assert _all_answered(server), (rounds, "burst", len(server.server.server_state.tasks), hub.open_streams)


def test_another_channels_skus_never_appear(server, world):
    tokens = world["tokens"]
    asked_for_other = StreamClient(server.port, tokens["market"], skus=["WEB-HOOD"])
    assert asked_for_other.status == 400
    assert "WEB-HOOD" in str(asked_for_other.json())
    market = StreamClient(server.port, tokens["market"])
    try:
        snapshot_in(market, "MKT-CAP")
        sell("HOOD", 3)
        sell("CAP")
        assert market.wait_for(lambda c: c.data_for("MKT-CAP")[-1]["available"] == 4)
        time.sleep(0.3)
        assert {e.data["sku"] for e in market.events} == {"MKT-CAP"}
    finally:
        market.close()


def test_a_token_revoked_mid_stream_ends_it_within_the_token_cache_seconds(server, world, settings):
    token = world["tokens"]["web"]
    client = StreamClient(server.port, token, skus=["WEB-HOOD"])
    snapshot_in(client, "WEB-HOOD")
    # Revoked elsewhere (another process): this process notices when it reads the token again.
    revoked_at = time.time()
    ApiToken.objects.filter(channel__code="web").update(revoked_at=timezone.now())
    assert client.wait_for(lambda c: c.closed, timeout=settings.API_TOKEN_CACHE_SECONDS + 2)
    assert time.time() - revoked_at <= settings.API_TOKEN_CACHE_SECONDS + 0.6
    assert client.events[-1].event == "end" and client.events[-1].data == {"code": "token_revoked"}
    again = StreamClient(server.port, token, skus=["WEB-HOOD"])
    assert again.status == 401 and again.json()["code"] == "authentication_failed"


def test_a_deactivated_channel_ends_its_streams(server, world, settings):
    client = StreamClient(server.port, world["tokens"]["app"])
    snapshot_in(client, "APP-HOOD")
    Channel.objects.filter(code="app").update(is_active=False)
    assert client.wait_for(lambda c: c.closed, timeout=settings.API_TOKEN_CACHE_SECONDS + 2)


@pytest.mark.parametrize(
    ("query", "headers_token", "status", "code"),
    [
        ("sku=NOPE", "web", 400, "invalid"),
        ("&".join(f"sku=S{i}" for i in range(1000)), "web", 400, "invalid"),
        ("sku=WEB%00HOOD", "web", 400, "invalid_text"),
        ("sku=" + "x" * 101, "web", 400, "invalid"),
        ("", "bogus", 401, "authentication_failed"),
        ("", "staff", 403, "permission_denied"),
    ],
    ids=["unknown-sku", "1000-skus", "nul", "too-long", "bad-token", "staff-token"],
)
def test_bad_input_is_a_clear_4xx(server, world, django_user_model, query, headers_token, status, code):
    if headers_token == "staff":
        django_user_model.objects.create_superuser("boss", password="x")
        token = token_create(staff_username="boss")
    else:
        token = world["tokens"].get(headers_token, "not-a-token")
    client = StreamClient(server.port, token, query=query)
    assert client.status == status, client.body
    assert client.json()["code"] == code
    assert client.json()["detail"]


def test_a_malformed_last_event_id_is_a_400(server, world):
    client = StreamClient(server.port, world["tokens"]["web"], last_event_id="yesterday")
    assert client.status == 400 and client.json()["code"] == "invalid"


def test_heartbeat_comments_keep_an_idle_stream_open(server, world, settings):
    settings.STOCKROOM = {**settings.STOCKROOM, "STREAM_HEARTBEAT_SECONDS": 0.3}
    client = StreamClient(server.port, world["tokens"]["web"], skus=["WEB-HOOD"])
    try:
        assert client.wait_for(lambda c: len(c.comments) >= 2, timeout=5)
        assert client.comments[0] == ": heartbeat"
    finally:
        client.close()


def test_a_stream_ends_after_its_lifetime_and_resumes_where_it_ended(server, world, settings):
    settings.STOCKROOM = {**settings.STOCKROOM, "STREAM_HEARTBEAT_SECONDS": 0.2, "STREAM_MAX_SECONDS": 1.0}
    client = StreamClient(server.port, world["tokens"]["web"], skus=["WEB-HOOD"])
    try:
        assert client.wait_for(lambda c: c.closed, timeout=10)
        assert not [e for e in client.events if e.event == "end"]  # not an `end`: the client comes back
        assert client.data_for("WEB-HOOD")
    finally:
        client.close()
    again = StreamClient(server.port, world["tokens"]["web"], skus=["WEB-HOOD"], last_event_id=client.last_id())
    try:
        assert again.status == 200
        assert again.wait_for(lambda c: len(c.comments) >= 1, timeout=5)
    finally:
        again.close()


def test_state_says_updating_while_orders_are_not_imported_and_stale_when_a_supplier_is_old(server, world):
    from rest_framework.test import APIClient

    web = world["channels"]["web"]
    client = StreamClient(server.port, world["tokens"]["web"])
    try:
        snapshot_in(client, "WEB-HOOD", "WEB-CAP")
        assert {d["state"] for d in client.data_for("WEB-HOOD")} == {"ok"}
        # The channel says it accepted orders up to now; none are imported yet.
        web.orders_pending_until = timezone.now()
        web.save(update_fields=["orders_pending_until"])
        assert client.wait_for(lambda c: c.data_for("WEB-HOOD")[-1]["state"] == "updating", timeout=5)
        web.orders_imported_until = web.orders_pending_until
        web.save(update_fields=["orders_imported_until"])
        assert client.wait_for(lambda c: c.data_for("WEB-HOOD")[-1]["state"] == "ok", timeout=5)

        # A push that failed is a change not settled; reconciliation's repair not landed yet is stale.
        hood = Listing.objects.get(channel_sku="WEB-HOOD")
        SyncWork.objects.create(
            listing=hood, channel=web, priority=1, enqueued_at=timezone.now(), changed_at=timezone.now(),
            next_attempt_at=timezone.now(), attempts=1,
        )  # fmt: skip
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens']['web']}")
        rows = api.get("/api/v1/availability/", {"sku": ["WEB-HOOD", "WEB-CAP", "NOPE"]}).json()["results"]
        assert [(r["sku"], r["state"]) for r in rows] == [("WEB-HOOD", "updating"), ("WEB-CAP", "ok"), ("NOPE", "ok")]
        SyncWork.objects.filter(listing=hood).update(reason="reconcile", attempts=0)
        rows = api.get("/api/v1/availability/", {"sku": ["WEB-HOOD"]}).json()["results"]
        assert rows[0]["state"] == "stale"

        # A supplier feeding the caps, past its max age.
        supplier = LocationFactory(code="SUP", kind="supplier", stock_valid_until=timezone.now() - timedelta(minutes=1))
        stock(ItemFactory(sku="OTHER"), supplier, 3)
        from apps.catalog.models import Item

        stock(Item.objects.get(sku="CAP"), supplier, 0)
        from apps.channels.models import ChannelLocation

        ChannelLocation.objects.create(channel=web, location=supplier, priority=5)
        assert client.wait_for(lambda c: c.data_for("WEB-CAP")[-1]["state"] == "stale", timeout=5)
    finally:
        client.close()


def test_a_synchronous_server_refuses_to_hold_a_stream(world, client):
    # In a thread of its own: a browser test before it in this process may leave an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        answer = thread.submit(
            client.get, "/api/v1/availability/stream/", HTTP_AUTHORIZATION=f"Token {world['tokens']['web']}"
        ).result()
    assert answer.status_code == 503 and answer.json()["code"] == "stream_unavailable"
