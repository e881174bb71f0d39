"""The mixed-connector run of bench/sync.py (``--connectors mixed``): one stream, four channels, four connectors.

One channel per connector sells the same products from the same warehouse: ``push`` on Stockroom's
push protocol (a channel simulator), ``shopify`` on the Shopify fake (GraphQL Admin API, cost model,
compare-and-set), ``woo`` on the WooCommerce fake (REST batches, read before write, a host firewall
at 20 requests/s) and ``amazon`` on the Amazon SP-API fake (per-operation rate limits, patches and
listings feeds). The fakes run in this process and record when each quantity was applied; the
Celery workers push to them through the real connectors while the generators of bench/sync.py make
changes through the ledger writer. So every channel receives the same stream of stock changes.

Per connector it reports push requests per change (requests that carry quantities, against the
changes made), throttled answers from the platform (at most the first per channel may be one: a
connector learns a platform's budget from its answers), tier 1 latency and, once the pushes have
drained, whether every quantity on every platform equals Stockroom's truth (PASS/FAIL).

Latency is measured on the platform side and by value, the same way for all four: the truth of each
listing over time is rebuilt from the stream (each change's commit time and delta, the starting
levels, the products' make-up), and a change's latency runs from its commit to the first quantity
the platform applied afterwards that equals the listing's truth at some moment since the commit (a
push that read before the commit does not count). Changes that do not move a listing's quantity
need no push and are not counted. For the push protocol, whose pushes say when they read
(``as_of``), the as_of rule of bench/sync.py is printed beside it as a check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sync  # bench/sync.py: the generators, process helpers and the catalog
from common import base_database_url, database_recreate

OUT = sync.OUT
DB_NAME = os.environ.get("BENCH_SYNC_MIXED_DB", "stockroom_bench_sync_mixed")  # another name: runs side by side
PREFIX = os.environ.get("BENCH_SYNC_MIXED_PREFIX", "bench-sync-mixed")
SECRET = "bench-secret"
TIER1_TARGET_S = 2.0


@dataclass(frozen=True)
class Lane:
    code: str
    connector: str
    rate_per_s: float
    burst: int
    batch_size: int


# Channel limits on Stockroom's side; each platform's own limits come on top (see the fakes).
LANES = [
    Lane("push", "stockroom", 8.0, 8, 250),
    Lane("shopify", "shopify", 8.0, 8, 250),
    Lane("woo", "woocommerce", 5.0, 5, 100),
    Lane("amazon", "amazon", 5.0, 5, 1000),
]
WOO_FIREWALL = (20.0, 40)  # a host's limit in front of the store: requests per second, burst


@dataclass
class Platform:
    """One channel's platform: where it records applied quantities, and how to read and count it."""

    lane: Lane
    fake: Any
    keys: dict[int, str] = field(default_factory=dict)  # product id -> the platform's key (external id / SKU)
    applied: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))

    places: list[str] = field(default_factory=list)  # Shopify with a location map: its location GIDs

    def shown(self, key: str) -> int | None:
        kind = self.lane.connector
        if kind == "stockroom":
            return self.fake.shown(key)
        if kind == "shopify":
            if self.places:  # the listing's quantity over its locations (each is checked on its own too)
                shown = [self.fake.available(key, place) for place in self.places]
                return None if None in shown else sum(v or 0 for v in shown)
            return self.fake.available(key)
        if kind == "woocommerce":
            return self.fake.quantity(int(key))
        return self.fake.quantity(key)

    def requests_since(self, since: float) -> tuple[int, int]:
        """(requests that carried quantities, all requests) that arrived since ``since``."""
        kind = self.lane.connector
        if kind == "stockroom":
            rows = [r for r in self.fake.log()["requests"] if r["at"] >= since]
            return sum(1 for r in rows if r["method"] == "POST"), len(rows)
        if kind == "shopify":
            rows = [r for r in self.fake.log()["requests"] if r["at"] >= since]
            return sum(1 for r in rows if r.get("mutation")), len(rows)
        if kind == "woocommerce":
            rows = [r for r in self.fake.requests() if r["at"] >= since]
            return sum(1 for r in rows if r["method"] == "POST" and r["path"].endswith("/batch")), len(rows)
        rows = [r for r in self.fake.requests() if r["at"] >= since and r["operation"] != "control"]
        return sum(1 for r in rows if r["operation"] in ("patchListingsItem", "createFeed")), len(rows)

    def throttled(self) -> int:
        kind = self.lane.connector
        if kind in ("stockroom", "shopify"):
            return int(self.fake.throttled)
        if kind == "woocommerce":
            return sum(1 for r in self.fake.requests() if r["status"] == 429)
        return int(self.fake.throttled())


def start_platforms() -> dict[str, Platform]:
    """The four platforms on loopback, each recording (time, quantity) per key as it applies quantities."""
    from sandbox.fakes.amazon import AmazonFake
    from sandbox.fakes.shopify import ShopifyFake
    from sandbox.fakes.woocommerce import WooCommerceFake
    from sandbox.simulator import ChannelSimulator

    platforms: dict[str, Platform] = {}

    class RecordingShopify(ShopifyFake):
        def _set_quantities(self, payload: dict[str, Any]) -> dict[str, Any]:
            answer = super()._set_quantities(payload)
            if not answer["userErrors"]:  # all or nothing
                now = time.time()
                shopify = platforms["shopify"]
                for item in dict.fromkeys(q["inventoryItemId"] for q in payload["quantities"]):
                    shopify.applied[item].append((now, int(shopify.shown(item) or 0)))
            return answer

    class RecordingWoo(WooCommerceFake):
        def _update_item(self, item: Any, parent_id: int | None) -> dict[str, Any]:
            answer = super()._update_item(item, parent_id)
            if "error" not in answer and isinstance(item, dict) and "stock_quantity" in item:
                platforms["woo"].applied[str(item["id"])].append((time.time(), int(item["stock_quantity"])))
            return answer

    class RecordingAmazon(AmazonFake):
        def _apply(self, sku: str, patches: list[dict[str, Any]]) -> None:
            super()._apply(sku, patches)  # a patch, or a message of a listings feed as it is processed
            quantity = self.quantity(sku)
            if quantity is not None:
                platforms["amazon"].applied[sku].append((time.time(), quantity))

    lanes = {lane.code: lane for lane in LANES}
    simulator = ChannelSimulator(rate=lanes["push"].rate_per_s, burst=lanes["push"].burst, secret=SECRET)
    platforms["push"] = Platform(lanes["push"], simulator.start())
    platforms["shopify"] = Platform(lanes["shopify"], RecordingShopify(access_token="shpat_bench").start())
    woo = RecordingWoo().start()
    woo.limit(*WOO_FIREWALL)
    platforms["woo"] = Platform(lanes["woo"], woo)
    platforms["amazon"] = Platform(lanes["amazon"], RecordingAmazon().start())
    return platforms


def stop_platforms(platforms: dict[str, Platform]) -> None:
    for platform in platforms.values():
        platform.fake.stop()


def build(per_channel: int, platforms: dict[str, Platform], n_locations: int = 1) -> dict[str, Any]:
    """Products over stocked items, one channel per platform, each listing every product. With ``n_locations``
    over 1: stores S1.. beside the warehouse, stocked too; every channel sells from all of them, the Shopify
    shop has one location per Stockroom location (its ``location_map``)."""
    import random

    from apps.catalog.models import Location, StockLevel
    from apps.channels.models import Channel, Listing
    from apps.channels.services.config import channel_create

    warehouse, items, products = sync.build_products(per_channel)
    shopify, woo, amazon = platforms["shopify"].fake, platforms["woo"].fake, platforms["amazon"].fake
    locations = [warehouse]
    rng = random.Random(11)
    for n in range(1, n_locations):
        store = Location.objects.create(code=f"S{n}", name=f"Store {n}", kind=Location.Kind.STORE)
        StockLevel.objects.bulk_create(
            [StockLevel(item=item, location=store, on_hand=rng.randint(2_000, 5_000)) for item in items]
        )
        locations.append(store)
    location_map: dict[str, list[str]] = {shopify.location_id: [warehouse.code]}
    if n_locations > 1:
        for store in locations[1:]:
            place = f"gid://shopify/Location/{shopify.add_location(store.name)}"
            location_map[place] = [store.code]
        platforms["shopify"].places = list(location_map)
    for product in products:
        platforms["push"].keys[product.pk] = f"push-{product.code}"
        platforms["shopify"].keys[product.pk] = shopify.add_item(
            f"SHOP-{product.code}", quantities=dict.fromkeys(location_map, 0)
        )
        platforms["woo"].keys[product.pk] = str(woo.add_product(sku=f"WOO-{product.code}", stock_quantity=0))
        amazon.add_listing(f"AMZ-{product.code}", 0, product_type="PRODUCT")
        platforms["amazon"].keys[product.pk] = f"AMZ-{product.code}"
    settings = {
        "push": {"connector": "stockroom", "push_url": platforms["push"].fake.url, "secret": SECRET},
        "shopify": {
            "connector": "shopify",
            "settings": {"shop_url": shopify.url, "location_map": location_map}
            if n_locations > 1
            else {"shop_url": shopify.url, "location_id": shopify.location_id},
            "credentials": {"access_token": "shpat_bench", "webhook_secret": "bench-webhooks"},
        },
        "woo": {
            "connector": "woocommerce",
            "settings": woo.channel_settings(),
            "credentials": woo.channel_credentials(),
        },
        "amazon": {"connector": "amazon", **amazon.channel_settings()},
    }
    listings = []
    for lane in LANES:
        channel = channel_create(
            fields={
                "code": lane.code, "name": f"{lane.code} ({lane.connector})", "kind": Channel.Kind.MARKETPLACE,
                "rate_per_s": lane.rate_per_s, "burst": lane.burst, "batch_size": lane.batch_size,
                **settings[lane.code],
            },
            location_ids=[location.pk for location in locations],
            state=Channel.State.LIVE,  # the bench links its listings itself: pushed from the start
        )  # fmt: skip
        keys = platforms[lane.code].keys
        listings += [
            Listing(
                channel=channel,
                product=p,
                channel_sku=keys[p.pk] if lane.connector in ("stockroom", "amazon") else f"{lane.code}-{p.code}",
                external_id="" if lane.connector == "stockroom" else keys[p.pk],
            )
            for p in products
        ]
    Listing.objects.bulk_create(listings, batch_size=5000)
    spread: int | list[int] = [location.pk for location in locations] if n_locations > 1 else warehouse.pk
    return {"items": [i.pk for i in items], "warehouse": spread}


def places_wrong(platform: Platform) -> tuple[int, int]:
    """(quantities wrong at a Shopify location, quantities) of a Shopify shop with a location map: each location
    against the ATP of the Stockroom location it shows, with the listing's rules."""
    from apps.channels.connectors.base import location_map
    from apps.channels.models import Channel, Listing
    from apps.channels.selectors import listings_availability_by_place

    if not platform.places:
        return 0, 0
    channel = Channel.objects.get(code=platform.lane.code)
    rows = list(Listing.objects.filter(channel=channel).values_list("pk", "product_id"))
    truth = listings_availability_by_place([pk for pk, _ in rows], location_map(channel.settings))
    wrong = sum(
        1
        for pk, product in rows
        for place in platform.places
        if platform.fake.available(platform.keys[product], place) != truth[pk][place]
    )
    return wrong, len(rows) * len(platform.places)


def in_sync(platforms: dict[str, Platform]) -> tuple[int, int]:
    """(listings whose platform shows Stockroom's quantity, listings); on a shop with several locations, a
    listing is right when every location is."""
    from apps.channels.models import Listing
    from apps.channels.selectors import listings_availability

    rows = list(Listing.objects.values_list("pk", "channel__code", "product_id"))
    truth = listings_availability([pk for pk, _, _ in rows])
    right = sum(
        1 for pk, code, product in rows if platforms[code].shown(platforms[code].keys[product]) == truth[pk].available
    )
    right -= sum(places_wrong(platform)[0] for platform in platforms.values())
    return right, len(rows)


# --- the truth over time, and latency by value ------------------------------------------------------------


def truth_timelines(
    changes: list[Any], start_levels: dict[int, int]
) -> tuple[dict[int, list[tuple[float, int]]], list[tuple[float, int, int]]]:
    """Each product's listing quantity over time, rebuilt from the stream, and the samples to measure:
    (commit time, tier, product) for every change that moved a product's quantity."""
    from apps.catalog.models import ProductComponent

    make_up: dict[int, list[tuple[int, int]]] = defaultdict(list)
    products_of: dict[int, set[int]] = defaultdict(set)
    for product, item, per in ProductComponent.objects.values_list("product_id", "item_id", "quantity"):
        make_up[product].append((item, per))
        products_of[item].add(product)
    levels = dict(start_levels)

    def quantity(product: int) -> int:
        return max(0, min(levels[item] // per for item, per in make_up[product]))

    timelines = {product: [(0.0, quantity(product))] for product in make_up}
    samples = []
    # Changes to one level are serialised by its lock and their commit times keep that order.
    for committed_at, tier, items, delta in sorted(changes, key=lambda change: change[0]):
        for item in items:
            levels[item] += delta
        for product in sorted({p for item in items for p in products_of[item]}):
            now = quantity(product)
            if now != timelines[product][-1][1]:
                timelines[product].append((committed_at, now))
                samples.append((committed_at, tier, product))
    return timelines, samples


def latencies_by_value(
    samples: list[tuple[float, int, int]],
    timelines: dict[int, list[tuple[float, int]]],
    platform: Platform,
) -> tuple[dict[int, list[float]], int]:
    """Per tier, seconds from each change to the first quantity applied after it that was the truth at some
    moment since; and how many changes no such quantity followed."""
    if platform.lane.connector == "stockroom":  # the simulator applies each update as it arrives
        for update in platform.fake.log()["updates"]:
            platform.applied[update["sku"]].append((update["arrived_at"], update["available"]))
    applied = {key: sorted(rows) for key, rows in platform.applied.items()}
    found: dict[int, list[float]] = defaultdict(list)
    missing = 0
    for committed_at, tier, product in samples:
        rows = applied.get(platform.keys[product], [])
        timeline = timelines[product]
        times = [t for t, _ in timeline]
        seen = {timeline[bisect_right(times, committed_at) - 1][1]}
        nxt = bisect_right(times, committed_at)
        for at, value in rows[bisect_left(rows, (committed_at, -(2**62))) :]:
            while nxt < len(timeline) and timeline[nxt][0] <= at:
                seen.add(timeline[nxt][1])
                nxt += 1
            if value in seen:
                found[tier].append(at - committed_at)
                break
        else:
            missing += 1
    return found, missing


def latencies_by_as_of(samples: list[tuple[float, int, int]], platform: Platform) -> list[float]:
    """The push protocol's own rule (bench/sync.py): the first update that read at or after the commit."""
    by_sku: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for update in platform.fake.log()["updates"]:
        by_sku[update["sku"]].append((datetime.fromisoformat(update["as_of"]).timestamp(), update["arrived_at"]))
    found = []
    for committed_at, tier, product in samples:
        if tier != 1:
            continue
        rows = sorted(by_sku.get(platform.keys[product], []))
        index = bisect_left(rows, (committed_at, 0.0))
        if index < len(rows):
            found.append(max(0.0, min(arrived for _, arrived in rows[index:]) - committed_at))
    return found


# --- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "sync-mixed-logs"
    logs.mkdir(exist_ok=True)
    database_url = database_recreate(base_database_url(), DB_NAME)
    env = sync.child_env(database_url, os.environ["REDIS_URL"])
    env.update(
        {
            "CACHE_KEY_PREFIX": PREFIX,
            "CELERY_KEY_PREFIX": f"{PREFIX}:",
            "SYNC_TIER3_BATCH_S": str(args.tier3_batch),
            "SYNC_SWEEP_EVERY_S": "5",
        }
    )
    print(f"database {DB_NAME}: recreate and migrate", flush=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=sync.ROOT, env=env, check=True)
    sync.setup_django(env)
    from django.db import connection
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    stale = list(redis.scan_iter(match=f"{PREFIX}*", count=1000))
    if stale:
        redis.delete(*stale)

    platforms = start_platforms()
    processes: list[Any] = []
    try:
        catalog = build(args.listings, platforms, getattr(args, "locations", 1))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        celery = str(Path(sys.executable).with_name("celery"))
        common = ["--pool", "threads", "--concurrency", str(args.workers_concurrency), "--without-gossip",
                  "--without-mingle", "-l", "WARNING"]  # fmt: skip
        processes.append(sync.start([celery, "-A", "inventory_site", "worker", "-Q", "sync.0,default", "-n",
                                     "mixed0@%h", *common], env, logs / "worker-0.log"))  # fmt: skip
        processes.append(sync.start([celery, "-A", "inventory_site", "worker", "-Q", "sync.1", "-n", "mixed1@%h",
                                     *common], env, logs / "worker-1.log"))  # fmt: skip
        sweeper = threading.Thread(target=sync.sweep_every, args=(5.0,), daemon=True)
        sweeper.start()

        from apps.catalog.models import StockLevel
        from apps.channels.models import Listing, SyncWork
        from apps.channels.services.config import listings_sync_now

        listings_sync_now(listing_ids=list(Listing.objects.values_list("pk", flat=True)))
        print(f"initial sync of {Listing.objects.count()} listings on {len(LANES)} channels ...", flush=True)
        deadline = time.time() + 600
        while (SyncWork.objects.exists() or in_sync(platforms)[0] < Listing.objects.count()) and time.time() < deadline:
            time.sleep(1)
        right, total = in_sync(platforms)
        if right < total:
            print(f"the initial sync left {total - right} of {total} listings wrong; see {logs}", file=sys.stderr)
            return 1
        start_levels: dict[int, int] = defaultdict(int)  # per item, over every location (the stream's deltas add)
        for item_id, on_hand in StockLevel.objects.values_list("item_id", "on_hand"):
            start_levels[item_id] += on_hand

        print(f"stream: {args.rate:.0f} changes/s for {args.duration:.0f} s from {args.generators} processes, "
              f"the same to {', '.join(f'{lane.code} ({lane.connector})' for lane in LANES)}", flush=True)  # fmt: skip
        outs, stream_started, stream_seconds = sync.stream_run(env, catalog, args, "sync-mixed-gen")
        print("stream done; waiting for every pending push and every platform ...", flush=True)
        drain_started = time.time()
        while time.time() - drain_started < 600 and (
            SyncWork.objects.filter(state=SyncWork.State.PENDING).exists()
            or in_sync(platforms)[0] < Listing.objects.count()
        ):
            time.sleep(1)
        drained_in = time.time() - drain_started
        changes = [tuple(rec) for path in outs for rec in json.loads(path.read_text())]
        return report(args, platforms, changes, start_levels, stream_started, stream_seconds, drained_in)
    finally:
        sync.stop_sweeping()
        for process in reversed(processes):
            sync.stop(process)
        stop_platforms(platforms)


def report(args: argparse.Namespace, platforms: dict[str, Platform], changes: list[Any],
           start_levels: dict[int, int], stream_started: float, stream_seconds: float,
           drained_in: float) -> int:  # fmt: skip
    from apps.channels.models import Listing, SyncWork
    from apps.channels.selectors import listings_availability

    n_changes = sum(len(items) for _, _, items, _ in changes)
    timelines, samples = truth_timelines(changes, start_levels)
    truth = listings_availability(list(Listing.objects.values_list("pk", flat=True)))
    product_of = dict(Listing.objects.values_list("pk", "product_id"))
    rebuilt_wrong = sum(1 for pk, a in truth.items() if timelines[product_of[pk]][-1][1] != a.available)
    print(f"\nchanges made: {n_changes} in {stream_seconds:.1f} s ({n_changes / stream_seconds:.1f}/s, target "
          f"{args.rate:.0f}/s); {len(samples)} moved a product's quantity, on each of {len(LANES)} channels; "
          f"drained {drained_in:.1f} s after the stream")  # fmt: skip
    if rebuilt_wrong:
        print(f"note: the truth rebuilt from the stream differs from Stockroom's for {rebuilt_wrong} listings; "
              "latencies of those are not exact")  # fmt: skip
    rows: list[dict[str, Any]] = [
        {"name": "mixed sync changes made (stream)", "figure": n_changes, "unit": "changes",
         "raw": args.rate * args.duration, "ratio": n_changes / (args.rate * args.duration), "note": "raw = target"},
    ]  # fmt: skip
    header = (f"{'channel':<10} {'connector':<12} {'pushes':>7} {'per change':>10} {'requests':>8} "
              f"{'throttled':>9} {'t1 p50':>7} {'t1 p99':>7} {'wrong':>6}")  # fmt: skip
    print(header)
    passed = True
    per_change_of: dict[str, float] = {}
    for lane in LANES:
        platform = platforms[lane.code]
        pushes, requests = platform.requests_since(stream_started)
        throttled = platform.throttled()
        found, missing = latencies_by_value(samples, timelines, platform)
        tier1 = found.get(1, [])
        p50, p99 = sync.percentile(tier1, 50), sync.percentile(tier1, 99)
        listings = [pk for pk, code in Listing.objects.values_list("pk", "channel__code") if code == lane.code]
        wrong = sum(1 for pk in listings if platform.shown(platform.keys[product_of[pk]]) != truth[pk].available)
        wrong_at, quantities_at = places_wrong(platform)
        wrong += wrong_at
        per_change = pushes / n_changes if n_changes else 0.0
        per_change_of[lane.connector] = per_change
        print(f"{lane.code:<10} {lane.connector:<12} {pushes:>7} {per_change:>10.3f} {requests:>8} {throttled:>9} "
              f"{p50 or 0:>6.2f}s {p99 or 0:>6.2f}s {wrong:>6}"
              + (f"  ({missing} changes never shown: see the drain)" if missing else ""))  # fmt: skip
        if quantities_at:
            print(f"{'':<10} {'(per location)':<14} {len(platform.places)} Shopify locations: {wrong_at} of "
                  f"{quantities_at} quantities wrong (included above)")  # fmt: skip
        if lane.connector == "stockroom":
            as_of = latencies_by_as_of(samples, platform)
            print(f"{'':<10} {'(as_of rule)':<12} {'':>7} {'':>10} {'':>8} {'':>9} "
                  f"{sync.percentile(as_of, 50) or 0:>6.2f}s {sync.percentile(as_of, 99) or 0:>6.2f}s")  # fmt: skip
        passed = passed and throttled <= 1 and wrong == 0
        name = f"mixed sync {lane.connector}"
        rows += [
            {"name": f"{name}: pushes vs changes", "figure": pushes, "unit": "requests", "raw": n_changes,
             "ratio": (n_changes / pushes) if pushes else None},
            {"name": f"{name}: throttled answers (first allowed)", "figure": throttled, "unit": "responses",
             "raw": 1, "ratio": None},
            {"name": f"{name}: tier 1 change-to-platform p50", "figure": p50, "unit": "s", "raw": None,
             "ratio": None},
            {"name": f"{name}: tier 1 change-to-platform p99", "figure": p99, "unit": "s", "raw": TIER1_TARGET_S,
             "ratio": (p99 / TIER1_TARGET_S) if p99 is not None else None, "note": "raw = target"},
            {"name": f"{name}: listings wrong at the end", "figure": wrong, "unit": "listings",
             "raw": len(listings), "ratio": None},
        ]  # fmt: skip
    dead = SyncWork.objects.filter(state=SyncWork.State.DEAD).count()
    passed = passed and dead == 0
    today = per_change_of.get("stockroom") or 0.0
    if today:
        against = ", ".join(f"{n} {v / today:.2f}x" for n, v in per_change_of.items() if n != "stockroom")
        print(
            f"push requests per change against the push protocol's in this run: {against} "
            "(Amazon takes one patch per listing; a listings feed only for a batch too large for patches)"
        )
    print(f"dead letters: {dead}")
    (OUT / "sync_mixed.json").write_text(json.dumps({"rows": rows}, indent=2, default=str))
    print(
        "PASS: every quantity on every platform equals Stockroom's, no throttled answer beyond the first per channel"
        if passed
        else "FAIL: a platform shows a wrong quantity, a channel was throttled more than once, or work is dead",
        flush=True,
    )
    return 0 if passed else 1
