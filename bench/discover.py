"""Going live: discovering a platform's catalog and matching it by SKU to Stockroom's, on the platform's fake.

Standalone (DATABASE_URL/REDIS_URL set; `make bench` resolves them). Builds its own database
``stockroom_bench_discover`` holding Stockroom's side (an item and a standard product per SKU), starts
the platform's fake in a process of its own holding the shop's side, then times, per run: the
connector's ``catalog()`` (every variant with its quantity at each platform location, under the fake's
cost model) and the match of every variant against Stockroom's products by SKU, sorted into matched,
platform only and the problem classes. Beside it, the raw limit measured in the same run: reading the
same data with nothing in between (for Shopify, a plain HTTP GET of the bulk operation's JSONL from the
fake, plus a bare SELECT of Stockroom's product codes). Writes var/bench/discover.json.

    python bench/discover.py --platform shopify --variants 50000 --runs 3

Shopify: 50,000 variants at two locations, a standard plan's cost bucket (2,000 points, 100 a second),
of which 1,000 each untracked, without SKU, sharing a SKU, not stocked at the second location, and
1,000 that Stockroom does not have. The aim is under 2 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import base_database_url, database_recreate, django_setup, rows_write  # noqa: E402

DB_NAME = "stockroom_bench_discover"
AIM_S = 120.0
TOKEN = "shpat_bench_discover"
PROBLEMS = 1000  # variants of each problem class (and platform-only ones) in a 50,000-variant shop


def machine() -> str:
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


# --- Shopify -------------------------------------------------------------------------------------


def _shopify_shop(variants: int, problems: int, ready: Any, stop: Any) -> None:
    """The child process: the fake shop with its catalog, until told to stop."""
    from apps.channels.fakes.shopify import ShopifyFake
    from apps.channels.fakes.shopify.seed import seed_catalog

    fake = ShopifyFake(access_token=TOKEN, maximum_available=2000.0, restore_rate=100.0)
    catalog = seed_catalog(
        fake,
        variants,
        locations=2,
        untracked=problems,
        no_sku=problems,
        duplicates=problems,
        not_stocked=problems,
        prefix="SKU",
    )
    fake.start()
    ready.put({"url": fake.url, "location_id": fake.location_id, "clean": sorted(catalog.clean)})
    stop.wait()
    fake.stop()


def shopify(args: argparse.Namespace) -> list[dict[str, Any]]:
    problems = min(PROBLEMS, args.variants // 50)
    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    shop = context.Process(target=_shopify_shop, args=(args.variants, problems, ready, stop), daemon=True)
    started = time.perf_counter()
    shop.start()  # before Django: a forked child must not share its database connections
    seeded = ready.get(timeout=600)
    print(f"  Shopify fake with {args.variants:,} variants at 2 locations: {time.perf_counter() - started:.1f} s")
    try:
        # Stockroom has a product for every clean SKU but the last ``problems`` (those are platform-only).
        known = seeded["clean"][: len(seeded["clean"]) - problems]
        stockroom_setup(known)
        from apps.channels.connectors.base import ChannelRef
        from apps.channels.connectors.shopify import ShopifyConnector

        channel = ChannelRef(
            id=1,
            code="bench-shopify",
            settings={"shop_url": seeded["url"], "location_id": seeded["location_id"]},
            credentials={"access_token": TOKEN},
        )
        runs = []
        for number in range(1, args.runs + 1):
            runs.append(shopify_run(ShopifyConnector(), channel, seeded["url"], number))
        expected = {
            "matched": len(known),
            "platform_only": problems,
            "no_sku": problems,
            "untracked": problems,
            "duplicate_sku": problems,
            "not_stocked_at_location": problems,
        }
        for run in runs:
            assert run["classes"] == expected, (run["classes"], expected)
        return report("shopify", args, runs)
    finally:
        stop.set()
        shop.join(timeout=10)


def shopify_run(connector: Any, channel: Any, shop_url: str, number: int) -> dict[str, Any]:
    import requests

    shown = [0]

    def progress(done: int, total: int | None) -> None:
        if total and done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"    {done:,} of {total:,}", flush=True)

    started = time.perf_counter()
    catalog = connector.catalog(channel, progress)
    discovered = time.perf_counter()
    classes = match(catalog.entries, [place.id for place in connector.locations(channel)])
    finished = time.perf_counter()
    # The raw limit, in the same run: the same JSONL by a plain GET, and a bare SELECT of the codes.
    status = requests.post(
        f"{shop_url}/admin/api/2026-07/graphql.json",
        json={"query": "{ currentBulkOperation { url createdAt completedAt } }"},
        headers={"X-Shopify-Access-Token": TOKEN},
        timeout=30,
    ).json()
    operation = status["data"]["currentBulkOperation"]
    url = operation["url"]
    ran = datetime.fromisoformat(operation["completedAt"]) - datetime.fromisoformat(operation["createdAt"])
    raw_started = time.perf_counter()
    size = len(requests.get(url, timeout=300).content)
    got = time.perf_counter()
    codes = product_codes()
    raw_done = time.perf_counter()
    run = {
        "seconds": finished - started,
        "discover_s": discovered - started,
        "match_s": finished - discovered,
        "requests": catalog.requests,
        "variants": len(catalog.entries),
        "raw_s": raw_done - raw_started,
        "raw_get_s": got - raw_started,
        "raw_select_s": raw_done - got,
        "jsonl_bytes": size,
        "platform_bulk_s": ran.total_seconds(),  # the fake running the bulk query (whole seconds)
        "codes": len(codes),
        "classes": dict(classes),
    }
    print(
        f"  run {number}: {run['seconds']:.1f} s ({run['discover_s']:.1f} s discover, {run['match_s']:.2f} s match), "
        f"{run['requests']} requests, {run['variants'] / run['seconds']:,.0f} variants/s (of which the fake ran the "
        f"bulk query {run['platform_bulk_s']:.0f} s); raw {run['raw_s']:.2f} s "
        f"(GET of {size / 1e6:.1f} MB JSONL {run['raw_get_s']:.2f} s + SELECT {run['raw_select_s']:.2f} s)",
        flush=True,
    )
    return run


# --- Stockroom's side and the match (the same for every platform) ----------------------------------


def stockroom_setup(skus: list[str]) -> None:
    """Stockroom's catalog: an item and a standard product per SKU (product code = SKU), in bulk."""
    django_setup(database_recreate(base_database_url(), DB_NAME), CACHE_KEY_PREFIX="bench-discover")
    from django.core.management import call_command

    from apps.catalog.models import Item, Product, ProductComponent

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    items = Item.objects.bulk_create([Item(sku=sku, name=f"Item {sku}") for sku in skus], batch_size=5000)
    products = Product.objects.bulk_create([Product(code=sku, name=f"Product {sku}") for sku in skus], batch_size=5000)
    ProductComponent.objects.bulk_create(
        [ProductComponent(product=p, item=i, quantity=1) for p, i in zip(products, items, strict=True)],
        batch_size=5000,
    )
    print(f"  Stockroom with {len(skus):,} items and products: {time.perf_counter() - started:.1f} s", flush=True)


def product_codes() -> dict[str, int]:
    from apps.catalog.models import Product

    return dict(Product.objects.filter(is_active=True).values_list("code", "id"))


def match(entries: list[Any], locations: list[str]) -> Counter[str]:
    """Each variant in one class, as the link preview sorts them: a SKU shared by two variants, no SKU,
    untracked, not stocked at one of the channel's platform locations, matched to a product, or on the
    platform only. (A stand-in for the link service's preview, reading the same rows.)"""
    codes = product_codes()
    shared = Counter(entry.sku for entry in entries if entry.sku)
    classes: Counter[str] = Counter()
    for entry in entries:
        if not entry.sku:
            classes["no_sku"] += 1
        elif shared[entry.sku] > 1:
            classes["duplicate_sku"] += 1
        elif not entry.tracked:
            classes["untracked"] += 1
        elif any(place not in entry.quantities for place in locations):
            classes["not_stocked_at_location"] += 1
        elif entry.sku in codes:
            classes["matched"] += 1
        else:
            classes["platform_only"] += 1
    return classes


def report(name: str, args: argparse.Namespace, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seconds = statistics.median(run["seconds"] for run in runs)
    raw = statistics.median(run["raw_s"] for run in runs)
    requests = statistics.median(run["requests"] for run in runs)
    rate = args.variants / seconds
    command = f"python bench/discover.py --platform {name} --variants {args.variants} --runs {args.runs}"
    print(
        f"\n{name}: discover + match {args.variants:,} variants, median of {len(runs)}: {seconds:.1f} s, "
        f"{requests:.0f} requests, {rate:,.0f} variants/s; raw limit {raw:.2f} s (ratio {seconds / raw:.1f}); "
        f"aim under {AIM_S:.0f} s\n  {command}\n  machine: {machine()}"
    )
    return [
        {
            "name": f"{name}: discover + match {args.variants:,} variants (median of {len(runs)})",
            "figure": round(seconds, 1),
            "unit": "s",
            "raw": round(raw, 2),
            "ratio": round(seconds / raw, 1),
            "requests": requests,
            "variants_per_s": round(rate),
            "runs": runs,
            "command": command,
            "machine": machine(),
        },
        {
            "name": f"{name}: variants per second",
            "figure": round(rate),
            "unit": "variants/s",
            "raw": round(args.variants / raw),
            "ratio": round(rate / (args.variants / raw), 2),
        },
    ]


PLATFORMS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {"shopify": shopify}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="shopify")
    parser.add_argument("--variants", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = PLATFORMS[args.platform](args)
    print(f"written {rows_write('discover', rows)}")
    return 0 if rows[0]["figure"] < AIM_S else 1


if __name__ == "__main__":
    sys.exit(main())
