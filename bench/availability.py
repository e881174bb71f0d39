"""Availability of 1,000 listings in one call: the selector (cached and not) against its raw SQL.

Standalone (DATABASE_URL/REDIS_URL set; `make bench` resolves them). Builds its own database
``stockroom_bench_availability``: 2,000 items, 1,000 bundle listings of two items each, over
three locations, then times 50 reads of each kind and prints medians beside the raw query.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_database_url, database_recreate, django_setup, percentile, rows_write

DB_NAME = "stockroom_bench_availability"


def build(listings: int) -> list[int]:
    from django.db import transaction

    from apps.catalog.models import Item, Location, Product, ProductComponent, StockLevel
    from apps.channels.models import Channel, ChannelLocation, Listing

    with transaction.atomic():
        locations = Location.objects.bulk_create(
            [Location(code=f"L{n}", name=f"Location {n}", kind=Location.Kind.WAREHOUSE) for n in range(3)]
        )
        items = Item.objects.bulk_create([Item(sku=f"I{n:05d}", name=f"Item {n}") for n in range(2 * listings)])
        StockLevel.objects.bulk_create(
            [StockLevel(item=i, location=loc, on_hand=50 + n % 40, reserved=n % 7) for n, i in enumerate(items)
             for loc in locations]
        )  # fmt: skip
        products = Product.objects.bulk_create(
            [Product(code=f"P{n:05d}", name=f"Bundle {n}", kind=Product.Kind.BUNDLE) for n in range(listings)]
        )
        ProductComponent.objects.bulk_create(
            [ProductComponent(product=p, item=items[2 * n + k], quantity=1 + k) for n, p in enumerate(products)
             for k in (0, 1)]
        )  # fmt: skip
        channel = Channel.objects.create(code="bench", name="Bench channel", coefficient="0.9", buffer=1)
        ChannelLocation.objects.bulk_create([ChannelLocation(channel=channel, location=loc, priority=n)
                                             for n, loc in enumerate(locations)])  # fmt: skip
        rows = Listing.objects.bulk_create(
            [Listing(channel=channel, channel_sku=f"SKU-{n:05d}", product=p) for n, p in enumerate(products)]
        )
    return [row.pk for row in rows]


def timed(call, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    url = database_recreate(base_database_url(), DB_NAME)
    django_setup(url, CACHE_KEY_PREFIX="bench-availability")
    from django.core.management import call_command
    from django.db import connection

    from apps.channels.selectors import LISTING_ATP_SQL, listings_availability, listings_availability_cached

    call_command("migrate", verbosity=0, interactive=False)
    ids = build(args.listings)
    print(f"{len(ids):,} listings ready; timing {args.runs} reads of each kind", flush=True)

    def raw() -> None:
        with connection.cursor() as cursor:
            cursor.execute(LISTING_ATP_SQL, {"listings": ids})
            cursor.fetchall()

    listings_availability_cached(ids)  # warm the cache once
    results = {
        "raw SQL of the same read": timed(raw, args.runs),
        "selector, from PostgreSQL": timed(lambda: listings_availability(ids), args.runs),
        "selector, cached in Redis": timed(lambda: listings_availability_cached(ids), args.runs),
    }
    raw_median = statistics.median(results["raw SQL of the same read"])
    rows = []
    for name, times in results.items():
        median = statistics.median(times)
        rows.append({
            "name": f"availability of {len(ids):,} listings: {name}",
            "figure": round(median, 2), "unit": "ms (median)", "p99_ms": round(percentile(times, 99), 2),
            "raw": None if name.startswith("raw") else round(raw_median, 2),
            "ratio": None if name.startswith("raw") else round(median / raw_median, 2),
        })  # fmt: skip
        print(f"  {name:32} median {median:7.2f} ms   p99 {percentile(times, 99):7.2f} ms", flush=True)
    print(f"written {rows_write('availability', rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
