"""Reservations per second and latency, hot SKU and a spread of SKUs, beside plain SQL of the same shape.

Run inside the resolved stack environment (``make bench BENCH_ARGS=reserve`` or
``python bench/reserve.py`` with DATABASE_URL/REDIS_URL set). The script creates its own
database (``stockroom_bench``, recreated on every run), migrates it, generates the catalog
(one hot SKU and ``--skus`` spread SKUs), then measures in the same run:

- service layer (``order_reserve``), threads in one process and two processes;
- HTTP: gunicorn on a free loopback port, driven by wrk (a Lua script posting orders with a
  unique Idempotency-Key each), or by a Python load generator when wrk is not available;
- the framework floor on the same server, at the same concurrency: ``GET /api/v1/whoami/``
  with the same channel token (authentication, throttle, middleware, one small JSON answer),
  so that the order rows say what share of what Django and DRF can serve here they reach;
- CPU per request in one process, through Django's own request handler (no server, no network), the
  floor, an order and the service alone: the web worker's share of the cost, which the load of
  other processes on a shared machine hardly moves (``--phases cpu``);
- plain SQL through psycopg: the bare shape (SELECT FOR UPDATE + UPDATE + INSERT) and the
  statements the service itself sends for one order;
- oversold units, ``reserved`` against the open reservations, and the ledger against the levels.

It prints a table and writes var/bench/reserve.json ({"rows": [{"name", "figure", "unit", "raw", "ratio"}]});
an HTTP order row also carries ``floor_ratio`` (to the whoami floor) and ``service_ratio`` (to the
service layer, 8 threads, same SKU mode). Durations: ``--seconds`` per phase (env BENCH_SECONDS),
``--skus`` (env BENCH_SKUS); ``--phases`` runs a part (say ``service,http`` when comparing commits).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import (  # noqa: E402
    base_database_url,
    bench_environment,
    database_recreate,
    django_setup,
    percentile,
    with_database,
)

OUT = ROOT / "var" / "bench"
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "stockroom_bench")
PREFIX = "stockroom-bench"
HOT_STOCK = 10**9
SPREAD_STOCK = 1000


# --- environment -------------------------------------------------------------------------


# What the reservation benchmark changes from production: its own Redis namespace, a throttle
# that never refuses the load, long-lived connections, plain HTTP on loopback.
BENCH_SETTINGS = {
    "CACHE_KEY_PREFIX": PREFIX,
    "CELERY_KEY_PREFIX": f"{PREFIX}:",
    "API_THROTTLE_RATE": "100000000/min",
    "DATABASE_CONN_MAX_AGE": "600",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
}


# --- data --------------------------------------------------------------------------------


def insert_select(model: Any, exprs: dict[str, str], source: str) -> None:
    """INSERT ... SELECT for a model, filling every column not given with its Python default."""
    from django.db import connection

    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in exprs:
            continue
        columns.append(f'"{field.column}"')
        if field.column in exprs:
            values.append(exprs[field.column])
        else:
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                values.append("now()")
                continue
            default = field.get_default() if field.has_default() else None
            values.append("%s")
            params.append(field.get_db_prep_save(default, connection))
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)} {source}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def catalog_generate(skus: int) -> str:
    """One warehouse, a channel selling from it, a hot SKU and ``skus`` spread SKUs; returns a channel token."""
    from django.db import transaction

    from apps.catalog.models import Item, Location, Movement, Product, ProductComponent, StockLevel
    from apps.channels.models import Channel, ChannelLocation, Listing
    from apps.core.services import token_create

    with transaction.atomic():
        location = Location.objects.create(code="bench-wh", name="Bench warehouse", kind=Location.Kind.WAREHOUSE)
        channel = Channel.objects.create(code="bench", name="Bench shop")
        ChannelLocation.objects.create(channel=channel, location=location, priority=0)
        series = f"FROM generate_series(0, {skus}) AS g"  # g = 0 is the hot SKU
        sku = "CASE WHEN g = 0 THEN 'hot' ELSE 's' || g END"
        insert_select(Item, {"sku": sku, "name": sku}, series)
        insert_select(Product, {"code": sku, "name": sku}, series)
        insert_select(
            ProductComponent,
            {"product_id": "p.id", "item_id": "i.id", "quantity": "1"},
            "FROM catalog_product p JOIN catalog_item i ON i.sku = p.code",
        )
        insert_select(
            Listing,
            {"channel_id": str(channel.pk), "channel_sku": "p.code", "product_id": "p.id"},
            "FROM catalog_product p",
        )
        stock = f"CASE WHEN i.sku = 'hot' THEN {HOT_STOCK} ELSE {SPREAD_STOCK} END"
        insert_select(
            StockLevel,
            {"item_id": "i.id", "location_id": str(location.pk), "on_hand": stock},
            "FROM catalog_item i",
        )
        insert_select(
            Movement,
            {
                "item_id": "i.id",
                "location_id": str(location.pk),
                "kind": "'receipt'",
                "on_hand_delta": stock,
                "actor": "'bench'",
            },
            "FROM catalog_item i",
        )
    with transaction.atomic():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS bench_reservation (id bigserial PRIMARY KEY, level_id bigint, q int)"
            )
            cursor.execute("ANALYZE")
    return token_create(channel_code="bench", name="bench")


# --- measurement helpers ----------------------------------------------------------------


def summary(name: str, count: int, seconds: float, latencies_ms: list[float], **extra: Any) -> dict[str, Any]:
    ordered = sorted(latencies_ms)
    return {
        "name": name,
        "figure": count / seconds if seconds else 0.0,
        "unit": "orders/s",
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "count": count,
        **extra,
    }


def pick_sku(mode: str, skus: int) -> str:
    return "hot" if mode == "hot" else f"s{random.randint(1, skus)}"


def threads_run(worker: Any, threads: int, seconds: float) -> tuple[int, float, list[float], int]:
    """Run worker(index, deadline) -> (done, latencies, refused) in threads; returns totals."""
    results: list[tuple[int, list[float], int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def body(index: int) -> None:
        barrier.wait()
        outcome = worker(index, time.perf_counter() + seconds)
        with lock:
            results.append(outcome)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = [ms for _, lat, _ in results for ms in lat]
    return sum(done for done, _, _ in results), elapsed, latencies, sum(refused for _, _, refused in results)


def service_measure(mode: str, threads: int, seconds: float, skus: int, tag: str) -> dict[str, Any]:
    from django.db import connections

    from apps.channels.models import Channel
    from apps.orders.errors import InsufficientStock
    from apps.orders.services import LineRequest, order_reserve

    channel = Channel.objects.get(code="bench")
    connections.close_all()

    def worker(index: int, deadline: float) -> tuple[int, list[float], int]:
        latencies, done, refused, n = [], 0, 0, 0
        while time.perf_counter() < deadline:
            n += 1
            started = time.perf_counter()
            try:
                order_reserve(
                    channel=channel,
                    external_id=f"{tag}-{index}-{n}",
                    lines=[LineRequest(pick_sku(mode, skus), 1)],
                    hold_minutes=600,
                )
                done += 1
            except InsufficientStock:
                refused += 1
            latencies.append((time.perf_counter() - started) * 1000)
        connections.close_all()
        return done, latencies, refused

    done, elapsed, latencies, refused = threads_run(worker, threads, seconds)
    return {"done": done, "elapsed": elapsed, "latencies": latencies, "refused": refused}


SHAPE_SQL = (
    "SELECT id, on_hand, reserved, safety FROM catalog_stocklevel WHERE item_id = %s AND location_id = %s FOR UPDATE",
    "UPDATE catalog_stocklevel SET reserved = reserved + 1 WHERE id = %s",
    "INSERT INTO bench_reservation (level_id, q) VALUES (%s, 1)",
)


def raw_measure(mode: str, threads: int, seconds: float, skus: int, database_url: str, own: bool) -> dict[str, Any]:
    """Plain psycopg, one connection per thread: the bare shape, or the statements order_reserve sends."""
    import psycopg

    from apps.catalog.models import Item, Location
    from apps.channels.models import Channel

    location = Location.objects.get(code="bench-wh").pk
    channel = Channel.objects.get(code="bench").pk
    item_ids = dict(Item.objects.filter(sku__in=["hot", "s1"]).values_list("sku", "id"))
    hot_item = item_ids["hot"]
    first_spread = item_ids["s1"]  # items were inserted in series order: s<n> is first_spread + n - 1
    from django.utils import timezone

    from apps.orders.services.allocation import RESOLVE_SQL, Allocation, Plan, ResolvedLine
    from apps.orders.services.fast import reserve_params, reserve_statement

    reserve = reserve_statement().statement

    expires_at = timezone.now() + timedelta(hours=10)

    def item_for(sku: str) -> int:
        return hot_item if sku == "hot" else first_spread + int(sku[1:]) - 1

    def worker(index: int, deadline: float) -> tuple[int, list[float], int]:
        latencies, done, n = [], 0, 0
        # Prepared on first use with generic plans, as the service's own statements are; the service's
        # statements each commit by themselves (autocommit), the bare shape is a transaction.
        with (
            psycopg.connect(
                database_url, autocommit=own, prepare_threshold=0, options="-c plan_cache_mode=force_generic_plan"
            ) as conn,
            conn.cursor() as cur,
            psycopg.RawCursor(conn) as raw_cur,
        ):
            while time.perf_counter() < deadline:
                n += 1
                sku = pick_sku(mode, skus)
                item = item_for(sku)
                started = time.perf_counter()
                if own:
                    cur.execute(RESOLVE_SQL, [channel, [sku]])
                    resolved = cur.fetchone()
                    assert resolved is not None
                    listing, _, product = resolved[:3]
                    conn.commit()
                    line = ResolvedLine(sku, 1, listing, product, True, [(item, 1)])
                    params = reserve_params(
                        order_id=resolved[8],
                        created_at=timezone.now(),
                        channel_id=channel,
                        external_id=f"raw-{os.getpid()}-{index}-{n}-{time.time_ns()}",
                        mode="reserve",
                        status="reserved",
                        expires_at=expires_at,
                        actor="",
                        kind="reserve",
                        lines=[line],
                        plan=Plan([Allocation(0, location, 1)], {0: 0}),
                        pairs=[(item, location)],
                        priority=1,
                    )
                    raw_cur.execute(reserve.text, reserve.args(params))
                    raw_cur.fetchone()
                else:
                    cur.execute(SHAPE_SQL[0], [item, location])
                    locked_row = cur.fetchone()
                    assert locked_row is not None
                    level = locked_row[0]
                    cur.execute(SHAPE_SQL[1], [level])
                    cur.execute(SHAPE_SQL[2], [level])
                conn.commit()
                done += 1
                latencies.append((time.perf_counter() - started) * 1000)
        return done, latencies, 0

    done, elapsed, latencies, _ = threads_run(worker, threads, seconds)
    return {"done": done, "elapsed": elapsed, "latencies": latencies, "refused": 0}


# --- HTTP ----------------------------------------------------------------------------------

# Each wrk thread runs this chunk in its own Lua state; ``id`` is the global that setup() gives
# each thread (a top-level local would shadow it and give every thread the same keys).
WRK_LUA = """
local counter = 0
local next_id = 0
local threads = {}
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
init = function(args)
  math.randomseed(os.time() * 1000 + id)
  rejected = 0
  replayed = 0
end
request = function()
  counter = counter + 1
  local key = string.format("%s-%d-%d", PREFIX, id, counter)
  local sku = "hot"
  if MODE ~= "hot" then sku = "s" .. math.random(1, SKUS) end
  local body = string.format('{"external_id":"%s","lines":[{"sku":"%s","quantity":1}],"hold_minutes":600}', key, sku)
  return wrk.format("POST", "/api/v1/orders/", {["Content-Type"] = "application/json",
    ["Authorization"] = "Token " .. TOKEN, ["Idempotency-Key"] = key}, body)
end
response = function(status, headers, body)
  if status ~= 201 then rejected = rejected + 1 end
  if headers["Idempotent-Replayed"] then replayed = replayed + 1 end
end
done = function(summary, latency, requests)
  local rejected_total, replayed_total = 0, 0
  for _, thread in ipairs(threads) do
    rejected_total = rejected_total + thread:get("rejected")
    replayed_total = replayed_total + thread:get("replayed")
  end
  io.write(string.format('WRKJSON {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "rejected": %d, ' ..
    '"replayed": %d, "socket_errors": %d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, rejected_total, replayed_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


# The framework floor: the same token, a GET that only authenticates, throttles and answers.
WRK_FLOOR_LUA = """
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
init = function(args)
  rejected = 0
end
request = function()
  return wrk.format("GET", "/api/v1/whoami/", {["Authorization"] = "Token " .. TOKEN})
end
response = function(status, headers, body)
  if status ~= 200 then rejected = rejected + 1 end
end
done = function(summary, latency, requests)
  local rejected_total = 0
  for _, thread in ipairs(threads) do rejected_total = rejected_total + thread:get("rejected") end
  io.write(string.format('WRKJSON {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "rejected": %d, ' ..
    '"replayed": 0, "socket_errors": %d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, rejected_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_available() -> str | None:
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_APT"):
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package)...", flush=True)
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "timeout": 120}
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                check=False,
                **quiet,
            )
            if not shutil.which("wrk"):
                subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
                subprocess.run(
                    ["apt-get", "install", "-y", "-qq", "wrk"],
                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                    check=False,
                    **quiet,
                )
        except (OSError, subprocess.TimeoutExpired):
            pass
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The Procfile's web server: ASGI (uvicorn workers under gunicorn); ``--server wsgi`` measures the
# synchronous server it replaced, for a before/after on the same machine.
SERVERS = {
    "asgi": ["inventory_site.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker"],
    "wsgi": ["inventory_site.wsgi:application"],
}


def gunicorn_start(
    database_url: str,
    workers: int,
    server: str = "asgi",
    *,
    settings: dict[str, str] | None = None,
    probe: str = "/api/v1/availability/?sku=hot",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, int]:
    """The web server on a free loopback port, once ``probe`` answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", *SERVERS[server],
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--backlog", "2048",
            "--log-level", "warning", "--timeout", "60", *extra,
        ],
        cwd=ROOT,
        env=bench_environment(database_url, **(BENCH_SETTINGS if settings is None else settings)),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", probe)
            conn.getresponse().read()
            return process, port
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("gunicorn did not come up")


def http_measure_wrk(
    wrk: str, port: int, mode: str, token: str, seconds: float, concurrency: int, skus: int
) -> dict[str, Any]:
    """``mode``: hot or spread (orders), or floor (GET whoami)."""
    prefix = f"http-{mode}-{time.time_ns()}"
    template = WRK_FLOOR_LUA if mode == "floor" else WRK_LUA
    script = template.replace("PREFIX", json.dumps(prefix)).replace("MODE", json.dumps(mode))
    script = script.replace("SKUS", str(skus)).replace("TOKEN", json.dumps(token))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        threads = min(4, concurrency)
        result = subprocess.run(
            [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:.0f}s", "--timeout", "10s",
             "-s", handle.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {result.stdout}\n{result.stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    if data["replayed"]:
        raise RuntimeError(f"{data['replayed']} requests were idempotent replays: the load generator repeated keys")
    return {
        "done": data["requests"] - data["rejected"],
        "elapsed": data["seconds"],
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "rejected": data["rejected"] + data["socket_errors"],
        "generator": "wrk",
    }


def http_measure_python(
    port: int, mode: str, token: str, seconds: float, concurrency: int, skus: int
) -> dict[str, Any]:
    prefix = f"http-{mode}-{time.time_ns()}"
    rejected = [0]

    def worker(index: int, deadline: float) -> tuple[int, list[float], int]:
        latencies, done, n = [], 0, 0
        while time.perf_counter() < deadline:
            n += 1
            key = f"{prefix}-{index}-{n}"
            if mode == "floor":
                method, path, body, expected = "GET", "/api/v1/whoami/", None, 200
                headers = {"Authorization": f"Token {token}"}
            else:
                method, path, expected = "POST", "/api/v1/orders/", 201
                body = json.dumps(
                    {"external_id": key, "lines": [{"sku": pick_sku(mode, skus), "quantity": 1}], "hold_minutes": 600}
                )
                headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
                headers["Idempotency-Key"] = key
            started = time.perf_counter()
            conn = HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body, headers)
            status = conn.getresponse().status
            conn.close()
            latencies.append((time.perf_counter() - started) * 1000)
            if status == expected:
                done += 1
            else:
                rejected[0] += 1
        return done, latencies, 0

    done, elapsed, latencies, _ = threads_run(worker, concurrency, seconds)
    ordered = sorted(latencies)
    return {
        "done": done,
        "elapsed": elapsed,
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "rejected": rejected[0],
        "generator": "python",
    }


# --- checks ------------------------------------------------------------------------------


def stock_check() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(GREATEST(0, reserved + safety - on_hand)), 0) FROM catalog_stocklevel")
        oversold = int(cursor.fetchone()[0])
        cursor.execute(
            """
            SELECT COUNT(*) FROM catalog_stocklevel s
              LEFT JOIN (SELECT item_id, location_id, SUM(quantity - fulfilled - released) AS open
                           FROM orders_reservation GROUP BY item_id, location_id) r
                ON r.item_id = s.item_id AND r.location_id = s.location_id
             WHERE s.reserved <> COALESCE(r.open, 0)
            """
        )
        reserved_drift = int(cursor.fetchone()[0])
        cursor.execute(
            """
            SELECT COUNT(*) FROM catalog_stocklevel s
              LEFT JOIN (SELECT item_id, location_id, SUM(on_hand_delta) AS on_hand, SUM(reserved_delta) AS reserved
                           FROM catalog_movement GROUP BY item_id, location_id) m
                ON m.item_id = s.item_id AND m.location_id = s.location_id
             WHERE s.on_hand <> COALESCE(m.on_hand, 0) OR s.reserved <> COALESCE(m.reserved, 0)
            """
        )
        ledger_drift = int(cursor.fetchone()[0])
    return {"oversold": oversold, "reserved_drift": reserved_drift, "ledger_drift": ledger_drift}


def shape_undo() -> None:
    """The bare-shape run added to ``reserved`` without reservations or ledger rows; take it back."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE catalog_stocklevel s SET reserved = s.reserved - b.q
              FROM (SELECT level_id, SUM(q) AS q FROM bench_reservation GROUP BY level_id) b
             WHERE s.id = b.level_id
            """
        )
        cursor.execute("TRUNCATE bench_reservation")


def redis_cleanup() -> None:
    try:
        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.REDIS_URL)
        for pattern in (f"{PREFIX}:*", f":1:{PREFIX}*", f"{PREFIX}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    except Exception as err:  # a cache left behind is harmless; say so and go on
        print(f"redis cleanup skipped: {err}")


# --- main --------------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    """A child process of the two-process service run: prints its raw measurements as JSON."""
    django_setup(args.database_url, **BENCH_SETTINGS)
    result = service_measure(args.mode, args.threads, args.seconds, args.skus, f"p{os.getpid()}-{args.mode}")
    print("WORKERJSON " + json.dumps(result), flush=True)


def processes_measure(database_url: str, mode: str, threads: int, seconds: float, skus: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", "--mode", mode, "--threads", str(threads), "--seconds", str(seconds),
        "--skus", str(skus), "--database-url", database_url,
    ]  # fmt: skip
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 120)
        line = next(ln for ln in out.splitlines() if ln.startswith("WORKERJSON "))
        results.append(json.loads(line[len("WORKERJSON ") :]))
    return {
        "done": sum(r["done"] for r in results),
        "elapsed": max(r["elapsed"] for r in results),
        "latencies": [ms for r in results for ms in r["latencies"]],
        "refused": sum(r["refused"] for r in results),
    }


def http_measure_all(
    args: argparse.Namespace,
    database_url: str,
    token: str,
    record: Any,
    rows: list[dict[str, Any]],
    service: dict[str, float],
) -> None:
    """Orders over HTTP (hot, spread) and the framework floor between them, on one server.

    The floor runs between the two order phases so that both see the machine in the same state;
    each order row gets its ratio to the floor and to the service layer of its SKU mode.
    """
    from django.db import connections

    wrk = wrk_available()
    connections.close_all()
    process, port = gunicorn_start(database_url, args.http_workers, args.server)
    generator = "wrk" if wrk else "python load generator"
    name = f"HTTP gunicorn ({args.server}) x{args.http_workers}, c={args.concurrency}"

    def measure(mode: str) -> dict[str, Any]:
        if wrk:
            return http_measure_wrk(wrk, port, mode, token, args.seconds, args.concurrency, args.skus)
        return http_measure_python(port, mode, token, args.seconds, args.concurrency, args.skus)

    orders: dict[str, dict[str, Any]] = {}
    try:
        for mode in ("hot", "floor", "spread"):
            print(f"HTTP ({generator}), {mode}...", flush=True)
            result = measure(mode)
            if mode == "floor":
                floor_name = f"{name}, floor: GET /api/v1/whoami/"
                record(floor_name, result, None, generator=result["generator"], unit="requests/s")
                floor = rows[-1]["figure"]
            else:
                record(f"{name}, {mode}", result, f"sql shape {mode}", generator=result["generator"])
                orders[mode] = rows[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    for mode, row in orders.items():
        row["floor"] = floor
        row["floor_ratio"] = row["figure"] / floor if floor else None
        row["service"] = service.get(mode)
        row["service_ratio"] = row["figure"] / service[mode] if service.get(mode) else None
        shown = f"  {row['name']:<44} {row['floor_ratio'] or 0:.2f} of the whoami floor ({floor:,.0f}/s)"
        if row["service_ratio"] is not None:
            shown += f", {row['service_ratio']:.2f} of the service layer ({service[mode]:,.0f}/s)"
        print(shown, flush=True)


def cpu_measure(token: str, skus: int, count: int) -> dict[str, float]:
    """CPU time of this process per request (ms), medians of three rounds of ``count``: the whoami floor and an
    order (spread SKUs) through Django's request handler, with every middleware, and ``order_reserve`` alone.
    The database's and Redis's own CPU is not in it."""
    from django.test import Client

    from apps.channels.models import Channel
    from apps.orders.services import LineRequest, order_reserve

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    channel = Channel.objects.get(code="bench")
    prefix = f"cpu-{time.time_ns()}"
    counter = iter(range(10**9))

    def floor() -> None:
        assert client.get("/api/v1/whoami/").status_code == 200

    def order() -> None:
        key = f"{prefix}-http-{next(counter)}"
        body = json.dumps({"external_id": key, "lines": [{"sku": pick_sku("spread", skus), "quantity": 1}]})
        response = client.post("/api/v1/orders/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 201, response.content

    def service() -> None:
        order_reserve(
            channel=channel,
            external_id=f"{prefix}-svc-{next(counter)}",
            lines=[LineRequest(pick_sku("spread", skus), 1)],
            hold_minutes=600,
        )

    measured = {"floor: GET /api/v1/whoami/": floor, "order, POST /api/v1/orders/": order, "service alone": service}
    rounds: dict[str, list[float]] = {name: [] for name in measured}
    for call in measured.values():  # warm up: connections, prepared statements, imports
        for _ in range(20):
            call()
    for _ in range(3):
        for name, call in measured.items():
            started = time.process_time()
            for _ in range(count):
                call()
            rounds[name].append((time.process_time() - started) / count * 1000)
    return {name: sorted(values)[1] for name, values in rounds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "8")))
    parser.add_argument("--skus", type=int, default=int(os.environ.get("BENCH_SKUS", "100000")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "8")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", "32")))
    parser.add_argument("--http-workers", type=int, default=int(os.environ.get("BENCH_HTTP_WORKERS", "3")))
    parser.add_argument("--server", choices=sorted(SERVERS), default=os.environ.get("BENCH_SERVER", "asgi"))
    parser.add_argument(
        "--phases",
        default="sql,service,muted,http,cpu",
        help="comma-separated parts to run: sql, service, muted (service without listeners), http (orders and the "
        "whoami floor), cpu (CPU per request in one process); default all",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="hot", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return 0
    phases = {phase.strip() for phase in args.phases.split(",") if phase.strip()}
    if unknown := phases - {"sql", "service", "muted", "http", "cpu"}:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")

    admin_url = base_database_url()
    database_url = with_database(admin_url, BENCH_DB)
    started = time.monotonic()
    print(f"creating database {BENCH_DB} and {args.skus:,} SKUs...", flush=True)
    database_recreate(admin_url, BENCH_DB)
    django_setup(database_url, **BENCH_SETTINGS)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    token = catalog_generate(args.skus)
    print(f"ready in {time.monotonic() - started:.0f} s", flush=True)

    rows: list[dict[str, Any]] = []
    raw: dict[str, dict[str, Any]] = {}
    seconds, threads = args.seconds, args.threads

    def record(name: str, result: dict[str, Any], raw_name: str | None, **extra: Any) -> None:
        if "latencies" in result:
            row = summary(name, result["done"], result["elapsed"], result["latencies"], **extra)
        else:
            row = {
                "name": name,
                "figure": result["done"] / result["elapsed"] if result["elapsed"] else 0.0,
                "unit": "orders/s",
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "count": result["done"],
                **extra,
            }
        row["refused"] = result.get("refused", 0)
        if raw_name is not None and raw_name in raw:
            row["raw"] = raw[raw_name]["figure"]
            row["raw_name"] = raw_name
            row["ratio"] = row["figure"] / row["raw"] if row["raw"] else None
        rows.append(row)
        print(
            f"  {name:<44} {row['figure']:>9,.0f} {row['unit']}  p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
            + (f"  ratio {row['ratio']:.2f} of {raw_name}" if row.get("ratio") else ""),
            flush=True,
        )

    for mode in ("hot", "spread") if "sql" in phases else ():
        print(f"plain SQL, {mode}...", flush=True)
        shape = raw_measure(mode, threads, seconds / 2, args.skus, database_url, own=False)
        raw[f"sql shape {mode}"] = summary(f"sql shape {mode}", shape["done"], shape["elapsed"], shape["latencies"])
        record(f"plain SQL: lock+update+insert, {mode}", shape, None)
        shape_undo()
        own = raw_measure(mode, threads, seconds / 2, args.skus, database_url, own=True)
        raw[f"sql own {mode}"] = summary(f"sql own {mode}", own["done"], own["elapsed"], own["latencies"])
        record(f"plain SQL: the service's statements, {mode}", own, None)

    service: dict[str, float] = {}  # orders/s of the service layer (threads in one process), per SKU mode
    for mode in ("hot", "spread") if "service" in phases else ():
        print(f"service layer, {mode}...", flush=True)
        result = service_measure(mode, threads, seconds, args.skus, f"svc-{mode}")
        record(f"service, {threads} threads, {mode}", result, f"sql own {mode}")
        service[mode] = rows[-1]["figure"]
        result = processes_measure(database_url, mode, max(1, threads // 2), seconds, args.skus)
        record(f"service, 2 processes x {max(1, threads // 2)} threads, {mode}", result, f"sql own {mode}")

    # Where the time goes: the same run without other apps' listeners (sync work, drop-ship check).
    from apps.catalog.signals import stock_changed
    from apps.orders.signals import order_reserved

    saved = {signal_: signal_.receivers for signal_ in (stock_changed, order_reserved)}
    for signal_ in saved:
        signal_.receivers = []
        signal_.sender_receivers_cache.clear()
    try:
        for mode in ("hot", "spread") if "muted" in phases else ():
            result = service_measure(mode, threads, seconds / 2, args.skus, f"svc-muted-{mode}")
            record(f"service, {threads} threads, {mode}, listeners muted", result, f"sql own {mode}")
    finally:
        for signal_, receivers in saved.items():
            signal_.receivers = receivers
            signal_.sender_receivers_cache.clear()

    if "cpu" in phases:
        print("CPU per request, one process...", flush=True)
        cpu = cpu_measure(token, args.skus, count=max(100, int(args.seconds * 50)))
        for name, ms in cpu.items():
            rows.append({"name": f"CPU per request in one process: {name}", "figure": ms, "unit": "ms CPU"})
            if name != "floor: GET /api/v1/whoami/":
                rows[-1]["floor_ratio"] = cpu["floor: GET /api/v1/whoami/"] / ms
            print(f"  {rows[-1]['name']:<60} {ms:.2f} ms", flush=True)

    if "http" in phases:
        http_measure_all(args, database_url, token, record, rows, service)

    checks = stock_check()
    rows.append({"name": "oversold units", "figure": checks["oversold"], "unit": "units", "raw": 0, "ratio": None})
    rows.append(
        {"name": "levels whose reserved != open reservations", "figure": checks["reserved_drift"], "unit": "levels"}
    )
    rows.append({"name": "levels the ledger does not sum to", "figure": checks["ledger_drift"], "unit": "levels"})
    redis_cleanup()

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reserve.json").write_text(
        json.dumps({"rows": rows, "settings": vars(args) | {"database": BENCH_DB}}, indent=2)
    )
    print(
        "\n| measurement | figure | p50 ms | p99 ms | raw (same run) | ratio | of whoami floor | of service |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for row in rows:
        figure = row["figure"]
        if isinstance(figure, float):
            shown = f"{figure:,.2f} {row['unit']}" if row["unit"] == "ms CPU" else f"{figure:,.0f} {row['unit']}"
        else:
            shown = f"{figure} {row['unit']}"
        p50 = f"{row['p50_ms']:.1f}" if "p50_ms" in row else ""
        p99 = f"{row['p99_ms']:.1f}" if "p99_ms" in row else ""
        raw_shown = f"{row['raw']:,.0f} ({row['raw_name']})" if row.get("raw_name") else ""
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") else ""
        of_floor = f"{row['floor_ratio']:.2f}" if row.get("floor_ratio") else ""
        of_service = f"{row['service_ratio']:.2f}" if row.get("service_ratio") else ""
        print(f"| {row['name']} | {shown} | {p50} | {p99} | {raw_shown} | {ratio} | {of_floor} | {of_service} |")
    print(f"\ntotal {time.monotonic() - started:.0f} s; written {OUT / 'reserve.json'}")
    bad = checks["oversold"] or checks["reserved_drift"] or checks["ledger_drift"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
