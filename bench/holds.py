"""Hold expiry under load: orders with one-minute holds, cancels and fulfilments, pushers and the expiry
job all at once; PostgreSQL's deadlock counter before and after, and how late lapsed holds were released.

Standalone (DATABASE_URL/REDIS_URL set; `make bench` resolves them), not part of `make test`. Builds its
own database ``stockroom_bench_holds``: ITEMS items in two locations, a listing each (single items and
two-item bundles) on two channels pushing to the channel simulator on loopback. Then for --seconds:
--threads placers at --rate orders/s in all, each order 1-3 lines; --hold-share of them are holds left
to lapse (one minute, the shortest), the rest are confirmed, then fulfilled or cancelled; a pusher per
channel; the expiry job every HOLD_EXPIRY_EVERY_S, as beat runs it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_database_url, database_recreate, django_setup, percentile, rows_write

DB_NAME = "stockroom_bench_holds"
ITEMS = 60


def build() -> tuple[list[int], list[str]]:
    from django.db import transaction

    from apps.catalog.models import Item, Location, Product, ProductComponent, StockLevel
    from apps.channels.models import Channel, ChannelLocation, Listing

    with transaction.atomic():
        locations = Location.objects.bulk_create(
            [Location(code=f"L{n}", name=f"Location {n}", kind=Location.Kind.WAREHOUSE) for n in range(2)]
        )
        items = Item.objects.bulk_create([Item(sku=f"I{n:03d}", name=f"Item {n}") for n in range(ITEMS)])
        StockLevel.objects.bulk_create(
            [StockLevel(item=i, location=loc, on_hand=1_000_000) for i in items for loc in locations]
        )
        products = Product.objects.bulk_create(
            [Product(code=f"P{n:03d}", name=f"Product {n}") for n in range(ITEMS)]
            + [Product(code=f"B{n:03d}", name=f"Bundle {n}", kind=Product.Kind.BUNDLE) for n in range(ITEMS // 2)]
        )
        components = [ProductComponent(product=products[n], item=items[n], quantity=1) for n in range(ITEMS)]
        for n in range(ITEMS // 2):
            bundle = products[ITEMS + n]
            components += [
                ProductComponent(product=bundle, item=items[n], quantity=1),
                ProductComponent(product=bundle, item=items[ITEMS - 1 - n], quantity=1),
            ]
        ProductComponent.objects.bulk_create(components)
        channels = []
        for code, order in (("web", locations), ("market", locations[::-1])):
            channel = Channel.objects.create(code=code, name=code, secret="s3cret", can_import=True)
            ChannelLocation.objects.bulk_create(
                [ChannelLocation(channel=channel, location=loc, priority=n) for n, loc in enumerate(order)]
            )
            Listing.objects.bulk_create(
                [Listing(channel=channel, channel_sku=f"{code}-{p.code}", product=p) for p in products]
            )
            channels.append(channel.pk)
    return channels, [p.code for p in products]


def deadlocks() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--rate", type=float, default=30.0, help="orders per second, all placers together")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--hold-share", type=float, default=0.3)
    args = parser.parse_args()

    url = database_recreate(base_database_url(), DB_NAME)
    from cryptography.fernet import Fernet

    # the channels' push secrets are encrypted at rest: a key of the run's own unless one is set
    django_setup(
        url,
        CACHE_KEY_PREFIX="bench-holds",
        STOCKROOM_SECRETS_KEY=os.environ.get("STOCKROOM_SECRETS_KEY") or Fernet.generate_key().decode(),
        STOCKROOM_OUTBOUND_ALLOW="127.0.0.0/8",  # the channel simulator, on loopback
    )
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections

    call_command("migrate", verbosity=0, interactive=False)
    from apps.channels.models import Channel
    from apps.channels.services.push import channel_push
    from apps.orders.errors import InsufficientStock
    from apps.orders.services import (
        LineRequest,
        hold_release_expired,
        order_cancel,
        order_confirm,
        order_fulfil,
        order_reserve,
    )
    from sandbox.simulator import ChannelSimulator

    channel_ids, codes = build()
    sim = ChannelSimulator(rate=1000, burst=500, secret="s3cret").start()
    Channel.objects.filter(pk__in=channel_ids).update(push_url=sim.url)
    channels = list(Channel.objects.filter(pk__in=channel_ids))
    every = float(settings.STOCKROOM.get("HOLD_EXPIRY_EVERY_S", 60))  # 60: before the setting existed
    print(
        f"{len(codes)} products on {len(channels)} channels; {args.rate:g} orders/s for {args.seconds}s, "
        f"{args.hold_share:.0%} one-minute holds left to lapse; expiry every {every:g}s",
        flush=True,
    )
    before = deadlocks()
    stop = threading.Event()
    stop_expiry = threading.Event()
    errors: list[str] = []
    placed = [0]
    runs: list[tuple[float, int]] = []
    failed_runs: list[str] = []
    lock = threading.Lock()

    def guarded(fn):
        def run(*a):
            try:
                fn(*a)
            except Exception as err:  # reported, the run goes on
                with lock:
                    errors.append(f"{type(err).__name__}: {err}"[:200])
            finally:
                connections.close_all()

        return run

    def placer(n: int) -> None:
        rnd = random.Random(n)
        interval = args.threads / args.rate
        next_at = time.monotonic()
        k = 0
        while not stop.is_set():
            next_at += interval
            channel = channels[rnd.randrange(len(channels))]
            picked = rnd.sample(codes, rnd.randint(1, 3))
            lines = [LineRequest(f"{channel.code}-{code}", rnd.randint(1, 2)) for code in picked]
            try:
                order = order_reserve(channel=channel, external_id=f"t{n}-{k}", lines=lines, hold_minutes=1).order
                with lock:
                    placed[0] += 1
                if rnd.random() >= args.hold_share:
                    order_confirm(order_id=order.pk)
                    (order_fulfil if rnd.random() < 0.7 else order_cancel)(order_id=order.pk)
            except InsufficientStock:
                pass
            except Exception as err:
                with lock:
                    errors.append(f"{type(err).__name__}: {err}"[:200])
            k += 1
            time.sleep(max(0.0, next_at - time.monotonic()))

    def pusher(channel: Channel) -> None:
        while not stop.is_set():
            try:
                channel_push(channel_id=channel.pk)
            except Exception as err:
                with lock:
                    errors.append(f"push {type(err).__name__}: {err}"[:200])
            time.sleep(0.2)

    def expiry() -> None:  # as beat runs it: every HOLD_EXPIRY_EVERY_S, a run in its own thread (worker)
        def one() -> None:
            started = time.monotonic()
            try:
                released = hold_release_expired()
            except Exception as err:
                with lock:
                    failed_runs.append(f"{type(err).__name__}: {err}"[:200])
                return
            finally:
                connections.close_all()
            with lock:
                runs.append((time.monotonic() - started, released))

        while not stop_expiry.wait(every):
            threading.Thread(target=one).start()

    threads = [threading.Thread(target=guarded(placer), args=(n,)) for n in range(args.threads)]
    threads += [threading.Thread(target=guarded(pusher), args=(c,)) for c in channels]
    beat = threading.Thread(target=guarded(expiry))
    started = time.monotonic()
    for t in [*threads, beat]:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    # The last holds lapse a minute after the load stopped; beat goes on releasing them.
    time.sleep(60 + 2 * every)
    stop_expiry.set()
    beat.join(timeout=120)
    time.sleep(every + 5)  # the last run started by beat finishes
    after = deadlocks()
    sim.stop()

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM updated_at - expires_at) FROM orders_order WHERE status = 'expired' ORDER BY 1"
        )
        late = [float(row[0]) for row in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM orders_order WHERE status = 'reserved' AND expires_at < now()")
        still_reserved = cursor.fetchone()[0]
    durations = sorted(d for d, _ in runs)
    print(f"  orders placed            {placed[0]:>8}  ({placed[0] / elapsed:.1f}/s)")
    print(f"  deadlocks (pg_stat_database) before {before}, after {after}: {after - before}")
    print(f"  expiry runs              {len(runs):>8}  failed {len(failed_runs)}; released {sum(r for _, r in runs)}")
    if durations:
        print(f"  expiry run seconds       p50 {percentile(durations, 50):.2f}  max {durations[-1]:.2f}")
    if late:
        p50, p99 = percentile(late, 50), percentile(late, 99)
        print(f"  release after expiry (s) p50 {p50:.1f}  p99 {p99:.1f}  max {late[-1]:.1f}")
    print(f"  lapsed holds still reserved at the end: {still_reserved}")
    print(f"  errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    for err in failed_runs[:3]:
        print(f"  failed run: {err}")
    rows: list[dict[str, Any]] = [
        {"name": "hold expiry under load: deadlocks", "figure": after - before, "unit": "deadlocks"},
        {"name": "hold expiry under load: release after expiry, max", "figure": round(late[-1], 1) if late else 0,
         "unit": "s"},
        {"name": "hold expiry under load: failed runs", "figure": len(failed_runs), "unit": "runs"},
    ]  # fmt: skip
    print(f"written {rows_write('holds', rows)}")
    return 0 if after == before and not failed_runs and not still_reserved else 1


if __name__ == "__main__":
    sys.exit(main())
