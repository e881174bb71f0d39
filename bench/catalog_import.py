"""10,000 items with their products and listings imported from CSV by `manage.py import_catalog`, end to end.

Standalone (DATABASE_URL/REDIS_URL set; `make bench` resolves them). Builds its own database
``stockroom_bench_catalog`` with one location and one channel, writes a folder of CSV files
(items.csv, products.csv with one component each, listings.csv), then times: the first import
(everything new), the same folder again (a round trip: every row unchanged, nothing written),
and an export of the result. The target is under a minute for the first import.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_database_url, database_recreate, django_setup, rows_write

DB_NAME = "stockroom_bench_catalog"
LIMIT_S = 60.0


def files_write(folder: Path, count: int) -> None:
    units = ["piece", "g", "ml"]
    with (folder / "items.csv").open("w") as out:
        out.write("sku,name,unit,safety_min,safety_max,is_active\n")
        out.writelines(f"I{n:06d},Item number {n},{units[n % 3]},{n % 5},,true\n" for n in range(count))
    with (folder / "products.csv").open("w") as out:
        out.write("code,name,kind,components,is_active\n")
        for n in range(count):
            # Items alternate piece, g, ml: a piece is sold alone, grams and millilitres cut by weight.
            kind, quantity = ("standard", 1) if n % 3 == 0 else ("weighted", 250 * (n % 3))
            out.write(f"P{n:06d},Product {n},{kind},{quantity} x I{n:06d},true\n")
    with (folder / "listings.csv").open("w") as out:
        out.write("channel,channel_sku,product,coefficient,buffer,max_qty,end_when,is_active\n")
        out.writelines(f"bench,SKU-{n:06d},P{n:06d},,{n % 3},,,true\n" for n in range(count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()

    url = database_recreate(base_database_url(), DB_NAME)
    django_setup(url, CACHE_KEY_PREFIX="bench-catalog", CELERY_KEY_PREFIX="bench-catalog-")
    from django.core.management import call_command

    from apps.catalog.models import Item, Location
    from apps.channels.models import Channel, ChannelLocation, Listing, SyncWork

    call_command("migrate", verbosity=0, interactive=False)
    location = Location.objects.create(code="WH", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    channel = Channel.objects.create(code="bench", name="Bench channel")
    ChannelLocation.objects.create(channel=channel, location=location)

    rows: list[dict[str, object]] = []
    first_import_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "catalog"
        folder.mkdir()
        files_write(folder, args.items)
        for name in ("first import (all new)", "same files again (round trip, all unchanged)"):
            started = time.perf_counter()
            call_command("import_catalog", str(folder), "--no-progress", verbosity=0)
            seconds = time.perf_counter() - started
            print(f"  {name:48} {seconds:6.1f} s", flush=True)
            first_import_s = first_import_s or seconds
            rows.append({
                "name": f"import_catalog, {args.items:,} items + products + listings: {name}",
                "figure": round(seconds, 1), "unit": "s", "raw": LIMIT_S, "ratio": round(seconds / LIMIT_S, 2),
            })  # fmt: skip
        assert Item.objects.count() == args.items and Listing.objects.count() == args.items
        assert SyncWork.objects.count() == args.items  # each new listing queued once, the round trip none
        started = time.perf_counter()
        call_command("export_catalog", str(Path(tmp) / "out"), verbosity=0)
        seconds = time.perf_counter() - started
        print(f"  {'export_catalog of the same':48} {seconds:6.1f} s", flush=True)
        rows.append({"name": f"export_catalog, {args.items:,} items + products + listings", "figure": round(seconds, 1),
                     "unit": "s", "raw": None, "ratio": None})  # fmt: skip
    print(f"written {rows_write('catalog_import', rows)} (raw: the one-minute target)")
    return 0 if first_import_s < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
