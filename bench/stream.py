"""The availability stream under load: 1,000 open streams while orders flow at 100/s, on the Procfile's server.

Run inside the resolved stack environment (``make bench BENCH_ARGS=stream`` or ``python bench/stream.py``
with DATABASE_URL/REDIS_URL set). It creates its own database (``stockroom_bench_stream``), a warehouse,
``--skus`` products listed in ``--channels`` channels (the first channel lists 1,000 more, as the
reservation bench's catalog), starts the web process as the Procfile does (gunicorn, uvicorn workers,
``inventory_site.asgi``) and measures:

- the order path's throughput (wrk, ``POST /api/v1/orders/``, spread over the followed SKUs) before any
  stream is open, and orders at ``--rate``/s for ``--seconds`` (32 threads, open loop): taken per second,
  answer time, the web workers' CPU per order;
- ``--streams`` streams opened by a client process (asyncio, one connection each, each following
  ``--follow`` SKUs of its channel), and the web workers' memory before and after: memory per stream;
- orders at ``--rate``/s for ``--seconds`` over HTTP while the streams are open: every change must reach
  every stream that follows its SKU; p50/p99 from the event's ``as_of`` (stamped after the commit, before
  the listings are read) to the moment the last of its subscribers has it; and the orders' own figures,
  beside those without streams;
- the order path's throughput again with the streams open (and receiving the events its orders cause),
  and once more after they closed, with the web workers' CPU per order in each phase (steadier than
  throughput on a machine shared with other work).

Writes var/bench/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import (  # noqa: E402
    base_database_url,
    database_recreate,
    django_setup,
    percentile,
    rows_write,
    with_database,
)

BENCH_DB = os.environ.get("BENCH_STREAM_DATABASE_NAME", "stockroom_bench_stream")
PREFIX = "stockroom-bench-stream"
SETTINGS = {
    "CACHE_KEY_PREFIX": PREFIX,
    "CELERY_KEY_PREFIX": f"{PREFIX}:",
    "API_THROTTLE_RATE": "100000000/min",
    "DATABASE_CONN_MAX_AGE": "600",
}


# --- the client process: many streams in one event loop ---------------------------------------------


async def _one_stream(port: int, spec: dict[str, Any], seen: list[Any], ready: asyncio.Event, counts: dict[str, int]):
    from urllib.parse import urlencode

    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    query = urlencode([("sku", s) for s in spec["skus"]])
    writer.write(
        f"GET /api/v1/availability/stream/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {spec['token']}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        counts["refused"] += 1
        if counts["ready"] + counts["refused"] == counts["total"]:
            ready.set()
        return
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    buffer = b""
    snapshot = len(spec["skus"])
    index = spec["index"]
    while True:
        size_line = await reader.readline()
        if not size_line:
            break
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            break
        buffer += await reader.readexactly(size)
        await reader.readexactly(2)
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            now = time.time()
            event_id = data = None
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    event_id = line[4:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            if data is None:
                continue
            if snapshot > 0:
                snapshot -= 1
                if snapshot == 0:
                    counts["ready"] += 1
                    if counts["ready"] + counts["refused"] == counts["total"]:
                        ready.set()
                continue
            row = json.loads(data)
            seen.append((index, event_id, row["sku"], row["as_of"], now))
    if snapshot > 0:  # ended before its snapshot (the server could not reach Redis): counted as refused
        counts["refused"] += 1
        if counts["ready"] + counts["refused"] == counts["total"]:
            ready.set()
    writer.close()


async def _clients(port: int, specs: list[dict[str, Any]], out: Path, ready_file: Path, stop_file: Path) -> None:
    seen: list[Any] = []
    ready = asyncio.Event()
    counts = {"ready": 0, "refused": 0, "total": len(specs)}
    tasks = []
    for spec in specs:
        tasks.append(asyncio.create_task(_one_stream(port, spec, seen, ready, counts)))
        await asyncio.sleep(0.002)  # a storefront's visitors arrive, they do not all knock at once
    await ready.wait()
    ready_file.write_text(json.dumps(counts))
    while not stop_file.exists():
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.write_text(json.dumps({"seen": seen, "counts": counts}))


def clients_main(args: argparse.Namespace) -> None:
    specs = json.loads(Path(args.specs).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_clients(args.port, specs, Path(args.out), Path(args.ready), Path(args.stop)))


# --- the bench process -----------------------------------------------------------------------------


def catalog(channels: int, skus: int) -> list[dict[str, Any]]:
    """The reservation bench's catalog (channel `bench`, SKUs s1..), and more channels listing s1..s<skus>."""
    import reserve
    from django.db import transaction

    from apps.catalog.models import Location, Product
    from apps.channels.models import Channel, ChannelLocation, Listing
    from apps.core.services import token_create

    first_token = reserve.catalog_generate(skus + 1000)
    location = Location.objects.get(code="bench-wh")
    products = list(Product.objects.filter(code__in=[f"s{i}" for i in range(1, skus + 1)]))
    result = [{"code": "bench", "token": first_token}]
    with transaction.atomic():
        for n in range(1, channels):
            channel = Channel.objects.create(code=f"bench-{n}", name=f"Bench shop {n}")
            ChannelLocation.objects.create(channel=channel, location=location, priority=0)
            Listing.objects.bulk_create([Listing(channel=channel, product=p, channel_sku=p.code) for p in products])
            result.append({"code": channel.code, "token": token_create(channel_code=channel.code)})
    return result


def server_start(database_url: str, workers: int) -> tuple[subprocess.Popen, int]:
    """The Procfile's web command, on a free port."""
    import reserve

    return reserve.gunicorn_start(
        database_url, workers, "asgi", settings=SETTINGS, probe="/healthz/live", extra=("--graceful-timeout", "5")
    )


def workers_rss(master: int) -> int:
    import psutil

    return sum(child.memory_info().rss for child in psutil.Process(master).children())


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time used so far by a process (and, for the web's master, its workers)."""
    import psutil

    processes = psutil.Process(pid).children() if children else [psutil.Process(pid)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def orders_at_rate(port: int, token: str, rate: float, seconds: float, skus: int) -> dict[str, Any]:
    """POST /api/v1/orders/ at ``rate`` per second (spread over threads), one unit of a random followed SKU."""
    threads = 32  # open loop: a slow answer delays only its own thread's next order
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()
    started = time.monotonic()
    prefix = f"stream-{time.time_ns()}"

    def worker(index: int) -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        interval = threads / rate
        n = 0
        next_at = started + index * interval / threads
        while True:
            now = time.monotonic()
            if now - started >= seconds:
                break
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            n += 1
            line = {"sku": f"s{random.randint(1, skus)}", "quantity": 1}
            body = json.dumps({"external_id": f"{prefix}-{index}-{n}", "lines": [line]})
            sent = time.perf_counter()
            try:
                conn.request(
                    "POST", "/api/v1/orders/", body=body,
                    headers={"Authorization": f"Token {token}", "Content-Type": "application/json",
                             "Idempotency-Key": f"{prefix}-{index}-{n}"},
                )  # fmt: skip
                response = conn.getresponse()
                response.read()
                ok = response.status == 201
            except OSError:
                ok = False
                conn = HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    failed[0] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "done": len(latencies),
        "failed": failed[0],
        "per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def order_throughput(port: int, token: str, seconds: float, skus: int, concurrency: int) -> dict[str, Any]:
    import reserve

    wrk = reserve.wrk_available()
    if wrk:
        return reserve.http_measure_wrk(wrk, port, "spread", token, seconds, concurrency, skus)
    return reserve.http_measure_python(port, "spread", token, seconds, concurrency, skus)


def order_throughput_cpu(web: int, port: int, token: str, args: argparse.Namespace) -> dict[str, Any]:
    """The order path's throughput, and the web workers' CPU per order meanwhile (less noisy than throughput
    on a machine shared with other work: it counts what the web spends, not what it was given)."""
    cpu = cpu_seconds(web)
    result = order_throughput(port, token, args.throughput_seconds, args.skus, args.concurrency)
    result["cpu_s"] = cpu_seconds(web) - cpu
    result["cpu_ms_per_order"] = result["cpu_s"] * 1000 / max(1, result["done"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=int(os.environ.get("BENCH_STREAMS", "1000")))
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--skus", type=int, default=100, help="products every channel lists and streams follow")
    parser.add_argument("--follow", type=int, default=10, help="SKUs each stream follows")
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second during the latency phase")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "20")))
    parser.add_argument("--throughput-seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections for the throughput phases")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "3")))
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--specs", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ready", default="", help=argparse.SUPPRESS)
    parser.add_argument("--stop", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        clients_main(args)
        return 0

    import tempfile

    admin_url = base_database_url()
    database_url = with_database(admin_url, BENCH_DB)
    print(f"creating database {BENCH_DB}...", flush=True)
    database_recreate(admin_url, BENCH_DB)
    os.environ["BENCH_DATABASE_NAME"] = BENCH_DB
    django_setup(database_url, **SETTINGS)
    from django.core.cache import caches
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0, interactive=False)
    client = caches["default"].client.get_client(write=True)  # type: ignore[attr-defined]  # django-redis
    for key in client.scan_iter(match=f"*{PREFIX}*"):
        client.delete(key)
    channels = catalog(args.channels, args.skus)
    connections.close_all()
    rng = random.Random(7)
    specs = [
        {
            "index": i,
            "channel": i % len(channels),
            "token": channels[i % len(channels)]["token"],
            "skus": rng.sample([f"s{k}" for k in range(1, args.skus + 1)], args.follow),
        }
        for i in range(args.streams)
    ]
    rows: list[dict[str, Any]] = []
    process, port = server_start(database_url, args.workers)
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        print("order path, no stream open...", flush=True)
        before = order_throughput_cpu(process.pid, port, channels[0]["token"], args)
        print(f"orders at {args.rate:.0f}/s for {args.seconds:.0f} s, no stream open...", flush=True)
        cpu = cpu_seconds(process.pid)
        flow_alone = orders_at_rate(port, channels[0]["token"], args.rate, args.seconds, args.skus)
        flow_alone["cpu_ms_per_order"] = (cpu_seconds(process.pid) - cpu) * 1000 / max(1, flow_alone["done"])
        time.sleep(2)
        rss_before = workers_rss(process.pid)

        (work / "specs.json").write_text(json.dumps(specs))
        clients = subprocess.Popen(
            [sys.executable, __file__, "--clients", "--port", str(port), "--specs", str(work / "specs.json"),
             "--out", str(work / "seen.json"), "--ready", str(work / "ready"), "--stop", str(work / "stop")],
            cwd=ROOT,
        )  # fmt: skip
        print(f"opening {args.streams} streams...", flush=True)
        opened_at = time.monotonic()
        while not (work / "ready").exists():
            if clients.poll() is not None:
                raise RuntimeError("the stream clients died")
            if time.monotonic() - opened_at > 300:
                raise RuntimeError("the streams did not all open in 5 minutes")
            time.sleep(0.5)
        open_s = time.monotonic() - opened_at
        counts = json.loads((work / "ready").read_text())
        time.sleep(2)
        rss_open = workers_rss(process.pid)
        print(f"  {counts['ready']} open in {open_s:.1f} s ({counts['refused']} refused)", flush=True)

        print(f"orders at {args.rate:.0f}/s for {args.seconds:.0f} s with the streams open...", flush=True)
        flow_started = time.time()
        cpu = cpu_seconds(process.pid)
        flow = orders_at_rate(port, channels[0]["token"], args.rate, args.seconds, args.skus)
        flow["cpu_ms_per_order"] = (cpu_seconds(process.pid) - cpu) * 1000 / max(1, flow["done"])
        time.sleep(3)  # the last events on their way
        flow_ended = time.time()
        print("order path, streams open...", flush=True)
        clients_cpu_before = cpu_seconds(clients.pid, children=False)
        during = order_throughput_cpu(process.pid, port, channels[0]["token"], args)
        cpu_clients = cpu_seconds(clients.pid, children=False) - clients_cpu_before
        (work / "stop").write_text("")
        clients.wait(timeout=120)
        seen = json.loads((work / "seen.json").read_text())["seen"]
        time.sleep(2)
        print("order path, streams closed again...", flush=True)
        after = order_throughput_cpu(process.pid, port, channels[0]["token"], args)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    # Every event of the flow phase, per channel: who should have it (streams following its SKU) and when
    # the last of them had it.
    followers: dict[tuple[int, str], set[int]] = {}
    for spec in specs:
        for sku in spec["skus"]:
            followers.setdefault((spec["channel"], sku), set()).add(spec["index"])
    events: dict[tuple[int, str], dict[str, Any]] = {}
    for index, event_id, sku, as_of, at in seen:
        stamped = datetime.fromisoformat(as_of.replace("Z", "+00:00")).timestamp()
        if not flow_started <= stamped <= flow_ended:
            continue
        entry = events.setdefault(
            (specs[index]["channel"], event_id), {"sku": sku, "as_of": stamped, "got": set(), "last": 0.0}
        )
        entry["got"].add(index)
        entry["last"] = max(entry["last"], at)
    latencies = sorted(e["last"] - e["as_of"] for e in events.values())
    missed = sum(len(followers[(channel, e["sku"])] - e["got"]) for (channel, _), e in events.items())
    deliveries = sum(len(e["got"]) for e in events.values())
    per_stream_kib = (rss_open - rss_before) / max(1, counts["ready"]) / 1024

    def add(name: str, figure: float, unit: str, raw: float | None = None, **extra: Any) -> None:
        rows.append({"name": name, "figure": round(figure, 3), "unit": unit, "raw": raw,
                     "ratio": round(figure / raw, 2) if raw else None, **extra})  # fmt: skip

    add("stream: streams open (refused)", counts["ready"], f"streams ({counts['refused']} refused)", args.streams)
    add("stream: time to open them all", open_s, "s")
    for label, phase in (("no stream open", flow_alone), ("streams open", flow)):
        add(f"stream: orders at {args.rate:.0f}/s, {label}: taken", phase["per_s"], "orders/s", args.rate,
            failed=phase["failed"])  # fmt: skip
        add(f"stream: orders at {args.rate:.0f}/s, {label}: answer p50 / p99", phase["p50_ms"],
            f"ms / {phase['p99_ms']:.0f} ms")  # fmt: skip
        add(f"stream: orders at {args.rate:.0f}/s, {label}: web workers' CPU per order", phase["cpu_ms_per_order"],
            "ms", None if phase is flow_alone else flow_alone["cpu_ms_per_order"])  # fmt: skip
    add("stream: changes (channel events) in the flow", len(events), "events")
    add("stream: deliveries to subscribers", deliveries, "events")
    add("stream: deliveries missed", missed, "events", 0)
    add("stream: as_of to last subscriber p50", percentile(latencies, 50), "s")
    add("stream: as_of to last subscriber p99", percentile(latencies, 99), "s", 1.0)
    add("stream: web workers' memory per open stream", per_stream_kib, "KiB",
        rss_before=rss_before, rss_open=rss_open)  # fmt: skip
    for label, phase in (("no stream open", before), ("streams open", during), ("streams closed again", after)):
        add(f"stream: order path, {label} (wrk)", phase["done"] / phase["elapsed"], "orders/s",
            None if phase is before else before["done"] / before["elapsed"],
            p50_ms=phase["p50_ms"], p99_ms=phase["p99_ms"])  # fmt: skip
        add(f"stream: web workers' CPU per order, {label}", phase["cpu_ms_per_order"], "ms",
            None if phase is before else before["cpu_ms_per_order"])  # fmt: skip
    add("stream: CPU of the bench's stream clients (on the same machine) while wrk ran with streams open",
        cpu_clients, f"s in {during['elapsed']:.0f} s")  # fmt: skip
    path = rows_write("stream", rows)
    print("\n| measurement | figure | unit | raw | ratio |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['figure']:,} | {row['unit']} | {row['raw'] or ''} | {row['ratio'] or ''} |")
    print(f"\nwritten {path}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
