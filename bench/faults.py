"""Five hosts in network namespaces, orders under load, one fault at a time: what each fault costs.

Run as root (it builds network namespaces, veth pairs and a bridge), not part of `make test`:

    sudo .venv/bin/python bench/faults.py            # every fault, about 30 s of load each
    sudo .venv/bin/python bench/faults.py --fault-seconds 60 --rate 50 --clients 16

The hosts, on the bridge 10.77.0.0/24 (the load generator and the channels sit on the bridge itself,
10.77.0.1, like the internet in front of a load balancer):

    db     10.77.0.10  PostgreSQL and Redis of the run's own (data under --workdir, ports 5440 and 6390)
    web1   10.77.0.11  gunicorn
    web2   10.77.0.12  gunicorn
    work1  10.77.0.21  worker (default), sync worker (sync.0,sync.1), beat
    work2  10.77.0.22  worker (default), sync worker (sync.1,sync.0), beat (the standby at first)

Four push-protocol channels (the channel simulator on 10.77.0.1), two per sync shard. Clients place
orders with holds, confirms, fulfilments and cancels through a load balancer of their own (it polls
each web host's /healthz/ready every half second and sends to the ready ones); a request that fails
is retried with its Idempotency-Key on the other web host. A probe writes on one web host and reads
the availability on the other at once, for every write: a stale read is an answer that differs from
PostgreSQL's after the write returned.

Faults, in turn (--faults picks some): kill a web host (SIGKILL of its gunicorn); partition a worker
host inside a transaction (a process of that host holds the hot items' stock levels locked when its
link goes down); kill a sync worker (SIGKILL); restart PostgreSQL (fast shutdown); cut one web host
from Redis (its packets to Redis dropped). For each: --warmup seconds of load, the fault, --fault-seconds
of load; then the load stops and the run measures how long until every channel shows the truth, then
heals the fault. Printed per fault: orders accepted, oversold units, orders lost or doubled, stale
reads, the API error rate, p99 and longest gap between accepted orders on the surviving web hosts,
seconds until every channel shows the truth. docs/faults.md has the latest report.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pwd
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import percentile  # noqa: E402

PY = str(Path(sys.executable))
CELERY = str(Path(sys.executable).with_name("celery"))
NET = "10.77.0"
BRIDGE = "srf0"
GATEWAY = f"{NET}.1"
HOSTS = {"db": 10, "web1": 11, "web2": 12, "work1": 21, "work2": 22}
PG_PORT, REDIS_PORT, WEB_PORT = 5440, 6390, 8000
DB_IP = f"{NET}.{HOSTS['db']}"
WEBS = ("web1", "web2")
ITEMS, HOT = 40, 6  # the first HOT items are scarce and in a third of the orders
FAULTS = ("kill-web", "partition-worker", "kill-sync-worker", "restart-postgres", "cut-web-redis")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def ns(host: str) -> str:
    return f"srf-{host}"


# --- hosts -----------------------------------------------------------------------------------


class Network:
    def build(self) -> None:
        self.teardown()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for host, last in HOSTS.items():
            sh("ip", "netns", "add", ns(host))
            sh("ip", "link", "add", f"srf-{host}-h", "type", "veth", "peer", "name", "eth0", "netns", ns(host))
            sh("ip", "link", "set", f"srf-{host}-h", "master", BRIDGE, "up")
            sh("ip", "-n", ns(host), "addr", "add", f"{NET}.{last}/24", "dev", "eth0")
            sh("ip", "-n", ns(host), "link", "set", "eth0", "up")
            sh("ip", "-n", ns(host), "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        """The host's cable pulled: its packets vanish, nobody is told (no reset, no ICMP)."""
        sh("ip", "link", "set", f"srf-{host}-h", "down")

    def mend(self, host: str) -> None:
        sh("ip", "link", "set", f"srf-{host}-h", "up")

    def redis_drop(self, host: str, on: bool) -> None:
        rule = ["OUTPUT", "-d", DB_IP, "-p", "tcp", "--dport", str(REDIS_PORT), "-j", "DROP"]
        sh("ip", "netns", "exec", ns(host), "iptables", "-A" if on else "-D", *rule)

    def teardown(self) -> None:
        for host in HOSTS:
            sh("ip", "link", "del", f"srf-{host}-h", check=False)
            sh("ip", "netns", "del", ns(host), check=False)
        sh("ip", "link", "del", BRIDGE, check=False)


class Processes:
    """Every process the run started, by host and role; each in a session of its own (killed as a group)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[str, list[str], str | None]] = {}
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, host: str, command: list[str], user: str | None = None) -> None:
        self.commands[name] = (host, command, user)
        prefix = ["ip", "netns", "exec", ns(host)] + (["runuser", "-u", user, "--"] if user else [])
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        self.running[name] = subprocess.Popen(
            prefix + command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def restart(self, name: str) -> None:
        self.kill(name)
        host, command, user = self.commands[name]
        self.start(name, host, command, user)

    def kill(self, name: str) -> None:
        process = self.running.get(name)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name)


def postgres_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise SystemExit("no user to run PostgreSQL as (postgres or nobody)")


def wait_until(condition, timeout: float, every: float = 0.25) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # not yet
            pass
        time.sleep(every)
    return None


def http(host: str, method: str, path: str, token: str = "", body: Any = None, key: str = "", timeout: float = 30):
    """One request to a web host; returns (status, json or None, seconds); status 0 for no answer."""
    headers = {"Host": f"{NET}.{HOSTS[host]}"}
    if token:
        headers["Authorization"] = f"Token {token}"
    if key:
        headers["Idempotency-Key"] = key
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        conn = HTTPConnection(f"{NET}.{HOSTS[host]}", WEB_PORT, timeout=timeout)
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return response.status, data, time.monotonic() - started
    except (OSError, HTTPException):  # refused, reset, timed out, cut short: no answer
        return 0, None, time.monotonic() - started


# --- the world -----------------------------------------------------------------------------------


def build_world(simulator_urls: list[str]) -> dict[str, Any]:
    from django.db import transaction

    from apps.catalog.models import Item, Location, Product, ProductComponent, StockLevel
    from apps.channels.models import Channel, ChannelLocation, Listing
    from apps.core.services import token_create

    # Two channels per sync shard.
    codes: list[str] = []
    by_shard: dict[int, int] = {}
    for n in range(1, 100):
        code = f"shop{n}"
        shard = Channel(code=code).shard
        if by_shard.get(shard, 0) < 2:
            by_shard[shard] = by_shard.get(shard, 0) + 1
            codes.append(code)
        if len(codes) == 4:
            break
    with transaction.atomic():
        location = Location.objects.create(code="WH", name="Warehouse", kind=Location.Kind.WAREHOUSE)
        items = Item.objects.bulk_create([Item(sku=f"I{n:03d}", name=f"Item {n}") for n in range(ITEMS)])
        probe_item = Item.objects.create(sku="PROBE", name="Freshness probe")
        StockLevel.objects.bulk_create(
            [StockLevel(item=i, location=location, on_hand=300 if n < HOT else 100_000) for n, i in enumerate(items)]
            + [StockLevel(item=probe_item, location=location, on_hand=1_000_000)]
        )
        products = Product.objects.bulk_create([Product(code=f"P{n:03d}", name=f"Product {n}") for n in range(ITEMS)])
        bundles = Product.objects.bulk_create(
            [Product(code=f"B{n:03d}", name=f"Bundle {n}", kind=Product.Kind.BUNDLE) for n in range(HOT)]
        )
        probe = Product.objects.create(code="PROBE", name="Freshness probe")
        ProductComponent.objects.bulk_create(
            [ProductComponent(product=products[n], item=items[n], quantity=1) for n in range(ITEMS)]
            + [ProductComponent(product=probe, item=probe_item, quantity=1)]
            + [ProductComponent(product=bundles[n], item=items[n], quantity=1) for n in range(HOT)]
            + [ProductComponent(product=bundles[n], item=items[HOT + n], quantity=2) for n in range(HOT)]
        )
        channels = []
        for code, url in zip(codes, simulator_urls, strict=True):
            channel = Channel.objects.create(
                code=code, name=code, secret="s3cret", push_url=url, rate_per_s=40, burst=20
            )
            ChannelLocation.objects.create(channel=channel, location=location, priority=0)
            Listing.objects.bulk_create(
                [Listing(channel=channel, channel_sku=f"{code}-{p.code}", product=p) for p in [*products, *bundles]]
                + [Listing(channel=channel, channel_sku=f"{code}-PROBE", product=probe)]
            )
            channels.append(channel)
    return {
        "channels": [(c.code, token_create(channel_code=c.code, name="faults")) for c in channels],
        "skus": [p.code for p in products] + [b.code for b in bundles],
        "hot_skus": [p.code for p in products[:HOT]] + [b.code for b in bundles],
        "hot_pairs": [(i.pk, location.pk) for i in items[:HOT]],
    }


def truth_gap(simulators: dict[str, Any]) -> int:
    """Listings whose channel does not show what PostgreSQL says it may sell (0: every channel shows the truth)."""
    from django.db import connections

    from apps.channels.models import Listing
    from apps.channels.selectors import listings_availability

    try:
        listings = list(Listing.objects.select_related("channel").only("pk", "channel_sku", "channel__code"))
        truth = listings_availability([lst.pk for lst in listings])
        return sum(
            1 for lst in listings if simulators[lst.channel.code].shown(lst.channel_sku) != truth[lst.pk].available
        )
    finally:
        connections.close_all()


def truth_gap_detail(simulators: dict[str, Any]) -> list[str]:
    """The listings whose channel does not show the truth, with their pending sync work (for the report)."""
    from django.db import connections

    from apps.channels.models import Listing, SyncWork
    from apps.channels.selectors import listings_availability

    try:
        listings = list(Listing.objects.select_related("channel"))
        truth = listings_availability([lst.pk for lst in listings])
        off = []
        for lst in listings:
            shown = simulators[lst.channel.code].shown(lst.channel_sku)
            if shown != truth[lst.pk].available:
                work = SyncWork.objects.filter(listing=lst).values_list("state", "attempts", "last_error").first()
                off.append(f"{lst.channel_sku} shows {shown}, truth {truth[lst.pk].available}, sync work {work}")
        return off
    finally:
        connections.close_all()


def integrity(accepted: dict[str, int]) -> dict[str, int]:
    from django.db import connection, connections

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(SUM(GREATEST(0, reserved + safety - on_hand)), 0) FROM catalog_stocklevel")
            oversold = int(cursor.fetchone()[0])
            cursor.execute("SELECT COALESCE(SUM(GREATEST(0, -on_hand)), 0) FROM catalog_stocklevel")
            oversold += int(cursor.fetchone()[0])
            cursor.execute("SELECT external_id, array_agg(id) FROM orders_order GROUP BY channel_id, external_id")
            stored: dict[str, list[int]] = {}
            for external_id, ids in cursor.fetchall():
                stored.setdefault(external_id, []).extend(ids)
        lost = sum(1 for ext, pk in accepted.items() if pk not in stored.get(ext, []))
        doubled = sum(1 for ids in stored.values() if len(ids) > 1)
        return {"oversold": oversold, "lost": lost, "doubled": doubled}
    finally:
        connections.close_all()


# --- load ------------------------------------------------------------------------------------------


@dataclass
class Request:
    host: str
    op: str
    started: float
    seconds: float
    status: int


@dataclass
class Load:
    world: dict[str, Any]
    rate: float
    clients: int
    requests: list[Request] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)  # external id -> order id of the first 201
    created_at: list[tuple[float, str]] = field(default_factory=list)  # (time, host) of accepted orders
    doubled_replies: int = 0
    stale: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0
    ready: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(WEBS, True))
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    orders: queue.Queue[int] = field(default_factory=queue.Queue)

    def note(self, host: str, op: str, started: float, seconds: float, status: int) -> None:
        with self.lock:
            self.requests.append(Request(host, op, started, seconds, status))

    def hosts(self, rnd: random.Random) -> list[str]:
        ready = [h for h in WEBS if self.ready[h]] or list(WEBS)
        first = rnd.choice(ready)
        return [first, *[h for h in WEBS if h != first]]

    def call(self, rnd: random.Random, op: str, method: str, path: str, token: str, body: Any, key: str):
        """The request on a ready host; no answer or a 5xx: the same key on the other host (and back), 30 s."""
        deadline = time.monotonic() + 30
        order = self.hosts(rnd)
        attempt = 0
        while not self.stop.is_set() or attempt == 0:
            host = order[attempt % len(order)]
            started = time.monotonic()
            status, data, seconds = http(host, method, path, token, body, key)
            self.note(host, op, started, seconds, status)
            if status and status < 500:
                return host, status, data
            attempt += 1
            if time.monotonic() > deadline:
                break
            time.sleep(min(0.1 * 2**attempt, 5.0))  # backing off, as a client honouring Retry-After would
        return None, 0, None

    def schedule(self) -> None:
        """Orders arrive at the rate whatever happens to earlier ones (shoppers do not wait for each other)."""
        next_at = time.monotonic()
        k = 0
        while not self.stop.is_set():
            self.orders.put(k)
            k += 1
            next_at += 1 / self.rate
            time.sleep(max(0.0, next_at - time.monotonic()))

    def client(self, n: int) -> None:
        """A shopper: takes the next order and sees it through (retrying each step with its key)."""
        rnd = random.Random(n)
        while not self.stop.is_set():
            try:
                self.orders.get(timeout=0.5)
            except queue.Empty:
                continue
            code, token = rnd.choice(self.world["channels"])
            pool = self.world["hot_skus"] if rnd.random() < 0.35 else self.world["skus"]
            picked = rnd.sample(pool, rnd.randint(1, 2))
            external_id = f"c{n}-{uuid.uuid4().hex[:10]}"
            hold = rnd.random() < 0.3
            body = {
                "external_id": external_id,
                "lines": [{"sku": f"{code}-{sku}", "quantity": rnd.randint(1, 2)} for sku in picked],
                "hold_minutes": 1 if hold else 30,
            }
            host, status, data = self.call(rnd, "create", "POST", "/api/v1/orders/", token, body, f"o-{external_id}")
            if status != 201 or not data:
                continue
            order_id = data["id"]
            with self.lock:
                if external_id in self.accepted and self.accepted[external_id] != order_id:
                    self.doubled_replies += 1
                self.accepted[external_id] = order_id
                self.created_at.append((time.monotonic(), host or ""))
            if rnd.random() < 0.1:  # the answer "lost": the same key again, on the other web host
                other = WEBS[1 - WEBS.index(host)] if host in WEBS else WEBS[0]
                again, replay, _ = http(other, "POST", "/api/v1/orders/", token, body, f"o-{external_id}")
                if again == 201 and replay and replay.get("id") != order_id:
                    with self.lock:
                        self.doubled_replies += 1
            if hold:
                continue  # left to lapse: beat's hold expiry releases it
            path = f"/api/v1/orders/{order_id}"
            self.call(rnd, "confirm", "POST", f"{path}/confirm/", token, {}, f"c-{external_id}")
            if rnd.random() < 0.6:
                self.call(rnd, "fulfil", "POST", f"{path}/fulfil/", token, {}, f"f-{external_id}")
            else:
                self.call(rnd, "cancel", "POST", f"{path}/cancel/", token, {}, f"x-{external_id}")

    def probe(self) -> None:
        """Write on one web host, read at once on the other: never older than PostgreSQL after the write."""
        from django.db import connections

        from apps.channels.models import Listing
        from apps.channels.selectors import listings_availability

        code, token = self.world["channels"][0]
        sku = f"{code}-PROBE"
        listing_id = Listing.objects.get(channel_sku=sku).pk

        def settled(host: str, path: str, body: Any, key: str) -> tuple[int, Any]:
            """The write's answer; without one, the same key again until it has one (so no write of the probe
            is still under way when it reads)."""
            deadline = time.monotonic() + 60
            while True:
                status, data, _ = http(host, "POST", path, token, body, key, timeout=30)
                if (status and status < 500) or time.monotonic() > deadline:
                    return status, data
                time.sleep(0.5)

        k = 0
        while not self.stop.is_set():
            writer, reader = WEBS[k % 2], WEBS[1 - k % 2]
            k += 1
            external_id = f"probe-{k}-{uuid.uuid4().hex[:6]}"
            body = {"external_id": external_id, "lines": [{"sku": sku, "quantity": 1}], "hold_minutes": 30}
            status, data = settled(writer, "/api/v1/orders/", body, f"o-{external_id}")
            if status == 201 and data:
                with self.lock:
                    self.accepted[external_id] = data["id"]
                self.check(reader, token, sku, listing_id, listings_availability, f"after an order on {writer}")
                status, _ = settled(writer, f"/api/v1/orders/{data['id']}/cancel/", {}, f"x-{external_id}")
                if status == 200:
                    self.check(reader, token, sku, listing_id, listings_availability, f"after a cancel on {writer}")
            connections.close_all()
            time.sleep(0.2)

    def check(self, reader: str, token: str, sku: str, listing_id: int, availability, what: str) -> None:
        """The reader's answer against PostgreSQL's, read just before and just after it (equal: no write between)."""
        try:
            before = availability([listing_id])[listing_id].available
        except Exception:  # PostgreSQL away from the load generator too: no verdict
            return
        status, data, _ = http(reader, "GET", f"/api/v1/availability/?sku={sku}", token)
        try:
            after = availability([listing_id])[listing_id].available
        except Exception:
            return
        if status != 200 or not data or before != after:
            return
        shown = data["results"][0]["available"]
        with self.lock:
            self.probes += 1
            if shown != after:
                seen = {"reader": reader, "shown": shown, "truth": after, "what": what}
                self.stale.append({"at": time.monotonic(), **seen})

    def health(self) -> None:
        """The load balancer's view: /healthz/ready of each web host, every half second."""
        while not self.stop.is_set():
            for host in WEBS:
                status, _, _ = http(host, "GET", "/healthz/ready", timeout=1)
                self.ready[host] = status == 200
            time.sleep(0.5)

    def run(self) -> list[threading.Thread]:
        self.stop.clear()
        self.orders = queue.Queue()
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(self.clients)]
        threads.append(threading.Thread(target=self.schedule, daemon=True))
        threads += [threading.Thread(target=self.probe, daemon=True), threading.Thread(target=self.health, daemon=True)]
        for t in threads:
            t.start()
        return threads


# --- the run ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load before each fault")
    parser.add_argument("--fault-seconds", type=float, default=25.0, help="seconds of load with the fault")
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second, all clients together")
    parser.add_argument("--clients", type=int, default=48, help="shoppers: orders in progress at most")
    parser.add_argument("--converge-timeout", type=float, default=120.0)
    parser.add_argument("--workdir", default=str(ROOT / "var" / "faults"))
    parser.add_argument("--report", default="", help="also write the report (markdown) to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the hosts are network namespaces")
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if unknown := set(faults) - set(FAULTS):
        sys.exit(f"unknown faults: {sorted(unknown)}")

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    network = Network()
    from cryptography.fernet import Fernet

    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}},
        "DJANGO_SETTINGS_MODULE": "inventory_site.settings.production",
        "SECRET_KEY": "faults-run-only-secret-key-not-for-production-use",
        "STOCKROOM_SECRETS_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://postgres@{DB_IP}:{PG_PORT}/stockroom",
        "REDIS_URL": f"redis://{DB_IP}:{REDIS_PORT}/0",
        "ALLOWED_HOSTS": ",".join(f"{NET}.{last}" for last in HOSTS.values()),
        "SECURE_SSL_REDIRECT": "0",
        "STOCKROOM_OUTBOUND_ALLOW": f"{NET}.0/24",
        "API_THROTTLE_RATE": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
        "CACHE_KEY_PREFIX": "faults",
    }
    procs = Processes(workdir, env)

    def cleanup() -> None:
        procs.stop_all()
        if (workdir / "pgdata" / "postmaster.pid").exists():  # a PostgreSQL that pg_ctl restarted
            sh("runuser", "-u", postgres_user(), "--", "pg_ctl", "-D", str(workdir / "pgdata"), "stop", "-m",
               "immediate", check=False)  # fmt: skip
        network.teardown()

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    print(f"building 5 hosts on {NET}.0/24 ...", flush=True)
    network.build()
    pg_user = postgres_user()
    pgdata = workdir / "pgdata"
    pgdata.mkdir()
    shutil.chown(pgdata, pg_user)
    shutil.chown(workdir, pg_user)
    init = sh(
        "runuser", "-u", pg_user, "--", "initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", check=False
    )
    if init.returncode:
        sys.exit(init.stderr)
    with (pgdata / "pg_hba.conf").open("a") as hba:  # the hosts' network, as a private network would be
        hba.write(f"host all all {NET}.0/24 trust\n")
    pg_command = [
        "postgres", "-D", str(pgdata), "-p", str(PG_PORT), "-c", f"listen_addresses={DB_IP}",
        "-c", f"unix_socket_directories={pgdata}", "-c", "max_connections=300", "-c", "fsync=off",
        "-c", "log_min_messages=warning",
    ]  # fmt: skip
    procs.start("postgres", "db", pg_command, user=pg_user)
    procs.start(
        "redis", "db",
        ["redis-server", "--bind", DB_IP, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
         "--protected-mode", "no",
         "--dir", str(workdir)],
    )  # fmt: skip
    import psycopg

    admin = f"postgres://postgres@{DB_IP}:{PG_PORT}/postgres"

    def postgres_answers() -> bool:
        with psycopg.connect(admin, connect_timeout=1):
            return True

    if wait_until(postgres_answers, 30) is None:
        sys.exit("PostgreSQL did not start (see the log under --workdir)")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE stockroom")

    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from sandbox.simulator import ChannelSimulator

    simulators_list = [ChannelSimulator(rate=40, burst=20, secret="s3cret", host=GATEWAY).start() for _ in range(4)]
    world = build_world([s.url for s in simulators_list])
    simulators = {code: sim for (code, _), sim in zip(world["channels"], simulators_list, strict=True)}

    gunicorn = [
        PY, "-m", "gunicorn", "inventory_site.wsgi:application", "--workers", "2", "--threads", "4",
        "--worker-class", "gthread", "--timeout", "30", "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    for host in WEBS:
        procs.start(host, host, [*gunicorn, "--bind", f"{NET}.{HOSTS[host]}:{WEB_PORT}"])
    for n, host in enumerate(("work1", "work2")):
        shards = "sync.0,sync.1" if n == 0 else "sync.1,sync.0"
        worker = [CELERY, "-A", "inventory_site", "worker", "-l", "WARNING", "--without-gossip", "--without-mingle"]
        procs.start(f"{host}-default", host, [*worker, "-Q", "default", "--concurrency", "2", "-n", f"default@{host}"])
        procs.start(f"{host}-sync", host, [*worker, "-Q", shards, "--pool", "threads", "--concurrency", "4",
                                           "-n", f"sync@{host}"])  # fmt: skip
        procs.start(f"{host}-beat", host, [CELERY, "-A", "inventory_site", "beat", "-l", "WARNING", "--pidfile", ""])
        if n == 0:
            time.sleep(3)  # work1's beat leads at first
    for host in WEBS:
        if wait_until(lambda h=host: http(h, "GET", "/healthz/ready", timeout=2)[0] == 200, 60) is None:
            sys.exit(f"{host} did not become ready (see the log under --workdir)")

    from apps.channels.models import Listing
    from apps.channels.services.config import listings_sync_now

    listings_sync_now(listing_ids=list(Listing.objects.values_list("pk", flat=True)))
    first = wait_until(lambda: truth_gap(simulators) == 0, 120, every=1)
    print(f"hosts up; every channel shows the truth after the first sync ({first} s)", flush=True)

    load = Load(world=world, rate=args.rate, clients=args.clients)
    results = []
    for fault in faults:
        print(f"\n== {fault}", flush=True)
        threads = load.run()
        time.sleep(args.warmup)
        survivors = list(WEBS)
        notes = ""
        injected = time.monotonic()
        unacked_at_kill: set[bytes | str] = set()
        if fault == "kill-web":
            procs.kill("web1")
            survivors = ["web2"]
        elif fault == "partition-worker":
            holder_code = (
                "import django, sys, time; django.setup()\n"
                "from django.db import transaction\n"
                "from apps.catalog.locks import levels_for_update\n"
                "with transaction.atomic():\n"
                f"    levels_for_update({world['hot_pairs'][:2]!r})\n"
                "    print('locked', flush=True)\n"
                "    time.sleep(3600)\n"
            )
            procs.start("work1-holder", "work1", [PY, "-c", holder_code])
            wait_until(lambda: b"locked" in (workdir / "logs" / "work1-holder.log").read_bytes(), 30)
            injected = time.monotonic()
            network.cut("work1")
        elif fault == "kill-sync-worker":
            import redis

            client = redis.Redis.from_url(env["REDIS_URL"])
            for sim in simulators_list:  # slow channels: pushes are in flight when the worker dies
                sim.delay_s = 2.0
            time.sleep(3)
            unacked_at_kill = set(client.hkeys("unacked"))
            injected = time.monotonic()
            procs.kill("work1-sync")
            for sim in simulators_list:
                sim.delay_s = 0.0
            notes = f"{len(unacked_at_kill)} messages unacknowledged at the kill"
        elif fault == "restart-postgres":
            # pg_ctl starts it again with the options it was started with (postmaster.opts).
            done = sh("ip", "netns", "exec", ns("db"), "runuser", "-u", pg_user, "--", "pg_ctl", "-D", str(pgdata),
                      "restart", "-m", "fast", "-w", "-l", str(pgdata / "restarted.log"), check=False)  # fmt: skip
            notes = (
                f"PostgreSQL back after {time.monotonic() - injected:.1f} s"
                if done.returncode == 0
                else "restart failed"
            )
        elif fault == "cut-web-redis":
            network.redis_drop("web1", True)
            survivors = ["web2"]
        time.sleep(args.fault_seconds)
        ended = time.monotonic()
        load.stop.set()
        for t in threads:
            t.join(timeout=60)
        stopped = time.monotonic()
        series: list[tuple[float, int]] = []

        def true_everywhere(since: float = stopped, seen: list[tuple[float, int]] = series) -> bool:
            seen.append((time.monotonic() - since, truth_gap(simulators)))
            return seen[-1][1] == 0

        converged = wait_until(true_everywhere, args.converge_timeout, every=1)
        off = ", ".join(f"{gap} at {at:.0f} s" for at, gap in series[:: max(1, len(series) // 6)])
        if converged is None:
            off += " (" + "; ".join(truth_gap_detail(simulators)[:4]) + ")"
        notes += ("; " if notes else "") + f"listings not showing the truth after the load stopped: {off}"
        if fault == "kill-sync-worker" and unacked_at_kill:
            import redis

            client = redis.Redis.from_url(env["REDIS_URL"])
            held, broker = unacked_at_kill, client
            back = wait_until(lambda: not (held & set(broker.hkeys("unacked"))), 150, every=1)  # noqa: B023
            if back is None:
                notes += "; some still unacknowledged 150 s after the load stopped"
            else:
                notes += f"; all of them done (redelivered) {time.monotonic() - injected:.0f} s after the kill"
        # heal
        if fault == "kill-web":
            procs.restart("web1")
        elif fault == "partition-worker":
            network.mend("work1")
            procs.kill("work1-holder")
        elif fault == "kill-sync-worker":
            procs.restart("work1-sync")
        elif fault == "cut-web-redis":
            network.redis_drop("web1", False)
        for host in WEBS:
            wait_until(lambda h=host: http(h, "GET", "/healthz/ready", timeout=2)[0] == 200, 60)

        window = [r for r in load.requests if injected <= r.started <= ended and r.host in survivors]
        errors = [r for r in window if r.status == 0 or r.status >= 500 or r.status == 429]
        latencies = sorted(r.seconds for r in window)
        created = sorted(t for t, host in load.created_at if injected - 1 <= t <= ended)
        gaps = [b - a for a, b in zip([injected, *created], [*created, ended], strict=True)]
        stale = [s for s in load.stale if injected <= s["at"] <= stopped]
        checks = integrity(load.accepted)
        row = {
            "fault": fault,
            "orders": len([t for t, _ in load.created_at if injected <= t <= ended]),
            "oversold": checks["oversold"],
            "lost": checks["lost"],
            "doubled": checks["doubled"] + load.doubled_replies,
            "stale": len(stale),
            "probes": load.probes,
            "survivors": "+".join(survivors),
            "requests": len(window),
            "error_pct": 100.0 * len(errors) / max(1, len(window)),
            "p99_ms": 1000 * percentile(latencies, 99),
            "max_gap_s": max(gaps) if gaps else 0.0,
            "converge_s": converged,  # from the end of the load
            "notes": notes,
        }
        if stale:
            row["notes"] += f"; stale e.g. {stale[0]}"
        results.append(row)
        print(json.dumps(row), flush=True)
        load.requests.clear()
        load.stale.clear()
        load.probes = 0

    report = render(results, args)
    print("\n" + report)
    if args.report:
        Path(args.report).write_text(report)
    for sim in simulators_list:
        sim.stop()
    return 0


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| fault | orders accepted | oversold units | lost / doubled | stale reads | surviving hosts "
        "| API errors | p99 | longest gap | every channel true after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        converge = (
            f"not within {args.converge_timeout:.0f} s" if r["converge_s"] is None else f"{r['converge_s']:.0f} s"
        )
        lines.append(
            f"| {r['fault']} | {r['orders']} | {r['oversold']} | {r['lost']} / {r['doubled']} "
            f"| {r['stale']} of {r['probes']} | {r['survivors']} | {r['error_pct']:.1f} % of {r['requests']} "
            f"| {r['p99_ms']:.0f} ms | {r['max_gap_s']:.1f} s | {converge} |"
        )
    notes = [f"- {r['fault']}: {r['notes']}" for r in results if r["notes"]]
    return "\n".join([*lines, *([""] if notes else []), *notes]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
