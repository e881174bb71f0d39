"""Going live: discovering a platform's catalog and matching it by SKU to Stockroom's, on the platforms' fakes.

Standalone (DATABASE_URL/REDIS_URL set; `make bench` resolves them). Builds its own database
``stockroom_bench_discover`` holding Stockroom's side (an item and a standard product per known SKU, a
channel on the platform's fake), starts the fake, then times per run what the onboarding page does:

- discover: the catalog read through the link service (``services.link.channel_catalog_read``: the
  channel's connector, every variant with its quantity at each platform location, under the fake's limits);
- match: the link service's preview (``channel_link(apply=False)``) of every variant against Stockroom's
  products by SKU, sorted into matched, platform only, Stockroom only and the problem classes.

Beside it, the raw limit measured in the same run: the same data with nothing in between.

- Shopify (50,000 variants at two locations, a standard plan's cost bucket of 2,000 points at 100 a
  second, 1,000 each untracked, without SKU, sharing a SKU, not stocked at the channel's location, and
  unknown to Stockroom): the fake in a process of its own; raw: a plain GET of the bulk operation's JSONL
  plus a bare SELECT of Stockroom's product codes.
- WooCommerce (10,000 variants): products 100 a page and each variable product's variations (OAuth 1.0a
  signed); raw: the same pages by plain signed GETs on one keep-alive session (the better of two passes).
- Amazon (10,000 listings, 5 % fulfilled by Amazon): the merchant listings report, created, polled (the
  fake makes it in ``REPORT_S``), fetched and parsed; raw: the fake's report time plus one plain GET of
  the same document, gunzipped and split in lines.

Prints time, requests, variants/s, the raw limit and the ratio (median of ``--runs``); writes
var/bench/discover.json.

    python bench/discover.py --platform all --runs 3
    python bench/discover.py --platform shopify --variants 50000 --runs 3

The aim: 50,000 Shopify variants in under 2 minutes.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
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
REPORT_S = 0.5  # how long the Amazon fake takes to make the merchant listings report
DEFAULT_VARIANTS = {"shopify": 50_000, "woocommerce": 10_000, "amazon": 10_000}


def machine() -> str:
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


# --- Stockroom's side: its products, a channel, and the link service's discover and match ------------

_ready = [False]


def stockroom_setup(skus: list[str]) -> None:
    """Stockroom's catalog, fresh: an item and a standard product per SKU (product code = SKU), in bulk. The
    first call makes the database (Django's settings of a developer machine: the fakes are on loopback)."""
    if not _ready[0]:
        django_setup(
            database_recreate(base_database_url(), DB_NAME),
            DJANGO_SETTINGS_MODULE="inventory_site.settings.local",
            DEBUG="0",
            STOCKROOM_DEMO_MODE="0",
            CACHE_KEY_PREFIX="bench-discover",
            CELERY_KEY_PREFIX="bench-discover-",
        )
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        _ready[0] = True
    from django.db import connection

    from apps.catalog.models import Item, Product, ProductComponent

    started = time.perf_counter()
    with connection.cursor() as cursor:  # the previous platform's products and channels go
        cursor.execute("TRUNCATE catalog_productcomponent, catalog_product, catalog_item, channels_channel CASCADE")
    items = Item.objects.bulk_create([Item(sku=sku, name=f"Item {sku}") for sku in skus], batch_size=5000)
    products = Product.objects.bulk_create([Product(code=sku, name=f"Product {sku}") for sku in skus], batch_size=5000)
    ProductComponent.objects.bulk_create(
        [ProductComponent(product=p, item=i, quantity=1) for p, i in zip(products, items, strict=True)],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  Stockroom with {len(skus):,} items and products: {time.perf_counter() - started:.1f} s", flush=True)


def channel_make(code: str, connector: str, settings: dict[str, Any], credentials: dict[str, Any]) -> Any:
    from apps.channels.services.config import channel_create

    return channel_create(
        fields={"code": code, "name": code, "connector": connector, "settings": settings, "credentials": credentials}
    )


def discover_and_match(channel: Any) -> tuple[Any, dict[str, Any], float, float]:
    """The link service, as the onboarding page runs it: the catalog read, then the preview of the match.
    Returns the catalog, the preview's classes, and the seconds of each."""
    from apps.channels.services.link import channel_catalog_read, channel_link

    shown = [0]

    def progress(done: int, total: int | None) -> None:
        if total and done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"    {done:,} of {total:,}", flush=True)

    started = time.perf_counter()
    catalog = channel_catalog_read(channel=channel, progress=progress)
    discovered = time.perf_counter()
    preview = channel_link(channel=channel, apply=False, catalog=catalog)
    finished = time.perf_counter()
    classes: Counter[str] = Counter({"matched": len(preview.matched), "platform_only": len(preview.platform_only)})
    classes.update(problem["code"] for problem in preview.problems)
    classes["stockroom_only"] = len(preview.stockroom_only)
    return catalog, {k: v for k, v in classes.items() if v}, discovered - started, finished - discovered


def product_codes() -> dict[str, int]:
    from apps.catalog.models import Product

    return dict(Product.objects.filter(is_active=True).values_list("code", "id"))


def run_line(name: str, number: int, run: dict[str, Any]) -> None:
    print(
        f"  {name} run {number}: {run['seconds']:.2f} s ({run['discover_s']:.2f} s discover, "
        f"{run['match_s']:.2f} s match), {run['requests']} requests, {run['variants'] / run['seconds']:,.0f} "
        f"variants/s; raw {run['raw_s']:.2f} s (ratio {run['seconds'] / run['raw_s']:.1f}); {run['classes']}",
        flush=True,
    )


# --- Shopify -------------------------------------------------------------------------------------


def _shopify_shop(variants: int, problems: int, ready: Any, stop: Any) -> None:
    """The child process: the fake shop with its catalog, until told to stop."""
    from sandbox.fakes.shopify import ShopifyFake
    from sandbox.fakes.shopify.seed import seed_catalog

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
    ready.put({"url": fake.url, "locations": list(catalog.locations), "clean": sorted(catalog.clean)})
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
        channel = channel_make(
            "bench-shopify",
            "shopify",
            {"shop_url": seeded["url"], "location_id": seeded["locations"][1]},
            {"access_token": TOKEN, "webhook_secret": "whsec-bench"},
        )
        runs = []
        for number in range(1, args.runs + 1):
            runs.append(shopify_run(channel, seeded["url"], number))
        expected = {
            "matched": len(known),
            "platform_only": problems,
            "no_sku": problems,
            "untracked": problems,
            "duplicate_sku": problems,
            "not_stocked_at_location": problems,
        }
        for run in runs:
            found = {k: v for k, v in run["classes"].items() if k != "stockroom_only"}
            assert found == expected, (found, expected)
        return report("shopify", args, runs)
    finally:
        stop.set()
        shop.join(timeout=10)


def shopify_run(channel: Any, shop_url: str, number: int) -> dict[str, Any]:
    import requests

    catalog, classes, discover_s, match_s = discover_and_match(channel)
    # The raw limit, in the same run: the same JSONL by a plain GET, and a bare SELECT of the codes.
    status = requests.post(
        f"{shop_url}/admin/api/2026-07/graphql.json",
        json={"query": "{ currentBulkOperation { url createdAt completedAt } }"},
        headers={"X-Shopify-Access-Token": TOKEN},
        timeout=30,
    ).json()
    operation = status["data"]["currentBulkOperation"]
    ran = datetime.fromisoformat(operation["completedAt"]) - datetime.fromisoformat(operation["createdAt"])
    raw_started = time.perf_counter()
    size = len(requests.get(operation["url"], timeout=300).content)
    got = time.perf_counter()
    codes = product_codes()
    raw_done = time.perf_counter()
    run = {
        "seconds": discover_s + match_s,
        "discover_s": discover_s,
        "match_s": match_s,
        "requests": catalog.requests,
        "variants": len(catalog.entries),
        "raw_s": raw_done - raw_started,
        "raw_get_s": got - raw_started,
        "raw_select_s": raw_done - got,
        "jsonl_bytes": size,
        "platform_bulk_s": ran.total_seconds(),  # the fake running the bulk query (whole seconds)
        "codes": len(codes),
        "classes": classes,
    }
    run_line("shopify", number, run)
    print(f"    the fake ran the bulk query {run['platform_bulk_s']:.0f} s; JSONL {size / 1e6:.1f} MB", flush=True)
    return run


# --- WooCommerce ---------------------------------------------------------------------------------


def stockroom_codes(skus: list[str]) -> list[str]:
    """The products Stockroom has: 90 % of the platform's SKUs (the rest are platform-only)."""
    unique = sorted({sku for sku in skus if sku})
    return [sku for index, sku in enumerate(unique) if index % 10 != 9]


def woocommerce(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = [woocommerce_run(args.variants, number) for number in range(1, args.runs + 1)]
    return report("woocommerce", args, runs)


def woocommerce_run(n: int, number: int) -> dict[str, Any]:
    """A store of its own per run (the fake seeded with ``n`` variants), discovered and matched."""
    import requests

    from sandbox.fakes.woocommerce import WooCommerceFake

    fake = WooCommerceFake().start()
    try:
        problems = max(1, n // 100)
        seeded = fake.seed_catalog(
            n, per_parent=6, simple_every=4, no_sku=problems, duplicate_sku=problems, untracked=2 * problems,
            parent_stock=problems,
        )  # fmt: skip
        stockroom_setup(stockroom_codes([s.sku for s in seeded]))
        channel = channel_make(
            f"bench-woo-{number}", "woocommerce", fake.channel_settings(), fake.channel_credentials()
        )
        catalog, classes, discover_s, match_s = discover_and_match(channel)
        assert len(catalog.entries) == n, (len(catalog.entries), n)
        raw_s = woocommerce_raw(fake, requests.Session())
    finally:
        fake.stop()
    run = {
        "seconds": discover_s + match_s,
        "discover_s": discover_s,
        "match_s": match_s,
        "requests": catalog.requests,
        "variants": n,
        "raw_s": raw_s,
        "classes": classes,
    }
    run_line("woocommerce", number, run)
    return run


def woocommerce_raw(fake: Any, session: Any) -> float:
    """The same GETs the connector sent, signed, on one session, nothing done with the answers but JSON."""
    from apps.channels.connectors.woocommerce import oauth_signature

    pages = [(r["path"], {k: v for k, v in r["query"].items() if not k.startswith("oauth_")}) for r in fake.requests()]
    passes = []
    for _ in range(2):  # the better of two passes: the machine is shared, the limit is the best it does
        started = time.perf_counter()
        for path, query in pages:
            url = fake.url + path
            oauth = [
                ("oauth_consumer_key", fake.consumer_key),
                ("oauth_nonce", uuid.uuid4().hex),
                ("oauth_signature_method", "HMAC-SHA256"),
                ("oauth_timestamp", str(int(time.time()))),
            ]
            params = [*query.items(), *oauth]
            signature = oauth_signature("GET", url, params, fake.consumer_secret, "HMAC-SHA256")
            response = session.get(url, params=[*params, ("oauth_signature", signature)], timeout=30)
            assert response.status_code == 200, response.text[:200]
            response.json()
        passes.append(time.perf_counter() - started)
    return min(passes)


# --- Amazon --------------------------------------------------------------------------------------


def amazon(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = [amazon_run(args.variants, number) for number in range(1, args.runs + 1)]
    return report("amazon", args, runs)


def amazon_run(n: int, number: int) -> dict[str, Any]:
    """A seller of its own per run (the connector's per-operation buckets start full, as for a new channel)."""
    import requests

    from sandbox.fakes.amazon import AmazonFake

    fake = AmazonFake(seller_id=f"ABENCH{uuid.uuid4().hex[:10].upper()}", report_processing_s=REPORT_S).start()
    try:
        seeded = fake.seed_listings(n, fba=max(1, n // 20), inactive=max(1, n // 50))
        stockroom_setup(stockroom_codes([s.sku for s in seeded]))
        config = fake.channel_settings()
        channel = channel_make(f"bench-amazon-{number}", "amazon", config["settings"], config["credentials"])
        catalog, classes, discover_s, match_s = discover_and_match(channel)
        assert len(catalog.entries) == n, (len(catalog.entries), n)
        (download,) = fake.requests("document")
        url = f"{fake.url}{download['path']}?X-Amz-Signature={download['query']['X-Amz-Signature'][0]}"
        raw_started = time.perf_counter()
        lines = gzip.decompress(requests.get(url, timeout=30).content).decode("cp1252").splitlines()
        raw_s = REPORT_S + time.perf_counter() - raw_started
        assert len(lines) == n + 1
    finally:
        fake.stop()
    run = {
        "seconds": discover_s + match_s,
        "discover_s": discover_s,
        "match_s": match_s,
        "requests": catalog.requests,
        "variants": n,
        "raw_s": raw_s,
        "classes": classes,
    }
    run_line("amazon", number, run)
    return run


# --- The report ----------------------------------------------------------------------------------


def report(name: str, args: argparse.Namespace, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seconds = statistics.median(run["seconds"] for run in runs)
    discover_s = statistics.median(run["discover_s"] for run in runs)
    match_s = statistics.median(run["match_s"] for run in runs)
    raw = statistics.median(run["raw_s"] for run in runs)
    requests = statistics.median(run["requests"] for run in runs)
    variants = runs[0]["variants"]
    rate = variants / seconds
    command = f"python bench/discover.py --platform {name} --variants {args.variants} --runs {args.runs}"
    print(
        f"\n{name}: discover + match {variants:,} variants, median of {len(runs)}: {seconds:.2f} s "
        f"({discover_s:.2f} s discover, {match_s:.2f} s match), {requests:.0f} requests, {rate:,.0f} variants/s; "
        f"raw limit {raw:.2f} s, ratio {seconds / raw:.1f}\n  {command}\n  machine: {machine()}",
        flush=True,
    )
    return [
        {
            "name": f"{name}: discover + match {variants:,} variants (median of {len(runs)})",
            "figure": round(seconds, 2),
            "unit": "s",
            "raw": round(raw, 2),
            "ratio": round(seconds / raw, 1),
            "discover_s": round(discover_s, 2),
            "match_s": round(match_s, 2),
            "requests": requests,
            "variants_per_s": round(rate),
            "classes": runs[0]["classes"],
            "runs": runs,
            "command": command,
            "machine": machine(),
        }
    ]


PLATFORMS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "shopify": shopify,  # first: its fake is forked before Django is set up
    "woocommerce": woocommerce,
    "amazon": amazon,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=[*PLATFORMS, "all"], default="all")
    parser.add_argument("--variants", type=int, help="default: 50,000 for Shopify, 10,000 for the others")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    names = list(PLATFORMS) if args.platform == "all" else [args.platform]
    rows: list[dict[str, Any]] = []
    for name in names:
        print(f"\n== {name}", flush=True)
        rows += PLATFORMS[name](argparse.Namespace(runs=args.runs, variants=args.variants or DEFAULT_VARIANTS[name]))
    print("\n| platform | variants | time (s) | discover / match (s) | requests | variants/s | raw limit (s) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in zip(names, rows, strict=True):
        print(
            f"| {name} | {row['runs'][0]['variants']:,} | {row['figure']:.2f} | {row['discover_s']:.2f} / "
            f"{row['match_s']:.2f} | {row['requests']:.0f} | {row['variants_per_s']:,} | {row['raw']:.2f} | "
            f"{row['ratio']:.1f} |"
        )
    print(f"\nmachine: {machine()}\nwritten {rows_write('discover', rows)}")
    shopify_row = next((row for name, row in zip(names, rows, strict=True) if name == "shopify"), None)
    return 0 if shopify_row is None or shopify_row["figure"] < AIM_S else 1


if __name__ == "__main__":
    sys.exit(main())
